"""Dataclasses that cross module boundaries: what one stage hands the next, and the events a turn reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Utterance:
    """One segment of user speech, 16 kHz mono float32 in [-1, 1]."""

    samples: np.ndarray = field(repr=False)  # (n,) float32
    sample_rate_hz: int
    start_s: float  # from the start of the capture/file
    end_s: float
    cut_at_max: bool = False  # True when the utterance was cut at the max length
    source: str = "microphone"  # "microphone" or the file path

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    start_s: float
    end_s: float
    no_speech_prob: float
    model: str
    elapsed_s: float


@dataclass(frozen=True)
class ReplySentence:
    """A piece of the reply released by the sentence splitter, ready to be spoken."""

    index: int
    text: str
    is_last: bool = False


@dataclass(frozen=True)
class Reply:
    text: str
    sentences: tuple[str, ...]
    model: str
    first_sentence_s: float  # from request to first sentence released
    elapsed_s: float
    cancelled: bool = False


@dataclass(frozen=True)
class SpeechAudio:
    wav_path: Path
    sample_rate_hz: int
    duration_s: float
    engine: str  # "coqui", "piper" or "espeak"
    text: str = ""
    elapsed_s: float = 0.0
    fallback_reason: str | None = None  # why a lower engine spoke, None when the configured one did


@dataclass(frozen=True)
class AvatarVideo:
    mp4_path: Path
    engine: str  # "wav2lip_gan", "wav2lip", "light" or "static"
    frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    elapsed_s: float
    fallback_reasons: tuple[str, ...] = ()  # one line per step down the chain
    quality_mode: str = "standard"
    device: str = "cpu"


# ---- Events a turn reports to its callback (the UI bridge turns them into Qt signals) ----


@dataclass(frozen=True)
class TurnEvent:
    turn_id: int
    at_s: float  # time.monotonic() when it happened


@dataclass(frozen=True)
class UtteranceCaptured(TurnEvent):
    utterance: Utterance


@dataclass(frozen=True)
class TranscriptReady(TurnEvent):
    transcript: Transcript


@dataclass(frozen=True)
class ReplySentenceReady(TurnEvent):
    sentence: ReplySentence
    elapsed_s: float  # since the transcript was ready


@dataclass(frozen=True)
class SpeechReady(TurnEvent):
    index: int  # reply sentence (segment) index
    speech: SpeechAudio


@dataclass(frozen=True)
class VideoReady(TurnEvent):
    index: int
    video: AvatarVideo


@dataclass(frozen=True)
class SegmentReady(TurnEvent):
    """One reply segment ready to play: its video when the talking head made one, else audio only."""

    index: int
    speech: SpeechAudio
    video: AvatarVideo | None
    audio_only_reason: str | None = None


@dataclass(frozen=True)
class StageFailed(TurnEvent):
    stage: str  # "capture", "asr", "dialogue", "tts", "talking_head"
    message: str
    recoverable: bool = True


@dataclass(frozen=True)
class Notice(TurnEvent):
    """Something the user should see: a fallback, a model that loaded, a device that came back."""

    message: str
    level: str = "info"  # "info" or "warning"


@dataclass(frozen=True)
class ConversationReset(TurnEvent):
    """The user asked for a new conversation (a spoken command): the assistant forgot what was said before."""


@dataclass(frozen=True)
class TurnDone(TurnEvent):
    transcript: str
    reply: str
    segments: int
    cancelled: bool
    timings_s: dict[str, float]
    engines: dict[str, str]
    end_of_speech_at: float | None = None  # time.monotonic() when the user stopped speaking (a spoken turn)
