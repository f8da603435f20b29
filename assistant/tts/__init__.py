"""Speech synthesis: one `TTSEngine` protocol, Coqui / Piper / espeak-ng engines, and the fallback chain
between them.

Importing this package is cheap: each engine imports its heavy package (Coqui + torch, piper + onnxruntime)
in load().
"""

from assistant.tts.base import (
    ENGINE_NAMES,
    EmptyTextError,
    TTSEngine,
    TTSImportError,
    TTSModelError,
    TTSOptions,
    check_text,
)
from assistant.tts.coqui import CoquiEngine, resolve_model
from assistant.tts.espeak import EspeakEngine
from assistant.tts.piper import PiperEngine, resolve_voice
from assistant.tts.select import FallbackStep, FallbackTTS, build_tts, chain_for

__all__ = [
    "ENGINE_NAMES",
    "CoquiEngine",
    "EmptyTextError",
    "EspeakEngine",
    "FallbackStep",
    "FallbackTTS",
    "PiperEngine",
    "TTSEngine",
    "TTSImportError",
    "TTSModelError",
    "TTSOptions",
    "build_tts",
    "chain_for",
    "check_text",
    "resolve_model",
    "resolve_voice",
]
