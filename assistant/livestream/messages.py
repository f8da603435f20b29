"""The messages `assistant stream` speaks, and their validation: JSON in, a frozen dataclass out, or a reason.

Three kinds, one JSON object each (UTF-8):

    {"type": "text",  "data": "Hello there.", "session_id": "s1", "timestamp": "2024-01-01T00:00:00Z"}
    {"type": "audio", "data": "<base64>", "format": "wav", "session_id": "s1", "timestamp": "..."}
    {"type": "chat",  "data": "What is the capital of France?", "session_id": "s1"}

`text` is spoken as written (TTS), `audio` is lip-synced as it is (wav, mp3, ogg or flac), `chat` is answered by the
dialogue model and the answer spoken. `session_id` and `timestamp` are optional; other keys are ignored, so a
producer may add its own. Anything else (not JSON, no or unknown type, empty or over-long text, a payload that is
not base64 or does not decode as the audio format it claims, audio over the length limit) raises `MessageRejected`
with a reason a person can act on: the consumer rejects such a message without requeueing it.

Needs soundfile (libsndfile decodes WAV, FLAC, OGG and MP3 from memory).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soundfile as sf

from assistant.errors import AssistantError

AUDIO_FORMATS = ("wav", "mp3", "ogg", "flac")
MAX_BODY_BYTES = 64 * 1024 * 1024  # 64 MiB: a 120 s 48 kHz stereo WAV is 23 MB, 31 MB as base64
_SNDFILE_FORMATS = {"wav": {"WAV", "WAVEX", "RF64", "W64"}, "mp3": {"MP3", "MPEG"}, "ogg": {"OGG"}, "flac": {"FLAC"}}


class LivestreamError(AssistantError):
    """The livestream (broker, RTMP publisher, message handling) failed."""


class MessageRejected(LivestreamError, ValueError):
    """A message that will never be spoken: malformed, too long, or an undecodable payload. Not requeued."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    max_text_chars: int = 2000
    max_audio_s: float = 120.0
    max_body_bytes: int = MAX_BODY_BYTES


@dataclass(frozen=True)
class TextMessage:
    text: str
    session_id: str | None = None
    timestamp: dt.datetime | None = None
    kind: str = field(default="text", init=False)


@dataclass(frozen=True)
class ChatMessage:
    text: str  # what the viewer asked; the dialogue model answers it
    session_id: str | None = None
    timestamp: dt.datetime | None = None
    kind: str = field(default="chat", init=False)


@dataclass(frozen=True, eq=False)
class AudioMessage:
    samples: np.ndarray  # (n,) float32 mono in [-1, 1]
    sample_rate_hz: int
    duration_s: float
    format: str  # what the producer said it is: wav, mp3, ogg or flac
    session_id: str | None = None
    timestamp: dt.datetime | None = None
    text: str = ""  # an optional transcript (for logs and the dialogue of a later chat)
    kind: str = field(default="audio", init=False)


Message = TextMessage | ChatMessage | AudioMessage


def _optional_str(obj: dict[str, Any], key: str, max_chars: int = 256) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str | int):
        raise MessageRejected(f'"{key}" must be a string, got {type(value).__name__}')
    text = str(value)
    if len(text) > max_chars:
        raise MessageRejected(f'"{key}" is {len(text)} characters long, over the limit of {max_chars}')
    return text


def _timestamp(obj: dict[str, Any]) -> dt.datetime | None:
    value = obj.get("timestamp")
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return dt.datetime.fromtimestamp(float(value), dt.UTC)  # seconds since the epoch
        except (OverflowError, ValueError, OSError) as e:  # 1e20, NaN, inf: no date a clock can hold
            raise MessageRejected(
                f'"timestamp" {value!r} is not a date (epoch seconds between 0 and year 9999, or ISO 8601)'
            ) from e
    if not isinstance(value, str):
        raise MessageRejected(f'"timestamp" must be an ISO 8601 string or epoch seconds, got {type(value).__name__}')
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError as e:
        raise MessageRejected(f'"timestamp" {value[:40]!r} is not ISO 8601 (e.g. 2024-01-01T00:00:00Z)') from e


def _text(obj: dict[str, Any], limits: Limits) -> str:
    value = obj.get("data")
    if not isinstance(value, str):
        got = "nothing" if value is None else type(value).__name__
        raise MessageRejected(f'"data" must be the text to speak (a string), got {got}')
    text = " ".join(value.split())  # newlines and runs of spaces read the same to TTS
    if not text:
        raise MessageRejected('"data" is empty: nothing to say')
    if len(text) > limits.max_text_chars:
        raise MessageRejected(
            f'"data" is {len(text)} characters long, over the limit of {limits.max_text_chars} '
            "(livestream.max_text_chars); split it into several messages"
        )
    return text


def decode_audio(payload: str, fmt: str, max_audio_s: float) -> tuple[np.ndarray, int, float]:
    """base64 -> (mono float32 samples, rate, seconds); MessageRejected when it does not decode or is too long."""
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise MessageRejected(f'"data" is not valid base64 ({e})') from e
    if not raw:
        raise MessageRejected('"data" holds no audio bytes')
    try:
        info = sf.info(io.BytesIO(raw))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise MessageRejected(f"the {fmt} audio does not decode ({len(raw)} bytes): {e}") from e
    if info.format not in _SNDFILE_FORMATS[fmt]:
        raise MessageRejected(f'"format" says {fmt} but the payload is {info.format} audio')
    if info.duration > max_audio_s:
        raise MessageRejected(
            f"the audio lasts {info.duration:.1f} s, over the limit of {max_audio_s:g} s (livestream.max_audio_s)"
        )
    try:
        data, rate = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise MessageRejected(f"the {fmt} audio does not decode ({len(raw)} bytes): {e}") from e
    if data.shape[0] == 0:
        raise MessageRejected(f"the {fmt} audio holds no samples")
    mono = np.ascontiguousarray(data.mean(axis=1), np.float32)  # (n,) float32
    return mono, int(rate), data.shape[0] / rate


def parse_message(body: bytes | str, limits: Limits | None = None) -> Message:
    """Validate one message body; raises MessageRejected with the reason."""
    limits = limits or Limits()
    if len(body) > limits.max_body_bytes:
        raise MessageRejected(f"the message is {len(body)} bytes, over the limit of {limits.max_body_bytes}")
    try:
        obj = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MessageRejected(f"the message is not JSON: {e}") from e
    except RecursionError as e:  # [[[[... 100k deep: Python's parser gives up, the message is refused
        raise MessageRejected("the message's JSON is nested too deep (a speak message is one flat object)") from e
    if not isinstance(obj, dict):
        raise MessageRejected(f"the message must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    session_id, timestamp = _optional_str(obj, "session_id"), _timestamp(obj)
    if kind == "text":
        return TextMessage(_text(obj, limits), session_id, timestamp)
    if kind == "chat":
        return ChatMessage(_text(obj, limits), session_id, timestamp)
    if kind == "audio":
        fmt = obj.get("format")
        if not isinstance(fmt, str) or fmt.lower() not in AUDIO_FORMATS:
            raise MessageRejected(f'"format" must be one of {", ".join(AUDIO_FORMATS)}, got {fmt!r}')
        payload = obj.get("data")
        if not isinstance(payload, str):
            raise MessageRejected('"data" must be the base64-encoded audio (a string)')
        samples, rate, seconds = decode_audio(payload, fmt.lower(), limits.max_audio_s)
        transcript = obj.get("text") if isinstance(obj.get("text"), str) else ""
        return AudioMessage(samples, rate, seconds, fmt.lower(), session_id, timestamp, transcript)
    raise MessageRejected(f'"type" must be text, audio or chat, got {kind!r}')


def describe(message: Message) -> str:
    """A short line for the log (never the whole text or payload)."""
    if isinstance(message, AudioMessage):
        return f"audio ({message.format}, {message.duration_s:.1f} s)"
    text = message.text if len(message.text) <= 60 else message.text[:57] + "..."
    return f"{message.kind} {text!r}"
