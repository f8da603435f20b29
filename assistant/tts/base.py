"""What every speech engine is: the `TTSEngine` protocol, the options that configure the engines, and the
helpers they share (text check, WAV check into a `SpeechAudio`, locating models without importing their
packages).

Needs soundfile only (no torch, no models), so the fallback chain and its unit tests import it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import soundfile as sf

from assistant.errors import ModelError, TTSError
from assistant.events import SpeechAudio

ENGINE_NAMES = ("coqui", "piper", "espeak")  # best first: the order the chain falls back along
DEFAULT_COQUI_MODEL = "coqui-vits"  # registry name of tts_models/en/ljspeech/vits
DEFAULT_PIPER_VOICE = "piper-joe"  # registry name of the bundled en_US-joe-medium voice
MIN_WAV_SAMPLES = 1


class EmptyTextError(TTSError, ValueError):
    """The text to speak is empty or only whitespace; a caller bug, so no engine is tried."""


class TTSModelError(TTSError, ModelError):
    """A voice/model file is missing, corrupt or does not match the engine."""


class TTSOutputError(TTSError):
    """The speech file could not be written (read-only or full folder): not an engine failure, none is dropped."""


class TTSImportError(TTSError, ImportError):
    """The Python package of an optional engine is not installed or does not import."""


@runtime_checkable
class TTSEngine(Protocol):
    """Turns one piece of text into a WAV file."""

    name: str  # "coqui", "piper" or "espeak"

    def load(self) -> None:
        """Load the model; idempotent. Raises TTSError (TTSModelError, TTSImportError) when it cannot."""
        ...

    def synthesize(self, text: str, out_path: Path) -> SpeechAudio:
        """Speak `text` into the WAV `out_path` (parents created). Empty text raises EmptyTextError."""
        ...

    def close(self) -> None:
        """Free the model; `load()` may be called again afterwards."""
        ...


@dataclass(frozen=True)
class TTSOptions:
    """Everything the three engines need; the field names follow the `tts` section of the config.

    Built from the settings with
    `TTSOptions(models_dir=..., **settings.tts.model_dump(exclude={"engine"}))`.
    """

    models_dir: Path = Path("models")  # where downloaded models live (<models_dir>/coqui/<name>/...)
    coqui_model: str = DEFAULT_COQUI_MODEL  # registry name, Coqui name (tts_models/...), folder or .pth path
    coqui_config_path: Path | None = None  # config.json when coqui_model is a bare .pth file elsewhere
    speaker: str | None = None  # speaker of a multi-speaker Coqui model (None: its first speaker)
    language: str | None = "en"  # language of a multilingual Coqui model (ignored by single-language ones)
    speaker_wav: Path | None = None  # reference voice for cloning models (XTTS, YourTTS)
    device: str = "auto"  # where Coqui (and Piper's ONNX session) run: "auto", "cpu" or "cuda"
    piper_voice: str = DEFAULT_PIPER_VOICE  # registry name, Piper voice name (en_US-joe-medium) or .onnx path
    piper_length_scale: float | None = None  # > 1 speaks slower; None: the voice's own
    espeak_voice: str = "en-us"
    espeak_rate_wpm: int = (
        165  # espeak-ng's default is 175 words a minute; a little slower is easier to follow
    )


def check_text(text: str) -> str:
    """The text stripped; EmptyTextError when nothing is left."""
    if not isinstance(text, str):
        raise EmptyTextError(f"TTS text must be a string, got {type(text).__name__}")
    stripped = text.strip()
    if not stripped:
        raise EmptyTextError(
            "Nothing to say: the TTS text is empty or only whitespace; pass a non-empty sentence"
        )
    return stripped


def speech_from_wav(wav_path: Path, engine: str, text: str, elapsed_s: float) -> SpeechAudio:
    """Describe the WAV an engine wrote; TTSError when the file is missing, unreadable or empty."""
    wav_path = Path(wav_path)
    if not wav_path.is_file():
        raise TTSError(f"{engine} reported success but wrote no WAV at {wav_path}")
    try:
        info = sf.info(str(wav_path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise TTSError(f"{engine} wrote an unreadable WAV at {wav_path}: {e}") from e
    if info.frames < MIN_WAV_SAMPLES:
        raise TTSError(f"{engine} wrote an empty WAV (0 samples) at {wav_path} for text {text[:60]!r}")
    return SpeechAudio(
        wav_path=wav_path,
        sample_rate_hz=int(info.samplerate),
        duration_s=info.frames / info.samplerate,
        engine=engine,
        text=text,
        elapsed_s=elapsed_s,
    )


def locate_registered(name: str, models_dir: Path) -> Path | None:
    """The path of a model registry entry (assistant.models), None when `name` is not a registry name.

    Raises TTSModelError with the registry's advice (what to download) when the entry exists but is missing.
    """
    from assistant import models  # the registry is stdlib-only; imported here to keep this module light

    if name not in models.REGISTRY:
        return None
    try:
        return models.locate(name, Path(models_dir))
    except ModelError as e:
        raise TTSModelError(str(e)) from e


def registry_entry_for_folder(install_dir: str) -> str | None:
    """The registry name whose install folder is `install_dir` (e.g. coqui/tts_models--en--ljspeech--vits)."""
    from assistant import models

    for spec in models.REGISTRY.values():
        if not spec.bundled and spec.install_dir == install_dir:
            return spec.name
    return None


def registry_entry_for_file(file_name: str) -> str | None:
    """The registry name whose entry file is `file_name` (e.g. en_US-joe-medium.onnx)."""
    from assistant import models

    for spec in models.REGISTRY.values():
        if spec.entry == file_name:
            return spec.name
    return None
