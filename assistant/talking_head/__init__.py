"""Talking-head engines (Wav2Lip, light, static) behind one protocol, and the chain that falls back between them.

Only the light-weight names are imported here; `wav2lip_engine` (torch) is imported by whoever needs it.
"""

from assistant.talking_head.base import (
    ENGINE_NAMES,
    RenderSettings,
    TalkingHeadEngine,
    fit_frame,
    load_avatar,
)
from assistant.talking_head.chain import TalkingHeadChain, build_chain, default_factories

__all__ = [
    "ENGINE_NAMES",
    "RenderSettings",
    "TalkingHeadChain",
    "TalkingHeadEngine",
    "build_chain",
    "default_factories",
    "fit_frame",
    "load_avatar",
]
