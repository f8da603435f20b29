"""The livestream's core without a broker or ffmpeg: message validation (every rejection has a reason), credential
masking, backoff, and the speaker against a real LiveStream ticked by hand (a fake TTS writes tones): messages are
spoken in order and each is reported done only once its last piece has gone out."""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from assistant.config import PROJECT_ROOT
from assistant.errors import ConfigError
from assistant.events import SpeechAudio
from assistant.live import LiveStream, RigRenderer, StreamSettings
from assistant.livestream import (
    AudioMessage,
    Backoff,
    ChatMessage,
    Limits,
    MessageRejected,
    Speaker,
    TextMessage,
    mask_text,
    mask_url,
    parse_message,
)
from assistant.livestream.consumer import AmqpConsumer, Delivery, check_amqp_url
from assistant.redact import RedactingFilter
from assistant.talking_head.base import load_avatar

RATE = 48000


def wav_b64(seconds: float, fmt: str = "WAV", rate: int = 22050) -> str:
    buf = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


# ---- messages ----
def test_text_chat_and_audio_messages_parse():
    m = parse_message(json.dumps({"type": "text", "data": "  Hello\n there ", "session_id": "s",
                                  "timestamp": "2024-01-01T00:00:00Z", "extra": 1}))  # fmt: skip
    assert isinstance(m, TextMessage) and m.text == "Hello there" and m.session_id == "s"
    assert m.timestamp is not None and m.timestamp.year == 2024
    assert isinstance(parse_message(b'{"type": "chat", "data": "Why?"}'), ChatMessage)
    a = parse_message(json.dumps({"type": "audio", "format": "flac", "data": wav_b64(0.5, "FLAC")}))
    assert isinstance(a, AudioMessage) and a.sample_rate_hz == 22050 and abs(a.duration_s - 0.5) < 0.01
    assert a.samples.dtype == np.float32 and a.samples.ndim == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{oops", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"data": "hi"}', '"type" must be text, audio or chat'),
        (b'{"type": "text", "data": "   "}', "empty"),
        (b'{"type": "text", "data": 5}', "must be the text"),
        (json.dumps({"type": "text", "data": "x" * 11}).encode(), "over the limit of 10"),
        (b'{"type": "audio", "format": "aiff", "data": "AAAA"}', '"format" must be one of'),
        (b'{"type": "audio", "format": "wav", "data": "@@@"}', "not valid base64"),
        (b'{"type": "audio", "format": "wav", "data": "bm90IGF1ZGlv"}', "does not decode"),
        (json.dumps({"type": "audio", "format": "mp3", "data": wav_b64(0.2)}).encode(), "payload is WAV"),
        (json.dumps({"type": "audio", "format": "wav", "data": wav_b64(3.0)}).encode(), "over the limit of 2 s"),
        (b'{"type": "text", "data": "hi", "timestamp": "yesterday"}', "not ISO 8601"),
        (b'{"type": "text", "data": "hi", "timestamp": 1e20}', '"timestamp" 1e+20 is not a date'),
        (b'{"type": "text", "data": "hi", "timestamp": NaN}', "is not a date"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(body, reason):
    with pytest.raises(MessageRejected) as e:
        parse_message(body, Limits(max_text_chars=10, max_audio_s=2.0))
    assert reason in e.value.reason


# ---- credentials ----
def test_passwords_and_stream_keys_are_masked():
    assert mask_url("amqp://bot:s3cr@t@broker:5672/vh") == "amqp://bot:***@broker:5672/vh"
    assert mask_url("rtmp://live.example/app/KEY123") == "rtmp://live.example/app/***"
    assert mask_url("amqp://broker/") == "amqp://broker/"
    text = mask_text("failed amqp://u:pw@h:1/ then rtmp://h:1935/live/abc")
    assert "pw" not in text and "abc" not in text


def test_the_log_filter_masks_every_record(caplog):
    logger = logging.getLogger("test.livestream.redact")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("connecting to %s", "amqp://guest:hunter2@localhost/")
    assert "hunter2" not in caplog.text and "guest:***@" in caplog.text


@pytest.mark.parametrize(
    "url, what",
    [
        ("amqp://u:S3cret#Pa55@127.0.0.1:5672/%2F", "'#' as %23"),
        ("amqp://u:S3cret/Pa55@127.0.0.1:5672/%2F", "'/' as %2F"),
        ("amqp://u:S3cretPa55@127.0.0.1:notaport/%2F", "not a usable AMQP URL"),
        ("http://u:S3cretPa55@127.0.0.1/", "not an AMQP URL"),
    ],
)
def test_an_amqp_url_pika_would_misread_is_refused_naming_its_source(url, what):
    with pytest.raises(ConfigError) as e:
        check_amqp_url(url, "ASSISTANT_AMQP_URL")
    message = str(e.value)
    assert message.startswith("ASSISTANT_AMQP_URL: ") and what in message, message
    assert "S3cret" not in message and "Pa55" not in message, message
    check_amqp_url("amqp://u:S3cret%23Pa55@127.0.0.1:5672/%2F", "--amqp")  # percent-encoded: accepted


def test_a_consumer_thread_that_dies_says_so_without_the_password(caplog):
    """A URL that reaches the consumer unchecked: its thread ends on pika's ValueError; `failed` is set (the stream
    stops on it) and neither the failure nor the log quotes any part of the password."""
    consumer = AmqpConsumer("amqp://u:Zq8#Wv7Kp@127.0.0.1:1/%2F", "q", lambda d, b: None)
    check = logging.getLogger("assistant.livestream.consumer")
    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(RedactingFilter())
    check.addHandler(handler)
    try:
        consumer.start()
        assert consumer.failed.wait(10), "the consumer thread died without saying so"
    finally:
        consumer.stop()
        check.removeHandler(handler)
    assert consumer.failure and "the AMQP consumer stopped" in consumer.failure
    written = handler.stream.getvalue()
    assert "stopped" in written
    for piece in ("Zq8", "Wv7Kp"):
        assert piece not in consumer.failure and piece not in written, (consumer.failure, written)


class FakeChannel:
    """pika's channel as the consumer uses it: acks and rejects recorded."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.rejected: list[tuple[int, bool]] = []

    def basic_ack(self, tag: int) -> None:
        self.acked.append(tag)

    def basic_reject(self, tag: int, requeue: bool) -> None:
        self.rejected.append((tag, requeue))


class Method:
    def __init__(self, tag: int, redelivered: bool) -> None:
        self.delivery_tag, self.redelivered = tag, redelivered


class Properties:
    def __init__(self, message_id: str | None) -> None:
        self.message_id = message_id


@pytest.mark.parametrize("message_id", ["msg-1", None])
def test_a_message_whose_ack_was_lost_is_not_spoken_again_after_a_reconnect(message_id):
    """The ack went out 150 ms before the broker died and was lost: the broker redelivers the message on the next
    connection. The consumer remembers what it spoke across the reconnect and acks the redelivery unspoken."""
    spoken: list[Delivery] = []
    consumer = AmqpConsumer("amqp://guest:guest@127.0.0.1:1/%2F", "q", lambda d, b: spoken.append(d))
    first = FakeChannel()
    consumer._generation = 1
    consumer._on_message(first, Method(7, False), Properties(message_id), b'{"type": "text", "data": "hi"}')
    assert len(spoken) == 1
    consumer.ack(spoken[0])
    consumer._carry_out(first)
    assert first.acked == [7]
    # the connection is lost; the broker never got the ack and redelivers on the next connection
    second = FakeChannel()
    consumer._generation = 2
    consumer._on_message(second, Method(1, True), Properties(message_id), b'{"type": "text", "data": "hi"}')
    assert len(spoken) == 1, "a redelivered message that was already spoken was spoken again"
    assert second.acked == [1]
    # the same text published anew (not a redelivery) is a new message and is spoken
    consumer._on_message(second, Method(2, False), Properties(None), b'{"type": "text", "data": "hi"}')
    assert len(spoken) == 2


def test_backoff_doubles_up_to_the_cap_and_resets():
    b = Backoff(0.5, 4.0, jitter=0.0)
    assert [b.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    b.reset()
    assert b.next_delay() == 0.5


# ---- the speaker on a real stream ----
class ToneTTS:
    """A TTS engine that says each text as a tone, 10 ms per character (the stage interface, no model)."""

    name = "tone"

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.said: list[str] = []

    def synthesize(self, text: str, out_path: Path) -> SpeechAudio:
        if self.fail_on and self.fail_on in text:
            raise RuntimeError("the voice broke")
        self.said.append(text)
        seconds = 0.01 * len(text)
        t = np.arange(int(seconds * 16000)) / 16000
        sf.write(str(out_path), 0.4 * np.sin(2 * np.pi * 200 * t), 16000)
        return SpeechAudio(out_path, 16000, seconds, "tone", text)


@pytest.fixture
def stream() -> LiveStream:
    image = load_avatar(PROJECT_ROOT / "assets" / "avatars" / "astronaut.png")
    renderer = RigRenderer(image, 320, 180)
    return LiveStream(renderer, StreamSettings(320, 180, 25.0, RATE))


def run_until(stream: LiveStream, speaker: Speaker, predicate, max_frames: int = 2000) -> int:
    for n in range(max_frames):
        if predicate():
            return n
        stream.tick()
        time.sleep(0.001)  # let the speaker's thread queue what it prepared
    raise AssertionError("not reached")


def test_messages_are_spoken_in_order_and_done_only_after_their_last_piece(stream, tmp_path):
    tts = ToneTTS()
    speaker = Speaker(stream, tts, work_dir=tmp_path)
    stream.on_event = speaker.on_stream_event
    done: list[str] = []
    failed: list[str] = []
    first = TextMessage("First sentence here. And a second one follows.")
    second = AudioMessage(np.full(4800, 0.2, np.float32), RATE, 0.1, "wav")
    speaker.submit(first, lambda job: done.append("first"), lambda job, why: failed.append(why))
    speaker.submit(second, lambda job: done.append("second"), lambda job, why: failed.append(why))
    run_until(stream, speaker, lambda: bool(done))
    assert done == ["first"] and not failed
    assert tts.said == ["First sentence here.", "And a second one follows."]  # sentence by sentence
    assert stream.speaking, "the audio message is still to come: nothing acked early"
    run_until(stream, speaker, lambda: len(done) == 2)
    assert done == ["first", "second"] and not stream.speaking
    speaker.close()


def test_a_message_that_cannot_be_spoken_fails_and_the_next_goes_on(stream, tmp_path):
    speaker = Speaker(stream, ToneTTS(fail_on="broken"), work_dir=tmp_path)
    stream.on_event = speaker.on_stream_event
    outcome: list[str] = []
    speaker.submit(TextMessage("This one is broken."), lambda job: outcome.append("done 1"),
                   lambda job, why: outcome.append(f"failed 1: {why}"))  # fmt: skip
    speaker.submit(ChatMessage("No dialogue model here."), lambda job: outcome.append("done 2"),
                   lambda job, why: outcome.append("failed 2"))  # fmt: skip
    speaker.submit(TextMessage("This one works."), lambda job: outcome.append("done 3"),
                   lambda job, why: outcome.append("failed 3"))  # fmt: skip
    run_until(stream, speaker, lambda: len(outcome) == 3)
    assert outcome[0].startswith("failed 1") and "the voice broke" in outcome[0]
    assert outcome[1:] == ["failed 2", "done 3"]
    speaker.close()
