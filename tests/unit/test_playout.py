"""AudioPlayout, the direct player's core: its queue, its frames on the audio clock, flushes and hiccups.

The sound device is outside the unit: a `FakeDevice` stands in for PortAudio and calls the playout's callback when
the test says, with the timing information PortAudio would give; the clock is the test's."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from assistant.live.playout import AudioPlayout, PlayoutSettings, SystemClockOutput

RATE = 48000
TICK = RATE // 25  # one 25 fps frame of audio: 1920 samples
BLOCK = 480  # the device's 10 ms block
DEVICE_DELAY_S = 0.03


class FakeDevice:
    def __init__(self, rate: int, block: int, callback) -> None:
        self.block, self.callback = block, callback
        self.played: list[np.ndarray] = []
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def pull(self, now: float) -> np.ndarray:
        out = np.full((self.block, 1), 12345, np.int16)  # garbage the callback must overwrite
        info = SimpleNamespace(currentTime=100.0, outputBufferDacTime=100.0 + DEVICE_DELAY_S)
        self.callback(out, self.block, info, None)
        self.played.append(out[:, 0].copy())
        return out[:, 0]


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig():
    clock = Clock()
    devices: list[FakeDevice] = []

    def open_output(rate, block, callback):
        devices.append(FakeDevice(rate, block, callback))
        return devices[-1]

    playout = AudioPlayout(PlayoutSettings(rate_hz=RATE, target_ms=60.0), open_output, clock)
    playout.start()
    return playout, devices[0], clock


def frame(n: int) -> np.ndarray:
    return np.full((6, 4), n, np.uint8)  # a tiny I420 image that says which frame it is


def tone(value: int, n: int = TICK) -> np.ndarray:
    return np.full(n, value, np.int16)


def test_plays_the_written_audio_in_order_after_priming_its_target(rig):
    playout, device, clock = rig
    playout.write(frame(0), tone(100))  # 40 ms: below the 60 ms target, the device plays silence
    assert not device.pull(clock.now).any()
    playout.write(frame(1), tone(200))
    heard = np.concatenate([device.pull(clock.now) for _ in range(8)])
    assert list(heard[: 4 * BLOCK]) == [100] * 4 * BLOCK
    assert list(heard[4 * BLOCK :]) == [200] * 4 * BLOCK
    assert playout.stats.underruns == 0


def test_a_frame_is_due_when_its_first_sample_is_heard(rig):
    playout, device, clock = rig
    for n in range(3):
        playout.write(frame(n), tone(100 + n))
    assert playout.due_frame() is None  # nothing taken by the device yet
    device.pull(clock.now)  # takes frame 0's first 10 ms: heard after the device's delay
    assert playout.due_frame(clock.now + DEVICE_DELAY_S - 0.001) is None
    assert playout.due_frame(clock.now + DEVICE_DELAY_S + 1e-9)[0, 0] == 0
    for _ in range(4):  # the device reaches frame 1's first sample in its 4th block from here
        clock.now += 0.01
        device.pull(clock.now)
    due = playout.due_frame(clock.now + DEVICE_DELAY_S + 1e-9)
    assert due is not None and due[0, 0] == 1
    assert playout.due_frame(clock.now + 1.0) is None  # frame 2's audio is not taken yet: not due


def test_the_painter_gets_the_newest_due_frame_and_skips_older_ones(rig):
    playout, device, clock = rig
    for n in range(4):
        playout.write(frame(n), tone(100))
    for _ in range(12):
        device.pull(clock.now)
    assert playout.due_frame(clock.now + 1.0)[0, 0] == 2  # frames 0-2 heard; 3 starts in the next block
    assert playout.stats.frames_skipped == 2


def test_flush_fades_and_drops_what_is_queued(rig):
    playout, device, clock = rig
    for n in range(4):
        playout.write(frame(n), tone(10000))
    device.pull(clock.now)
    playout.flush()
    after = np.concatenate([device.pull(clock.now) for _ in range(20)])
    fade = playout.settings.samples(playout.settings.fade_ms)
    assert after[0] == 10000 and np.all(np.diff(after[:fade].astype(int)) <= 0)  # a ramp down, no click
    assert not after[fade:].any()  # nothing of the cut audio comes back
    assert playout.stats.dropped_ms > 100
    assert playout.due_frame(clock.now + 1.0)[0, 0] == 3  # the dropped frames' pictures go by at once


def test_a_flush_is_no_underrun(rig):
    # a cancel empties the queue on purpose: the target (the player's delay) must not grow with every barge-in
    playout, device, clock = rig
    for n in range(4):
        playout.write(frame(n), tone(10000))
    device.pull(clock.now)
    playout.flush()
    for _ in range(3):
        device.pull(clock.now)
    assert playout.stats.underruns == 0 and playout.stats.target_ms == 60.0
    for n in range(2):  # the idle stream's silence refills the queue: played once it holds the target again
        playout.write(frame(4 + n), tone(5))
    assert (device.pull(clock.now) == 5).all()


def test_running_dry_plays_silence_and_grows_the_target(rig):
    playout, device, clock = rig
    for n in range(2):
        playout.write(frame(n), tone(7))
    heard = np.concatenate([device.pull(clock.now) for _ in range(10)])  # 80 ms queued, 100 ms pulled
    assert (heard == 7).sum() == 2 * TICK and not heard[2 * TICK :].any()
    assert playout.stats.underruns == 1 and playout.stats.target_ms == 80.0
    playout.write(frame(2), tone(8))  # 40 ms: under the new 80 ms target, still silence
    assert not device.pull(clock.now).any()
    playout.write(frame(3), tone(8))
    assert (device.pull(clock.now) == 8).all()


def test_a_queue_grown_by_a_burst_loses_silence_not_speech(rig):
    playout, device, clock = rig
    for n in range(3):
        playout.write(frame(n), tone(0))  # 120 ms of silence ...
    for n in range(3, 6):
        playout.write(frame(n), tone(500))  # ... then 120 ms of speech: 240 ms queued, target 60
    heard = device.pull(clock.now)
    assert (heard == 500).all()  # the silence was dropped first
    assert playout.stats.trimmed_ms == pytest.approx(120.0)
    rest = np.concatenate([device.pull(clock.now) for _ in range(11)])
    assert (rest == 500).all()  # every sample of the speech is played


def test_a_burst_of_speech_past_max_ms_is_dropped(rig):
    playout, device, clock = rig
    for n in range(25):  # a second of speech queued at once (the machine stalled)
        playout.write(frame(n), tone(300))
    device.pull(clock.now)
    assert playout.queued_ms() <= playout.settings.target_ms
    assert playout.stats.dropped_ms > 800


def test_frames_do_not_pile_up_when_nobody_paints(rig):
    playout, device, clock = rig
    for n in range(200):
        playout.write(frame(n), tone(0))
        for _ in range(4):
            device.pull(clock.now)
        clock.now += 0.04
    assert len(playout._frames) < 30


def test_without_a_sound_device_the_picture_keeps_time_on_the_system_clock():
    def no_device(rate, block, callback):
        raise OSError("Error querying device -1")

    playout = AudioPlayout(PlayoutSettings(rate_hz=RATE), no_device)
    playout.start()
    try:
        assert "no sound output" in playout.device_error and "device -1" in playout.device_error
        assert isinstance(playout._stream, SystemClockOutput)
        for n in range(10):
            playout.write(frame(n), tone(0))
        import time

        deadline = time.monotonic() + 5.0
        shown = None
        while shown is None and time.monotonic() < deadline:
            shown = playout.due_frame()
            time.sleep(0.01)
        assert shown is not None
    finally:
        playout.close()


def test_a_cut_also_silences_the_streams_own_fade_written_after_it(rig):
    playout, device, clock = rig
    for n in range(3):
        playout.write(frame(n), tone(9000))
    device.pull(clock.now)
    playout.cut(stream_fade_ms=30.0)  # the stream fades the voice out over its next 30 ms ...
    playout.write(frame(3), tone(6000))  # ... which it writes after the cut: never heard
    playout.write(frame(4), tone(6000))  # the silence runs 70 ms (the fade and a frame it may straddle) ...
    playout.write(frame(5), tone(300))  # ... then what the stream says next is heard again
    heard = np.concatenate([device.pull(clock.now) for _ in range(20)])
    silenced = playout.settings.samples(30.0 + 40.0)
    assert (heard == 6000).sum() == 2 * TICK - silenced
    assert (heard == 300).sum() == TICK


def test_listeners_hear_every_block_as_played_with_when_it_is_heard(rig):
    # the echo canceller's reference: what the device played, silence included, stamped with its time at the speaker
    playout, device, clock = rig
    heard: list[tuple[np.ndarray, float]] = []

    def listener(samples: np.ndarray, at: float) -> None:
        heard.append((samples, at))

    playout.add_listener(listener)
    playout.write(frame(0), tone(9))  # 40 ms: under the 60 ms target, so the first blocks are the priming's silence
    device.pull(clock.now)
    playout.write(frame(1), tone(9))
    clock.now = 10.01
    played = [device.pull(clock.now)]
    assert len(heard) == 2 and not heard[0][0].any()
    assert np.array_equal(heard[1][0], played[0]) and (played[0] == 9).all()
    assert heard[1][1] == pytest.approx(10.01 + DEVICE_DELAY_S)
    playout.remove_listener(listener)
    device.pull(clock.now)
    assert len(heard) == 2
