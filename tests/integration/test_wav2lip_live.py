"""Wav2Lip in the live stream: the real network (formula weights as a checkpoint) makes the mouth, the rig the rest;
frames are made ahead by the measured deficit, the sound is released once enough exist, a cancel drops the rest."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.io import load_audio
from assistant.config import PROJECT_ROOT
from assistant.live import LiveStream, RigRenderer, StreamSettings, StreamSpeechFinished
from assistant.live.clip_feed import ClipFeed
from assistant.live.wav2lip_live import Wav2LipLiveRenderer
from assistant.talking_head.formula_weights import save_formula_checkpoint
from assistant.talking_head.wav2lip_engine import Wav2LipTalkingHead

pytestmark = pytest.mark.integration

AVATAR = PROJECT_ROOT / "assets" / "avatars" / "astronaut.png"
W, H, FPS = 320, 180, 25.0


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wav2lip-live")


@pytest.fixture(scope="module")
def speech(work: Path) -> Path:
    assert shutil.which("espeak-ng"), "espeak-ng is needed: sudo apt-get install espeak-ng"
    path = work / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "Hello, nice to meet you."], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def renderer(work: Path) -> Wav2LipLiveRenderer:
    checkpoint = save_formula_checkpoint(work / "wav2lip.pth")
    engine = Wav2LipTalkingHead(
        AVATAR, device="cpu", quality_mode="standard", model_path=checkpoint, resolution=(W, H), fps=FPS,
        wav2lip_batch_size=8, cache_dir=work / "faces",
    )  # fmt: skip
    rig = RigRenderer(AVATAR, W, H)
    live = Wav2LipLiveRenderer(engine, rig, FPS)
    assert live.measure() > 0
    yield live
    live.close()


class Sink:
    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def write(self, yuv, audio) -> None:
        self.frames.append(yuv.copy())

    def close(self) -> None:
        pass


def test_lead_follows_the_measured_rate(renderer: Wav2LipLiveRenderer):
    saved = renderer.frames_per_s
    try:
        renderer.frames_per_s = 2 * FPS  # faster than real time: one batch ahead is enough
        assert renderer.lead_frames(100) == renderer.engine.batch_size
        renderer.frames_per_s = 0.65 * FPS  # Wav2Lip on 2 CPU cores: a third of the clip first, plus a batch
        assert renderer.lead_frames(100) == 35 + renderer.engine.batch_size
        renderer.frames_per_s = 0.0  # unknown: the whole clip first
        assert renderer.lead_frames(100) == 100
    finally:
        renderer.frames_per_s = saved


def test_the_mouth_comes_from_wav2lip_and_the_stream_never_waits(renderer: Wav2LipLiveRenderer, speech: Path):
    events = []
    done = threading.Event()

    def on_event(event) -> None:
        events.append(event)
        if isinstance(event, StreamSpeechFinished):
            done.set()

    stream = LiveStream(renderer, StreamSettings(W, H, FPS), on_event=on_event)  # type: ignore[arg-type]
    sink = Sink()
    stream.add_sink(sink)
    stream.start()  # the real frame clock
    try:
        before = renderer.frames_from_network
        ClipFeed(stream).say_file((1, 0), speech, "hello")  # the app's hand-off: prepared, then said
        assert done.wait(180), "the clip was never released or never finished playing"
        threading.Event().wait(0.4)  # some idle frames after it
    finally:
        stream.stop()
    (finished,) = [e for e in events if isinstance(e, StreamSpeechFinished)]
    assert not finished.cancelled
    drawn = renderer.frames_from_network - before
    clip_frames = int(np.ceil(finished.duration_s * FPS))
    # Generation stayed ahead of playback: every frame of the clip (but a rounding frame) has the network's mouth.
    assert drawn >= clip_frames - 1, (drawn, clip_frames, renderer.frames_per_s)
    assert stream.stats.repeated_frames == 0
    b = renderer.face_box
    faces = [f[b.y1 : b.y2, b.x1 : b.x2].astype(np.int16) for f in sink.frames]
    assert max(np.abs(faces[i + 1] - faces[i]).mean() for i in range(len(faces) - 1)) > 1.0  # the mouth moves


def test_cancel_drops_clips_not_yet_released(renderer: Wav2LipLiveRenderer, speech: Path):
    samples = load_audio(speech, 16000)
    released = []
    gate = threading.Event()
    renderer.prepare((2, 0), samples, 16000, lambda: (released.append(0), gate.set()))
    renderer.prepare((2, 1), samples, 16000, lambda: released.append(1))
    renderer.cancel()
    gate.wait(5)
    renderer.prepare((3, 0), samples, 16000, lambda: (released.append(3), gate.set()))
    gate.clear()
    assert gate.wait(120)
    assert 1 not in released and released[-1] == 3


def test_a_cancelled_feed_reports_the_clips_it_never_said(renderer: Wav2LipLiveRenderer, speech: Path):
    events = []
    stream = LiveStream(renderer, StreamSettings(W, H, FPS), on_event=events.append)  # type: ignore[arg-type]
    feed = ClipFeed(stream)
    feed.say_file((4, 0), speech, "first")
    feed.say_file((4, 1), speech, "second")
    assert feed.cancel()  # before either was released (the clock is not even running): it was busy
    unsaid = [(e.key, e.text, e.played_s, e.cancelled) for e in events if isinstance(e, StreamSpeechFinished)]
    assert sorted(unsaid) == [((4, 0), "first", 0.0, True), ((4, 1), "second", 0.0, True)]
    assert not feed.busy
    threading.Event().wait(1.0)  # a release that was already on its way is dropped, not said
    assert not stream.speaking
