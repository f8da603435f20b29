"""Smart Turn v3.2: has the speaker finished their turn? A probability from the sound of the last 8 s of speech.

A pause alone does not tell "What is the capital of France?" from "What is the capital of ... France": Smart Turn
(Daily's pipecat project, BSD-2-Clause) is a small Whisper-encoder classifier trained on the intonation and
wording of complete and cut-off turns. The segmenter (`assistant.audio.vad`) asks it at the pause point and ends
the utterance there when it says "finished", or waits longer when it says "mid-thought".

Input: the turn so far, 16 kHz mono, the last 8 s of it, zero-padded at the start to exactly 8 s; the waveform is
normalised to zero mean and unit variance over those 8 s (padding included), then turned into Whisper's log-mel
features (80 mels, 25 ms window, 10 ms hop) by faster-whisper's numpy `FeatureExtractor`, the same features
pipecat computes (tests/integration/test_smart_turn.py compares them). One ONNX session, one intra-op thread:
~35 ms per call on this project's 2-core test machine.

Needs onnxruntime, faster-whisper, and the model file `smart-turn-v3.2-cpu.onnx`, which ships inside the
`pipecat-ai` wheel (8.7 MB; `make setup` installs the wheel with --no-deps: only the file is used, pipecat is
never imported).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.errors import ModelError

if TYPE_CHECKING:
    from assistant.audio.vad import EndOfTurn, VadSettings

log = logging.getLogger(__name__)

PIPECAT_VERSION = "1.14.0"  # the pipecat-ai release scripts/setup.sh installs
MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
MODEL_PACKAGE = "pipecat"  # from the pipecat-ai wheel
MODEL_DIR = ("audio", "turn", "smart_turn", "data")  # inside the package
INSTALL_HINT = (
    f"install it with: .venv/bin/pip install --no-deps pipecat-ai=={PIPECAT_VERSION} (`make setup` does), "
    "or set audio.end_of_turn: silence"
)


@dataclass(frozen=True)
class SmartTurnInput:
    """What the model takes (Whisper's front end, cut to 8 s)."""

    sample_rate_hz: int = 16000
    window_s: int = 8  # the model sees the last 8 s: 128000 samples
    n_mels: int = 80
    hop: int = 160  # 10 ms at 16 kHz: 800 feature frames over 8 s
    variance_eps: float = 1e-7  # Whisper's zero-mean unit-variance normalisation

    @property
    def window_samples(self) -> int:
        return self.sample_rate_hz * self.window_s


INPUT = SmartTurnInput()


class SmartTurnMissing(ModelError):
    """The Smart Turn model file is not installed; the message says how to install it."""


def bundled_model_path() -> Path | None:
    """Where the installed pipecat-ai wheel keeps the model, or None. Finds the package without importing it
    (its __init__ would pull in loguru and the rest of pipecat's dependencies, which --no-deps leaves out)."""
    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root).joinpath(*MODEL_DIR, MODEL_FILE)
        if path.is_file():
            return path
    return None


class SmartTurn:
    """`smart_turn(audio_int16) -> probability that the turn is complete`, for the segmenter's `end_of_turn`.

    Thread-safe: onnxruntime sessions may be run from several threads."""

    def __init__(self, model_path: str | Path | None = None) -> None:
        path = Path(model_path) if model_path is not None else bundled_model_path()
        if path is None or not path.is_file():
            where = (
                f"{path} does not exist" if path is not None else "the pipecat-ai package is not installed"
            )
            raise SmartTurnMissing(
                f"The Smart Turn end-of-turn model ({MODEL_FILE}) is missing: {where}; {INSTALL_HINT}"
            )
        import onnxruntime as ort
        from faster_whisper.feature_extractor import FeatureExtractor

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # ~35 ms a call on one core; the listener thread waits for it
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session: Any = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own error types for a corrupt file
            raise ModelError(
                f"The Smart Turn model {path} failed to load ({e}); reinstall it: {INSTALL_HINT}"
            ) from e
        self.model_path = path
        self._features = FeatureExtractor(
            feature_size=INPUT.n_mels, sampling_rate=INPUT.sample_rate_hz, hop_length=INPUT.hop,
            chunk_length=INPUT.window_s,
        )  # fmt: skip

    def features(self, audio: np.ndarray) -> np.ndarray:
        """(80, 800) float32 log-mel features of the last 8 s of `audio` (int16, or float in [-1, 1])."""
        x = np.asarray(audio)
        x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
        n = INPUT.window_samples
        x = x[-n:]
        if len(x) < n:  # the model was trained with the silence before the speech, not after it
            x = np.concatenate([np.zeros(n - len(x), np.float32), x])
        x = (x - x.mean()) / np.sqrt(x.var() + INPUT.variance_eps)
        # padding=0: exactly 8 s in, 801 STFT frames of which Whisper drops the last -> (80, 800)
        return np.asarray(self._features(x, padding=0), dtype=np.float32)

    def __call__(self, audio: np.ndarray) -> float:
        """The probability (0..1) that the speaker has finished, from 16 kHz mono audio of the turn so far."""
        features = self.features(audio)[np.newaxis]  # (1, 80, 800) float32
        (out,) = self._session.run(None, {"input_features": features})  # (1, 1): already a sigmoid
        return float(out[0, 0])


_loaded: dict[Path, SmartTurn] = {}
_loading = threading.Lock()


def load_smart_turn(model_path: str | Path | None = None) -> SmartTurn:
    """The Smart Turn model, loaded once per process (a listener rebuilt on a mode change reuses it)."""
    path = Path(model_path) if model_path is not None else bundled_model_path()
    with _loading:
        if path is None or path not in _loaded:
            model = SmartTurn(path)  # raises SmartTurnMissing with the install command
            _loaded[model.model_path] = model
            return model
        return _loaded[path]


def end_of_turn_for(vad: VadSettings, on_notice: Any = None) -> EndOfTurn | None:
    """The end-of-turn decision the settings ask for: Smart Turn for `end_of_turn: smart_turn` when its model is
    installed, else None (the segmenter ends on silence alone), said in the log and through `on_notice`."""
    if vad.end_of_turn != "smart_turn" or not vad.early_start_ms:
        return None  # asked at the early-start pause: without one (push-to-talk) the silence decides
    try:
        return load_smart_turn()
    except ModelError as e:
        message = f"{e}. The end of a turn is decided by {vad.silence_ms} ms of silence instead"
        log.warning("%s", message)
        if on_notice is not None:
            on_notice(message)
        return None
