"""LiveListener against a fake audio backend: device errors are reported, capture resumes, nothing crashes.

sounddevice is outside the unit: `FakeBackend` lists devices and opens `FakeStream`s whose frames the test
pushes through the listener's real callback, or which it kills to simulate an unplugged microphone.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from assistant.audio.capture import (
    SILENCE_DBFS,
    InputDevice,
    LiveListener,
    StreamRequest,
    resolve_input_device,
    rms_dbfs,
)
from assistant.audio.vad import SpeechDiscarded, SpeechStarted
from assistant.errors import AudioError, DeviceError

RATE = 16000
MIC = InputDevice(0, "USB Microphone", 1, 16000.0, "ALSA")
HDMI = InputDevice(3, "HDA Intel HDMI", 2, 48000.0, "ALSA")


def loud(frame: np.ndarray) -> bool:
    return bool(np.abs(frame.astype(np.int32)).mean() > 1000)


def speech(rate: int = RATE, voiced_s: float = 0.9, silence_s: float = 0.9) -> np.ndarray:
    """Silence, a loud stretch the `loud` classifier calls speech, then silence (int16)."""
    quiet = np.zeros(int(silence_s * rate), np.int16)
    return np.concatenate([quiet, np.full(int(voiced_s * rate), 6000, np.int16), quiet])


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(0.005)


class FakeStream:
    def __init__(self, request: StreamRequest) -> None:
        self.request = request
        self.active = True
        self.closed = False

    def feed(self, audio: np.ndarray) -> None:
        """Deliver audio through the listener's callback in blocks, as PortAudio would."""
        n = self.request.blocksize
        for i in range(0, len(audio) - n + 1, n):
            block = audio[i : i + n].reshape(-1, 1)  # (blocksize, 1) int16, like sounddevice's indata
            self.request.callback(block, n, None, None)

    def die(self) -> None:
        """The device went away: PortAudio stops the stream and calls finished_callback."""
        self.active = False
        self.request.finished_callback()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        if not self.active and not self.closed:
            raise RuntimeError("stream already dead")  # closing a vanished device may fail: must be harmless
        self.active = False

    def close(self) -> None:
        self.closed = True


class FakeBackend:
    """Opens follow `plan`: an exception is raised, anything else opens a FakeStream."""

    def __init__(
        self,
        devices: list[InputDevice],
        plan: list[object] | None = None,
        devices_after_rescan: list[InputDevice] | None = None,
    ) -> None:
        self.devices = devices
        self.devices_after_rescan = devices_after_rescan
        self.plan = list(plan or [])
        self.requests: list[StreamRequest] = []
        self.streams: list[FakeStream] = []
        self.rescans = 0

    def input_devices(self) -> list[InputDevice]:
        return list(self.devices)

    def default_input_index(self) -> int | None:
        return self.devices[0].index if self.devices else None

    def open_input(self, request: StreamRequest) -> FakeStream:
        self.requests.append(request)
        step = self.plan.pop(0) if self.plan else "ok"
        if isinstance(step, Exception):
            raise step
        stream = FakeStream(request)
        self.streams.append(stream)
        return stream

    def rescan(self) -> None:
        self.rescans += 1
        if self.devices_after_rescan is not None:
            self.devices = self.devices_after_rescan


class Recorder:
    def __init__(self) -> None:
        self.utterances: list = []
        self.starts: list[SpeechStarted] = []
        self.discarded: list[SpeechDiscarded] = []
        self.levels: list[float] = []
        self.errors: list[Exception] = []
        self.notices: list[str] = []

    def listener(self, backend: FakeBackend, device: str | int | None = None, **kwargs) -> LiveListener:
        kwargs.setdefault("stall_timeout_s", 60.0)
        kwargs.setdefault("retry_interval_s", 0.01)
        kwargs.setdefault("is_speech", loud)
        return LiveListener(
            device,
            backend=backend,
            on_utterance=self.utterances.append,
            on_speech_start=self.starts.append,
            on_speech_discarded=self.discarded.append,
            on_level=self.levels.append,
            on_error=self.errors.append,
            on_notice=self.notices.append,
            **kwargs,
        )


@pytest.fixture
def rec():
    return Recorder()


def open_streams(backend: FakeBackend, n: int) -> FakeStream:
    wait_until(lambda: len(backend.streams) >= n, f"stream #{n} to open")
    return backend.streams[n - 1]


def test_capture_delivers_utterance_levels_and_onset(rec):
    backend = FakeBackend([MIC])
    listener = rec.listener(backend)
    listener.start()
    try:
        stream = open_streams(backend, 1)
        audio = speech()
        stream.feed(audio)
        wait_until(lambda: rec.utterances, "an utterance")
    finally:
        listener.stop()
    (utt,) = rec.utterances
    assert utt.sample_rate_hz == RATE and 1.0 <= utt.duration_s <= 1.5
    assert len(rec.starts) == 1 and rec.starts[0].start_s == pytest.approx(utt.start_s)
    assert backend.requests[0].sample_rate_hz == RATE and backend.requests[0].blocksize == 480
    assert min(rec.levels) == SILENCE_DBFS and max(rec.levels) == pytest.approx(rms_dbfs(np.full(480, 6000)))
    assert rec.errors == [] and rec.notices == ["Listening on 'USB Microphone'"]
    assert not listener.running


def test_failed_open_is_reported_once_then_capture_resumes(rec):
    unavailable = RuntimeError("Error opening InputStream: Device unavailable [PaErrorCode -9985]")
    backend = FakeBackend([MIC], plan=[unavailable, unavailable, unavailable])
    listener = rec.listener(backend)
    listener.start()
    try:
        stream = open_streams(backend, 1)
        stream.feed(speech())
        wait_until(lambda: rec.utterances, "an utterance after recovery")
    finally:
        listener.stop()
    assert len(backend.requests) == 4 and backend.rescans >= 3
    (error,) = rec.errors  # three failures of one outage: one message, not a flood
    assert isinstance(error, DeviceError)
    assert "USB Microphone" in str(error) and "Device unavailable" in str(error)
    assert "resumes" in str(error)
    assert rec.notices == ["Microphone back: listening on 'USB Microphone'"]


def test_no_device_at_all_then_one_is_plugged_in(rec):
    backend = FakeBackend([], devices_after_rescan=[MIC])
    listener = rec.listener(backend)
    listener.start()
    try:
        stream = open_streams(backend, 1)
        stream.feed(speech())
        wait_until(lambda: rec.utterances, "an utterance")
    finally:
        listener.stop()
    (error,) = rec.errors
    assert isinstance(error, DeviceError) and "No audio input device found" in str(error)
    assert rec.notices[-1].startswith("Microphone back")


def test_device_lost_mid_stream_is_reported_and_capture_resumes(rec):
    backend = FakeBackend([MIC])
    listener = rec.listener(backend)
    listener.start()
    try:
        first = open_streams(backend, 1)
        first.feed(speech())
        wait_until(lambda: len(rec.utterances) == 1, "the first utterance")
        first.die()
        second = open_streams(backend, 2)
        second.feed(speech())
        wait_until(lambda: len(rec.utterances) == 2, "an utterance from the reopened stream")
    finally:
        listener.stop()
    (error,) = rec.errors
    assert isinstance(error, DeviceError) and "stopped delivering audio" in str(error)
    assert "USB Microphone" in str(error)
    assert rec.notices == ["Listening on 'USB Microphone'", "Microphone back: listening on 'USB Microphone'"]
    assert first.closed and rec.utterances[1].start_s > rec.utterances[0].end_s


def test_speech_cut_by_a_lost_device_is_still_delivered(rec):
    backend = FakeBackend([MIC])
    listener = rec.listener(backend)
    listener.start()
    try:
        stream = open_streams(backend, 1)
        # 0.5 s of silence, then 0.7 s of speech, then the device is gone.
        stream.feed(speech(silence_s=0.5)[: int(1.2 * RATE)])
        wait_until(lambda: len(rec.levels) >= 40, "the frames to be consumed")
        stream.die()
        wait_until(lambda: rec.utterances, "the partial utterance")
    finally:
        listener.stop()
    assert 0.8 <= rec.utterances[0].duration_s <= 1.2


def test_a_silent_stalled_stream_counts_as_lost(rec):
    backend = FakeBackend([MIC])
    listener = rec.listener(backend, stall_timeout_s=0.2)
    listener.start()
    try:
        open_streams(backend, 2)  # no audio ever arrives: the first stream is given up and reopened
    finally:
        listener.stop()
    assert "no audio for" in str(rec.errors[0])


def test_unsupported_rate_falls_back_to_the_device_rate_and_resamples(rec):
    backend = FakeBackend([HDMI], plan=[RuntimeError("Invalid sample rate [PaErrorCode -9997]")])
    listener = rec.listener(backend)
    listener.start()
    try:
        stream = open_streams(backend, 1)
        stream.feed(speech(rate=48000))
        wait_until(lambda: rec.utterances, "an utterance")
    finally:
        listener.stop()
    assert [r.sample_rate_hz for r in backend.requests] == [16000, 48000]
    assert backend.requests[1].blocksize == 1440  # 30 ms at 48 kHz
    (utt,) = rec.utterances
    assert utt.sample_rate_hz == RATE and 1.0 <= utt.duration_s <= 1.5
    assert rec.errors == []


def test_rate_unsupported_at_both_rates_gives_a_clear_error(rec):
    bad = RuntimeError("Invalid sample rate")
    backend = FakeBackend([HDMI], plan=[bad, bad])
    listener = rec.listener(backend, retry_interval_s=60)
    listener.start()
    try:
        wait_until(lambda: rec.errors, "the error")
    finally:
        listener.stop()
    message = str(rec.errors[0])
    assert "HDA Intel HDMI" in message and "16000 Hz" in message and "48000 Hz" in message


def test_muted_speech_is_not_segmented_and_meter_reads_silence(rec):
    backend = FakeBackend([MIC])
    listener = rec.listener(backend)
    listener.set_muted(True)
    listener.start()
    try:
        stream = open_streams(backend, 1)
        stream.feed(speech())
        wait_until(lambda: len(rec.levels) >= len(speech()) // 480, "muted frames to be consumed")
        assert rec.utterances == [] and rec.starts == [] and set(rec.levels) == {SILENCE_DBFS}
        listener.set_muted(False)
        stream.feed(speech())
        wait_until(lambda: rec.utterances, "an utterance after unmuting")
    finally:
        listener.stop()
    # The muted 2.7 s still count on the capture clock.
    assert rec.utterances[0].start_s > 2.7


def test_muting_mid_utterance_discards_it(rec):
    backend = FakeBackend([MIC])
    listener = rec.listener(backend)
    listener.start()
    try:
        stream = open_streams(backend, 1)
        stream.feed(speech()[: int(1.5 * RATE)])
        wait_until(lambda: rec.starts, "speech onset")
        listener.set_muted(True)
        stream.feed(np.zeros(4800, np.int16))
        wait_until(lambda: rec.discarded, "the discarded utterance")
    finally:
        listener.stop()
    assert rec.discarded[0].reason == "muted" and rec.utterances == []


def test_a_failing_handler_is_reported_and_capture_goes_on(rec):
    backend = FakeBackend([MIC])
    calls: list[object] = []

    def broken(utterance: object) -> None:
        calls.append(utterance)
        raise KeyError("bug in the pipeline")

    listener = rec.listener(backend)
    listener.on_utterance = broken
    listener.start()
    try:
        stream = open_streams(backend, 1)
        stream.feed(np.concatenate([speech(), speech()]))
        wait_until(lambda: len(calls) == 2, "both utterances despite the failing handler")
    finally:
        listener.stop()
    assert len(rec.errors) == 2 and all(type(e) is AudioError for e in rec.errors)
    assert "bug in the pipeline" in str(rec.errors[0])


def test_stop_ends_the_thread_and_discards_an_open_utterance(rec):
    backend = FakeBackend([MIC])
    listener = rec.listener(backend)
    listener.start()
    stream = open_streams(backend, 1)
    stream.feed(speech()[: int(1.5 * RATE)])
    wait_until(lambda: rec.starts, "speech onset")
    listener.stop()
    assert not listener.running and stream.closed
    assert rec.utterances == [] and rec.discarded[-1].reason == "listener stopped"
    count = len(rec.levels)
    stream.feed(speech())  # a late callback from PortAudio after stop must not reach the consumer
    time.sleep(0.05)
    assert len(rec.levels) == count


def test_listener_can_be_restarted(rec):
    backend = FakeBackend([MIC])
    listener = rec.listener(backend)
    for n in (1, 2):
        listener.start()
        open_streams(backend, n).feed(speech())
        wait_until(lambda n=n: len(rec.utterances) == n, f"utterance {n}")
        listener.stop()


DEVICES = [
    InputDevice(0, "pulse", 32, 44100.0),
    InputDevice(1, "default", 32, 44100.0),
    InputDevice(4, "Blue Yeti USB Audio: Mic (hw:2,0)", 2, 48000.0),
]


@pytest.mark.parametrize(
    "wanted, index",
    [(None, 0), ("", 0), ("yeti", 4), ("BLUE YETI", 4), ("default", 1), (4, 4), ("4", 4), ("Pulse", 0)],
)
def test_resolve_input_device(wanted, index):
    assert resolve_input_device(wanted, FakeBackend(DEVICES)).index == index


def test_resolve_prefers_an_exact_name_to_a_substring():
    devices = [InputDevice(0, "Mic 2", 1, 16000.0), InputDevice(1, "Mic", 1, 16000.0)]
    assert resolve_input_device("mic", FakeBackend(devices)).index == 1


@pytest.mark.parametrize(
    "wanted, words", [("webcam", "No input device matches 'webcam'"), (7, "index 7 does not exist")]
)
def test_resolve_unknown_device_lists_the_choices(wanted, words):
    with pytest.raises(DeviceError) as info:
        resolve_input_device(wanted, FakeBackend(DEVICES))
    assert words in str(info.value) and "4 'Blue Yeti USB Audio: Mic (hw:2,0)'" in str(info.value)


def test_rms_dbfs():
    t = np.arange(RATE) / RATE
    half_sine = (0.5 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    assert rms_dbfs(half_sine) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.05)  # -9.03 dBFS
    assert rms_dbfs(np.full(480, -32768, np.int16)) == pytest.approx(0.0)
    assert rms_dbfs(np.zeros(480, np.int16)) == SILENCE_DBFS
    assert rms_dbfs(np.zeros(0, np.int16)) == SILENCE_DBFS


def test_an_internal_failure_is_reported_and_capture_restarts(rec):
    calls = {"n": 0}

    def flaky(frame: np.ndarray) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("simulated failure inside the VAD")
        return loud(frame)

    backend = FakeBackend([MIC])
    listener = rec.listener(backend, is_speech=flaky)
    listener.start()
    try:
        open_streams(backend, 1).feed(speech())
        second = open_streams(backend, 2)  # the failed stream is dropped and a fresh one opened
        second.feed(speech())
        wait_until(lambda: rec.utterances, "an utterance after the restart")
    finally:
        listener.stop()
    (error,) = rec.errors
    assert type(error) is AudioError and "simulated failure" in str(error)
