"""`assistant stream` with real components: a private RabbitMQ broker, a real RTMP receiver (ffmpeg listening on
127.0.0.1), the light engine, the bundled Piper voice and, to hear what was said, the bundled Whisper.

Checked on what the receiver recorded: packet timestamps without a hole across several messages, the words of the
text and audio messages transcribed back, A/V offset within 40 ms; and the faults: a poison message rejected
(dead-lettered) and the next one spoken, an in-flight message surviving a broker restart (spoken once, acked
once), the RTMP receiver going away and coming back, SIGTERM requeueing the message in flight.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml

from assistant.asr import WhisperASR, bundled_model_dir
from assistant.audio.io import load_audio
from assistant.bench import measure
from assistant.config import PROJECT_ROOT, Settings, load_settings
from assistant.events import Utterance
from assistant.live.build import LiveSetup, build_live
from assistant.live.stream import StreamEvent, StreamSpeechFinished, StreamSpeechStarted
from assistant.livestream import Limits, Livestreamer, SpeechKey, StreamOptions
from assistant.livestream.local_broker import LocalRabbitMQ
from assistant.livestream.receiver import RtmpReceiver
from assistant.livestream.stages import build_tts, dialogue_factory
from assistant.profile import resolve
from assistant.video import extract_audio, probe, read_frames
from tests.integration.json_log import JsonLog
from tests.integration.rabbitmq import rabbitmq_broker  # noqa: F401

pytestmark = pytest.mark.integration
logging.getLogger("pika").setLevel(logging.CRITICAL)  # the broker's readiness probes are refused until it is up

FOX = "The quick brown fox jumps over the lazy dog."
APPLES = "Seven green apples are lying on the kitchen table."
THANKS = "Thank you very much for watching this stream."


# ---- fixtures ----
@pytest.fixture(scope="module")
def settings() -> Settings:
    s = load_settings()
    s.talking_head.engine = "light"
    s.dialogue.max_tokens = 40
    return s


@pytest.fixture(scope="module")
def setup(settings: Settings) -> LiveSetup:
    live = build_live(settings, resolve(settings))
    assert live.engine == "light", live.notices
    return live


@pytest.fixture(scope="module")
def tts(settings: Settings):
    return build_tts(settings, resolve(settings))


@pytest.fixture(scope="module")
def asr() -> WhisperASR:
    folder = bundled_model_dir()
    assert folder is not None, "the bundled Whisper model is missing: run scripts/setup.sh"
    recognizer = WhisperASR(folder, cpu_threads=2)
    recognizer.load()
    return recognizer


def options(broker: LocalRabbitMQ, queue: str, rtmp: str | None = None, **kw) -> StreamOptions:
    return StreamOptions(rtmp_url=rtmp, amqp_url=broker.url, queue=queue, video_bitrate="800k", keyframe_s=1.0,
                         reconnect_initial_s=0.2, reconnect_max_s=1.0, **kw)  # fmt: skip


class Watch:
    """Stream events as they happen, to wait on."""

    def __init__(self) -> None:
        self.events: list[StreamEvent] = []
        self._cv = threading.Condition()

    def __call__(self, event: StreamEvent) -> None:
        with self._cv:
            self.events.append(event)
            self._cv.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
                self._cv.wait(min(left, 0.1))

    def started(self, text_part: str) -> list[StreamSpeechStarted]:
        return [e for e in self.events if isinstance(e, StreamSpeechStarted) and text_part in e.text]


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


@contextmanager
def streaming(opts: StreamOptions, setup: LiveSetup, tts, dialogue=None) -> Iterator[tuple[Livestreamer, Watch]]:
    streamer = Livestreamer(opts, setup)
    watch = Watch()
    streamer.listeners.append(watch)
    streamer.start()
    streamer.attach_speech(tts, dialogue)
    try:
        assert streamer.consumer is not None
        wait_for(streamer.consumer.connected.is_set, 30, "the consumer to connect")
        yield streamer, watch
    finally:
        streamer.stop()


def text(data: str) -> str:
    return json.dumps({"type": "text", "data": data, "session_id": "test", "timestamp": "2024-01-01T00:00:00Z"})


def espeak_audio(tmp_path: Path, words: str) -> str:
    wav = tmp_path / "message.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), words], check=True, capture_output=True, timeout=60)
    return json.dumps({"type": "audio", "format": "wav", "data": base64.b64encode(wav.read_bytes()).decode()})


def packets(path: Path, stream: str) -> np.ndarray:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", "packet=pts_time", "-of", "csv=p=0",
         str(path)], check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return np.array([float(line.split(",")[0]) for line in out.split() if line.strip() and line != "N/A"])


def transcript(asr: WhisperASR, media: Path, tmp_path: Path) -> str:
    """What Whisper hears in the recording, each stretch of sound on its own (tiny.en stops after a pause)."""
    wav = extract_audio(media, tmp_path / f"{media.stem}.wav", 16000)
    samples = load_audio(wav, 16000)
    heard = []
    for sound in measure.sound_onsets(samples, 16000, min_silence_ms=500, min_sound_ms=300):
        a, b = max(0, int((sound.start_s - 0.2) * 16000)), int((sound.end_s + 0.2) * 16000)
        result = asr.transcribe(Utterance(samples[a:b], 16000, a / 16000, b / 16000, source=str(media)))
        heard.append(result.text if result else "")
    return " ".join(heard).lower()


def mouth_box(setup: LiveSetup) -> tuple[int, int, int, int]:
    """The lower half of the face box: lips and jaw (x, y, w, h)."""
    b = setup.renderer.face_box
    x1, x2 = b.x1 + b.width // 4, b.x2 - b.width // 4
    y1, y2 = b.y1 + int(0.62 * b.height), min(setup.settings.height, b.y2 + int(0.12 * b.height))
    return x1, y1, (x2 - x1) // 2 * 2, (y2 - y1) // 2 * 2


# ---- the tests ----
def test_messages_spoken_on_a_continuous_stream(rabbitmq_broker, setup, tts, settings, asr, tmp_path):
    receiver = RtmpReceiver(tmp_path / "received.flv")
    receiver.start()
    queue = "q.continuous"
    with streaming(options(rabbitmq_broker, queue, receiver.url), setup, tts,
                   dialogue_factory(settings, resolve(settings))) as (streamer, watch):  # fmt: skip
        wait_for(lambda: streamer.publisher.connected, 20, "the RTMP publisher to connect")
        time.sleep(1.0)  # idle before the first message
        bodies = [text(FOX), espeak_audio(tmp_path, APPLES), text(THANKS),
                  json.dumps({"type": "chat", "data": "Say hello to the viewers."})]  # fmt: skip
        for n, body in enumerate(bodies, 1):
            rabbitmq_broker.publish(queue, body)
            wait_for(lambda: streamer.consumer.stats.acked == n, 60, f"message {n} spoken and acked")
            time.sleep(0.8)  # idle between messages (and a pause that tells Whisper where one ends)
        time.sleep(1.0)  # idle after the last one
        stats = streamer.consumer.stats
    receiver.stop()
    assert stats.rejected == 0 and stats.acked == 4
    assert rabbitmq_broker.queue_counts(queue)[0] == 0
    kinds = {e.key.job for e in watch.events if isinstance(e, StreamSpeechStarted) and isinstance(e.key, SpeechKey)}
    assert len(kinds) == 4, "each message, the chat answer included, was spoken"

    path = receiver.out_path
    info = probe(path)
    assert info.video_codec == "h264" and info.audio_codec == "aac" and (info.width, info.height) == (1280, 720)
    frame_s = 1.0 / setup.settings.fps
    for kind in ("v:0", "a:0"):
        pts = np.sort(packets(path, kind))
        assert len(pts) > 100
        gap = float(np.diff(pts).max())
        assert gap <= 2 * frame_s + 1e-3, f"{kind}: a {gap * 1000:.0f} ms hole in the packet timestamps"
    assert pts[-1] - pts[0] > 10.0

    heard = transcript(asr, path, tmp_path)
    for word in ("fox", "dog", "kitchen", "table", "watching"):
        assert word in heard, f"{word!r} not heard in {heard!r}"
    assert heard.index("fox") < heard.index("kitchen") < heard.index("watching"), heard

    # A/V offset: the mouth region's darkness against the loudness of the sound, over the whole recording.
    box = mouth_box(setup)
    video = measure.video_frames_analysis(read_frames(path), info.fps, box)
    audio = load_audio(tmp_path / f"{path.stem}.wav", 16000)
    env = measure.rms_envelope(audio, 16000, 10.0, 10.0)
    # Frame i is shown from i / fps to (i + 1) / fps: it stands for the middle of that (its start would read the
    # mouth half a frame, 20 ms, early).
    times = info.video_start_s - info.audio_start_s + (np.arange(video.frames) + 0.5) / info.fps
    off = measure.av_offset_ms(video.mouth_opening(), info.fps, env, 100.0, mouth_times_s=times, max_lag_ms=200)
    # The same offset timed the other way: at each sound after a pause, the mouth's rise against the sound's.
    onsets = measure.av_onset_offsets(video.mouth_opening(), times, audio, 16000)
    print(f"A/V offset {off.offset_ms:+.1f} ms (correlation {off.peak_correlation:.2f}); at {onsets.count} onsets "
          f"{onsets.median_ms:+.1f} ms (median)")  # fmt: skip
    assert off.peak_correlation > 0.3, "the mouth does not follow the speech"
    assert abs(off.offset_ms) <= 40.0, f"A/V offset {off.offset_ms:+.1f} ms"
    assert onsets.count >= 3 and abs(onsets.median_ms) <= 40.0, onsets


def test_poison_messages_are_rejected_and_the_next_one_spoken(rabbitmq_broker, setup, tts):
    queue, dead = "q.poison", "q.poison.dead"
    opts = options(rabbitmq_broker, queue, dead_letter_queue=dead, limits=Limits(max_text_chars=80))
    with streaming(opts, setup, tts) as (streamer, watch):
        for body in (
            "{not json",
            json.dumps({"type": "audio", "format": "wav", "data": "bm90IGF1ZGlv"}),  # base64 of "not audio"
            json.dumps({"type": "text", "data": "x" * 81}),
            json.dumps({"type": "dance"}),
            text("The next message is spoken."),
        ):
            rabbitmq_broker.publish(queue, body)
        wait_for(lambda: streamer.consumer.stats.acked == 1, 30, "the good message spoken")
        stats = streamer.consumer.stats
    assert stats.rejected == 4 and stats.requeued == 0
    assert len(watch.started("next message")) == 1
    assert [e.cancelled for e in watch.events if isinstance(e, StreamSpeechFinished)] == [False]
    assert rabbitmq_broker.queue_counts(queue)[0] == 0
    assert rabbitmq_broker.queue_counts(dead)[0] == 4, "the rejected messages are dead-lettered"


def test_an_in_flight_message_survives_a_broker_restart(rabbitmq_broker, setup, tts):
    queue = "q.restart"
    long_text = "This message is being spoken while the broker restarts. " + FOX + " " + APPLES
    with streaming(options(rabbitmq_broker, queue), setup, tts) as (streamer, watch):
        rabbitmq_broker.publish(queue, text(long_text))
        watch.wait(lambda: bool(watch.started("being spoken")), 30, "the message to start")
        assert streamer.consumer.stats.acked == 0
        rabbitmq_broker.restart(down_s=1.0)
        wait_for(lambda: streamer.consumer.stats.acked == 1, 60, "the message acked after the restart")
        rabbitmq_broker.publish(queue, text(THANKS))
        wait_for(lambda: streamer.consumer.stats.acked == 2, 30, "a message after the restart")
        stats = streamer.consumer.stats
        frames, repeated = streamer.stream.stats.frames, streamer.stream.stats.repeated_frames
    assert stats.connection_losses == 1 and stats.connects == 2
    assert stats.redelivered == 1 and stats.adopted + stats.acked_already_spoken == 1
    assert len(watch.started("being spoken")) == 1, "spoken once, not again on redelivery"
    assert len(watch.started("Thank you")) == 1
    assert rabbitmq_broker.queue_counts(queue)[0] == 0, "acknowledged: nothing was requeued on stop"
    assert repeated < frames * 0.05  # the stream idled on through the outage


def test_the_stream_survives_the_rtmp_server_going_away(rabbitmq_broker, setup, tts, asr, tmp_path):
    first = RtmpReceiver(tmp_path / "first.flv")
    first.start()
    queue = "q.rtmp"
    with streaming(options(rabbitmq_broker, queue, first.url), setup, tts) as (streamer, watch):
        publisher = streamer.publisher
        wait_for(lambda: publisher.connected, 20, "the first connection")
        first.stop()  # the server goes away
        wait_for(lambda: publisher.stats.failures >= 1, 20, "the publisher to notice")
        frames_at_loss = streamer.stream.stats.frames
        time.sleep(1.5)  # nobody listening: refused connections, backoff
        second = RtmpReceiver(tmp_path / "second.flv", port=first.port)
        second.start()
        wait_for(lambda: publisher.connected, 30, "the publisher to reconnect")
        assert streamer.stream.stats.frames > frames_at_loss + 25, "the frame clock kept ticking"
        rabbitmq_broker.publish(queue, text(FOX))
        wait_for(lambda: streamer.consumer.stats.acked == 1, 30, "a message after the reconnect")
        time.sleep(1.0)
        unpublished = publisher.stats.frames_unpublished
    second.stop()
    assert unpublished > 0
    assert probe(first.out_path).video_duration_s > 1.0
    info = probe(second.out_path)
    assert info.has_video and info.has_audio and info.video_duration_s > 3.0
    heard = transcript(asr, second.out_path, tmp_path)
    assert "fox" in heard and "dog" in heard, heard


def test_sigterm_requeues_the_message_in_flight(rabbitmq_broker, tmp_path):
    receiver = RtmpReceiver(tmp_path / "cli.flv")
    receiver.start()
    queue = "q.sigterm"
    data = yaml.safe_load((PROJECT_ROOT / "config" / "config.yaml").read_text())
    data["live"]["resolution"] = {"width": 640, "height": 360}  # a quarter of the pixels: a lighter process
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    env = dict(os.environ, ASSISTANT_AMQP_URL=rabbitmq_broker.url)  # the credentials from the environment
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "assistant"), "--config", str(config), "stream", "--rtmp", receiver.url,
         "--queue", queue, "--record", str(tmp_path / "cli.mp4"), "--json-log"],
        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    log = JsonLog(proc)
    lines, raw, reader = log.records, log.raw, log.thread
    try:
        wait_for(lambda: any("consuming" in r.get("msg", "") for r in lines), 60, "the CLI to consume")
        rabbitmq_broker.publish(queue, text("This message is cut off by a SIGTERM. " + FOX + " " + APPLES))
        wait_for(lambda: any(r.get("event") == "speaking" for r in lines), 30, "the message to be spoken")
        time.sleep(2.0)  # mid-message (it lasts about 8 s)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        receiver.stop()
    reader.join(5)
    text_out = "".join(raw)
    assert rabbitmq_broker.queue_counts(queue)[0] == 1, "the message in flight went back to the queue"
    assert any("requeued 1 message" in r.get("msg", "") for r in lines), text_out[-2000:]
    assert "guest:guest@" not in text_out and "guest:***@" in text_out, "credentials masked in the log"
    assert all(line.startswith("{") for line in raw if line.strip()), "every log line is JSON"
    record = probe(tmp_path / "cli.mp4")
    assert record.has_video and record.has_audio and record.video_duration_s > 2.0


# ---- `assistant stream` with Wav2Lip ----
def _network_colour(frame: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Blue minus red over the lower face (BGR). The formula weights paint the lower half of the face box a
    blue-violet noise (> +40 here); skin, lips and the light engine's shaded mouth are redder than blue (< -40)."""
    x, y, w, h = box
    region = frame[y : y + h, x : x + w].astype(np.float32)
    return float(region[..., 0].mean() - region[..., 2].mean())


def _stream_cli(engine: str, checkpoint: Path, broker, tmp_path: Path) -> tuple[Path, list[dict]]:
    """Run `assistant stream` with `engine` into a local RTMP receiver, say one text message, stop; the received
    FLV and the command's JSON log."""
    data = yaml.safe_load((PROJECT_ROOT / "config" / "config.yaml").read_text())
    data["gpu_profile"] = "low"
    data["talking_head"]["engine"] = engine
    data["talking_head"]["device"] = "cpu"
    data["talking_head"]["models"]["wav2lip"] = str(checkpoint)
    data["live"]["resolution"] = {"width": 640, "height": 360}
    data["paths"] = {**data.get("paths", {}), "cache_dir": str(tmp_path / "cache")}
    config = tmp_path / f"{engine}.yaml"
    config.write_text(yaml.safe_dump(data))
    receiver = RtmpReceiver(tmp_path / f"{engine}.flv")
    receiver.start()
    queue = f"q.cli.{engine}"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "assistant"), "--config", str(config), "stream", "--queue", queue,
         "--rtmp", receiver.url, "--amqp", broker.url, "--json-log"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    log = JsonLog(proc)

    def logged(part: str) -> bool:
        assert proc.poll() is None, "".join(log.raw)[-3000:]
        return any(part in r.get("msg", "") for r in log.records)

    try:
        wait_for(lambda: logged("consuming"), 180, "the stream to consume")
        time.sleep(1.5)  # idle frames first
        broker.publish(queue, text(FOX))
        wait_for(lambda: logged("acknowledging"), 120, "the message spoken")
        time.sleep(1.0)
        proc.terminate()
        assert proc.wait(60) == 0, "".join(log.raw)[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        receiver.stop()
    log.thread.join(5)
    return receiver.out_path, log.records


def _network_frames(path: Path, tmp_path: Path, box: tuple[int, int, int, int]) -> tuple[float, float, float]:
    """In the received recording: the share of idle frames (before the speech) and of talking frames (while it
    sounds at the receiver) that show the network's mouth, and the median change of the lower face from one
    talking frame to the next."""
    info = probe(path)
    wav = extract_audio(path, tmp_path / f"{path.stem}.wav", 16000)
    sounds = measure.sound_onsets(load_audio(wav, 16000), 16000, min_silence_ms=500, min_sound_ms=300)
    assert sounds, "nothing heard at the receiver"
    start, end = sounds[0].start_s, sounds[-1].end_s
    x, y, w, h = box
    idle, talking, change, prev = [], [], [], None
    for i, frame in enumerate(read_frames(path)):
        t = info.video_start_s - info.audio_start_s + i / info.fps
        if 0.3 < t < start - 0.3:
            idle.append(_network_colour(frame, box) > 0)
        elif start < t < end:
            talking.append(_network_colour(frame, box) > 0)
            lower = frame[y : y + h, x : x + w].astype(np.float32)
            if prev is not None:
                change.append(float(np.abs(lower - prev).mean()))
            prev = lower
    assert len(idle) > 10 and len(talking) > 25, (len(idle), len(talking))
    return float(np.mean(idle)), float(np.mean(talking)), float(np.median(change))


def test_the_stream_command_speaks_with_the_wav2lip_mouth_it_names(rabbitmq_broker, tmp_path):  # noqa: F811
    """`assistant stream` set to Wav2Lip (formula weights: the real network, not trained) puts the network's mouth
    on the frames the RTMP receiver gets while it speaks, and its log names the engine that ran. The same command
    with the light engine is the control: the network's colours never appear in its frames."""
    from assistant.talking_head.face import detect_faces, pick_face
    from assistant.talking_head.formula_weights import save_formula_checkpoint

    checkpoint = save_formula_checkpoint(tmp_path / "wav2lip.pth")
    shares = {}
    for engine in ("light", "wav2lip"):
        path, records = _stream_cli(engine, checkpoint, rabbitmq_broker, tmp_path)
        streaming_as = [r["msg"] for r in records if "live avatar streaming" in r.get("msg", "")]
        assert streaming_as and f": {engine} engine" in streaming_as[0], streaming_as
        assert any("live avatar: wav2lip mouth at" in r.get("msg", "") for r in records) == (engine == "wav2lip")
        face = pick_face(detect_faces(next(iter(read_frames(path)))), "the received frame")
        lower = (face.x1 + face.width // 8, face.y1 + face.height // 2, 3 * face.width // 4, face.height // 3)
        shares[engine] = _network_frames(path, tmp_path, lower)
    print(f"network mouth in idle/talking frames, change while talking: {shares}")
    assert shares["light"][:2] == (0.0, 0.0)
    idle, talking, change = shares["wav2lip"]
    assert idle == 0.0  # idle: the rig's own face
    assert talking >= 0.8, f"the network's mouth on only {talking:.0%} of the talking frames"
    assert change > 2.0  # it changes from frame to frame with the sound
