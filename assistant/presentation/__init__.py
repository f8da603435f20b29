"""`assistant present`: a written script turned into a narrated slide video with the talking avatar."""

from assistant.presentation.present import (
    PresentationResult,
    PresentOptions,
    PresentProgress,
    render_presentation,
)
from assistant.presentation.script import Deck, Slide, parse_script, read_script

__all__ = [
    "Deck",
    "PresentOptions",
    "PresentProgress",
    "PresentationResult",
    "Slide",
    "parse_script",
    "read_script",
    "render_presentation",
]
