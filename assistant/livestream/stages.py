"""The speech stages of `assistant stream`, built from the settings the way a session builds them: the TTS chain
(loaded at once) and, for chat messages, the dialogue model (loaded on the first chat message: a stream that
only speaks text never pays for it). A model the profile wants but that is not downloaded is replaced by the
bundled one, with a warning.

Needs the TTS engines' packages; llama-cpp-python for chat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from assistant.config import Settings
from assistant.profile import ResolvedSettings

log = logging.getLogger(__name__)


def build_tts(settings: Settings, resolved: ResolvedSettings) -> Any:
    from assistant.tts.select import build_tts as build_chain
    from assistant.tts.select import options_from_settings

    options = options_from_settings(settings, resolved)
    return build_chain(resolved.tts_engine, options, on_fallback=lambda name, why: log.warning("Speech: %s", why))


def dialogue_factory(settings: Settings, resolved: ResolvedSettings) -> Callable[[], Any]:
    """A function that builds and loads the dialogue model (called on the speaker's thread), the way a session
    builds it."""

    def build() -> Any:
        from assistant.dialogue_model import build_dialogue

        return build_dialogue(settings, resolved)

    return build
