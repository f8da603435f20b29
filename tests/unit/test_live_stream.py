"""The live stream's core: speech on the stream timeline, idle motion, the frame clock, cancel. No models, no Qt;
the renderer is the real light rig on the bundled avatar photo at a small size."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.live import (
    IdleMotion,
    LiveStream,
    RigRenderer,
    SpeechQueue,
    StreamDrained,
    StreamSettings,
    StreamSpeechFinished,
    StreamSpeechStarted,
)
from assistant.config import PROJECT_ROOT

RATE, FPS = 48000, 25
SPF = RATE // FPS  # 1920 samples a frame
AVATAR = PROJECT_ROOT / "assets" / "avatars" / "astronaut.png"


def tone(seconds: float, freq: float = 220.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    # A syllable-like envelope (4 Hz) so the mouth has something to follow.
    return (amp * np.sin(2 * np.pi * freq * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)).astype(np.float32)


def take_all(q: SpeechQueue, frames: int):
    return [q.take() for _ in range(frames)]


def test_clips_queued_while_one_plays_follow_it_without_a_gap():
    q = SpeechQueue(RATE, FPS)
    a, b = tone(0.5, 200), tone(0.3, 300)
    q.add(a, "a")
    q.take()  # a starts playing
    q.add(b, "b")  # arrives mid-clip: placed right after a
    out = [q.take() for _ in range(30)]
    audio = np.concatenate([np.zeros(SPF, np.float32)] * 0 + [f.audio for f in out])
    played = np.concatenate([a[SPF:], b])
    np.testing.assert_array_equal(audio[: len(played)], played)  # sample-exact: no hole, no overlap
    assert not audio[len(played) :].any()
    kinds = [(e.kind, e.key) for f in out for e in f.events]
    assert kinds == [("finished", "a"), ("started", "b"), ("finished", "b")]


def test_a_clip_queued_while_idle_starts_at_the_next_frame():
    q = SpeechQueue(RATE, FPS)
    take_all(q, 3)
    clip = q.add(tone(0.2), "x")
    assert clip.start == 3 * SPF
    first = q.take()
    assert [e.kind for e in first.events] == ["started"] and first.audio.any()


def test_mouth_targets_follow_the_speech_and_rest_after_it():
    q = SpeechQueue(RATE, FPS)
    q.add(tone(1.0), "x")
    frames = take_all(q, 40)
    levels = np.array([f.level for f in frames])
    assert levels[:25].max() > 0.8  # opens during the speech
    assert levels[:25].std() > 0.1  # and follows its syllables, not a constant
    assert levels[27:].max() == 0.0  # rests once the sound is over


def test_cancel_fades_out_within_the_fade_and_reports_what_was_said():
    q = SpeechQueue(RATE, FPS)
    q.add(tone(1.0), "first")
    q.add(tone(1.0), "second")
    take_all(q, 10)  # 0.4 s of "first" said
    dropped = q.cancel(fade_samples=int(0.03 * RATE))
    assert [(e.key, e.played_s, e.cancelled) for e in dropped] == [("second", 0.0, True)]
    after = take_all(q, 5)
    audio = np.concatenate([f.audio for f in after])
    fade_end = int(0.03 * RATE)
    assert np.abs(audio[:fade_end]).max() > 0.05  # a fade, not a cut (no click)
    assert not audio[fade_end:].any()  # silent 30 ms after the cancel
    gains = np.abs(audio[: fade_end : SPF // 8])
    finished = [e for f in after for e in f.events]
    assert len(finished) == 1 and finished[0].key == "first" and finished[0].cancelled
    assert finished[0].played_s == pytest.approx(0.43, abs=0.001)
    assert not q.pending and gains[0] >= gains[-1]


def test_audio_rate_must_divide_into_frames():
    with pytest.raises(ValueError, match="whole number of samples per frame"):
        SpeechQueue(44100, 30.0001)


def test_idle_motion_blinks_at_human_intervals_and_never_repeats():
    motion = IdleMotion(FPS, seed=3)
    poses = [motion.pose(n) for n in range(FPS * 120)]
    blink = np.array([p.blink for p in poses])
    starts = np.flatnonzero((blink[1:] > 0.5) & (blink[:-1] <= 0.5))
    per_minute = len(starts) / 2.0
    assert 10 <= per_minute <= 26  # people blink ~15-20 times a minute at rest
    assert np.diff(starts).min() >= 0.25 * FPS  # separate blinks (a double blink is 0.32 s apart)
    sway = np.array([p.sway for p in poses])
    assert np.abs(np.diff(sway, axis=0)).max() < 0.002  # smooth: no jump between frames
    # No loop point: the first 10 s of motion never comes back within 2 minutes.
    head = sway[: FPS * 10]
    for lag in range(FPS * 10, len(sway) - len(head), FPS // 5):
        assert np.abs(sway[lag : lag + len(head)] - head).max() > 1e-4
    gaze = np.array([p.gaze for p in poses])
    assert np.abs(gaze).max() > 0.3  # it looks around


def test_idle_motion_takes_frames_in_order():
    motion = IdleMotion(FPS)
    motion.pose(5)
    with pytest.raises(ValueError, match="in order"):
        motion.pose(5)


class MemorySink:
    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.audio: list[np.ndarray] = []
        self.closed = False

    def write(self, yuv, audio) -> None:
        self.frames.append(yuv.copy())
        self.audio.append(audio.copy())

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def renderer():
    return RigRenderer(AVATAR, 320, 180)


def mouth_rows(renderer, yuv: np.ndarray) -> np.ndarray:
    box = renderer.face_box
    y1, y2 = int(box.y1 + 0.65 * box.height), min(renderer.height, int(box.y2 + 0.15 * box.height))
    return yuv[y1:y2, box.x1 : box.x2].astype(np.float32)  # the luma plane's mouth area


def test_every_tick_makes_a_frame_and_one_frame_of_audio(renderer):
    events = []
    stream = LiveStream(renderer, StreamSettings(320, 180, FPS), on_event=events.append)
    sink = MemorySink()
    stream.add_sink(sink)
    for _ in range(10):
        stream.tick()
    stream.say(tone(0.6), RATE, key=(1, 0), text="hello there")
    for _ in range(40):
        stream.tick()
    assert len(sink.frames) == len(sink.audio) == 50
    assert all(a.shape == (SPF,) and a.dtype == np.int16 for a in sink.audio)
    assert all(f.shape == (270, 320) for f in sink.frames)  # I420: H * 3/2 rows
    idle = [np.abs(sink.frames[i + 1].astype(int) - sink.frames[i]).mean() for i in range(9)]
    assert max(idle) > 0  # idle motion: frames differ while nothing is said
    kinds = [type(e) for e in events]
    assert kinds == [StreamSpeechStarted, StreamSpeechFinished, StreamDrained]
    assert events[0].frame == 10 and events[1].frame == 10 + 14  # 0.6 s = 15 frames
    assert not events[1].cancelled and events[1].played_s == pytest.approx(0.6)
    # The mouth moves with the sound and is closed again a few frames after it.
    rest = mouth_rows(renderer, sink.frames[5])
    talking = max(np.abs(mouth_rows(renderer, f) - rest).mean() for f in sink.frames[11:24])
    after = np.abs(mouth_rows(renderer, sink.frames[49]) - rest).mean()
    assert talking > 3 * max(after, 0.5)
    stream.stop()
    assert sink.closed


def test_cancel_mid_reply_keeps_the_stream_idling(renderer):
    events = []
    stream = LiveStream(renderer, StreamSettings(320, 180, FPS, fade_ms=30), on_event=events.append)
    sink = MemorySink()
    stream.add_sink(sink)
    stream.say(tone(2.0), RATE, key=(1, 0), text="one two three four")
    stream.say(tone(1.0), RATE, key=(1, 1), text="five six")
    for _ in range(20):
        stream.tick()
    stream.cancel()
    for _ in range(20):
        stream.tick()
    audio = np.concatenate(sink.audio[20:])
    assert np.abs(audio[: int(0.03 * RATE)]).max() > 0 and not audio[int(0.03 * RATE) :].any()
    finished = [e for e in events if isinstance(e, StreamSpeechFinished)]
    assert [(e.key, e.cancelled) for e in finished] == [((1, 1), True), ((1, 0), True)]
    assert finished[1].played_s == pytest.approx(0.83, abs=0.001)
    assert isinstance(events[-1], StreamDrained)
    assert len(sink.frames) == 40 and not stream.speaking
    later = [np.abs(sink.frames[i + 1].astype(int) - sink.frames[i]).mean() for i in range(30, 39)]
    assert max(later) > 0  # still alive after the cancel


def test_a_failing_sink_is_dropped_and_the_stream_goes_on(renderer):
    class Broken:
        def write(self, yuv, audio):
            raise OSError("gone")

        def close(self):
            pass

    stream = LiveStream(renderer, StreamSettings(320, 180, FPS))
    good = MemorySink()
    stream.add_sink(Broken())
    stream.add_sink(good)
    for _ in range(3):
        stream.tick()
    assert len(good.frames) == 3


def test_the_renderer_must_match_the_stream_size(renderer):
    with pytest.raises(ValueError, match="renderer draws 320x180"):
        LiveStream(renderer, StreamSettings(640, 360, FPS))
