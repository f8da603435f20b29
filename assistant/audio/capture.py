"""Live microphone capture: pick the input device, read 16 kHz mono int16 frames, segment them, survive outages.

`LiveListener` runs its own thread. A sounddevice InputStream callback hands frames over a queue; the thread
reports the input level (RMS dBFS, for the UI meter), feeds a `VadSegmenter` and calls back with speech
onsets and utterances; each frame is stamped with time.monotonic() in the callback, so speech events say when
speech really ended on that clock (the VAD's `voice_ended_at`). No device, a device that fails to open, or one that goes away mid-stream becomes a
`DeviceError` passed to `on_error` (once per outage); the listener retries every `retry_interval_s` and says
so through `on_notice` when the microphone is back. Callbacks run on the listener thread: keep them short.

Needs sounddevice and the PortAudio library (bundled in the Windows/macOS wheels; `libportaudio2` on Linux),
imported only when a real device is used, so tests can inject a fake `AudioBackend`; soxr resamples when a
device cannot record at 16 kHz itself.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import soxr

from assistant.audio.smart_turn import end_of_turn_for
from assistant.audio.vad import (
    SegmenterEvent,
    SpeechDiscarded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    VadSegmenter,
    VadSettings,
)
from assistant.errors import AssistantError, AudioError, DeviceError
from assistant.events import Utterance

log = logging.getLogger(__name__)

SILENCE_DBFS = -96.0  # the floor of the meter: 16-bit audio has ~96 dB of dynamic range
WHAT_TO_DO = "listening resumes by itself once the microphone is back"


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level of int16 samples in dB relative to full scale (a full-scale square wave is 0 dBFS)."""
    if len(samples) == 0:
        return SILENCE_DBFS
    rms = float(np.sqrt(np.mean(np.square(samples.astype(np.float64) / 32768.0))))
    return max(SILENCE_DBFS, 20.0 * math.log10(rms)) if rms > 0 else SILENCE_DBFS


# ---- Devices: what the listener needs from an audio library (sounddevice, or a fake in tests) ----


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    max_input_channels: int
    default_sample_rate_hz: float
    hostapi: str = ""


@dataclass(frozen=True)
class StreamRequest:
    device: InputDevice
    sample_rate_hz: int
    blocksize: int  # samples per callback: one VAD frame
    callback: Callable[[np.ndarray, int, Any, Any], None]  # (indata (n, 1) int16, frames, time, status)
    finished_callback: Callable[[], None]  # called when the stream stops, on purpose or not


class InputStreamLike(Protocol):
    @property
    def active(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class EchoStage(Protocol):
    """What the listener needs of an echo canceller (assistant.audio.echo.EchoCanceller)."""

    far_active: bool  # the avatar's voice may be in the chunk just processed
    for_asr: np.ndarray  # that chunk as the recogniser should hear it (int16, same length)

    def process(self, chunk: np.ndarray, captured_at: float) -> np.ndarray: ...

    def is_speech(self, frame: np.ndarray) -> bool: ...


class AudioBackend(Protocol):
    def input_devices(self) -> list[InputDevice]: ...

    def default_input_index(self) -> int | None: ...

    def open_input(self, request: StreamRequest) -> InputStreamLike:
        """Open and start a mono int16 input stream; raise on failure."""
        ...

    def rescan(self) -> None:
        """Refresh the device list (a device plugged in after start-up)."""
        ...


class SoundDeviceBackend:
    """The real backend. `rescan` re-initialises PortAudio, which closes every other sounddevice stream of the
    process, so the listener only rescans while it holds no stream and `rescan_allowed` is True."""

    def __init__(self, rescan_allowed: bool = True) -> None:
        try:
            import sounddevice
        except OSError as e:  # sounddevice raises OSError when the PortAudio library is missing
            raise DeviceError(
                f"Cannot load the PortAudio library for microphone capture ({e}); "
                "install it (Debian/Ubuntu: sudo apt install libportaudio2) and restart"
            ) from e
        self._sd = sounddevice
        self.rescan_allowed = rescan_allowed

    def input_devices(self) -> list[InputDevice]:
        hostapis = self._sd.query_hostapis()
        return [
            InputDevice(
                int(d["index"]),
                str(d["name"]),
                int(d["max_input_channels"]),
                float(d["default_samplerate"]),
                str(hostapis[d["hostapi"]]["name"]),
            )
            for d in self._sd.query_devices()
            if d["max_input_channels"] > 0
        ]

    def default_input_index(self) -> int | None:
        index = self._sd.default.device[0]
        if index is None or int(index) < 0:
            return None
        return int(index)

    def open_input(self, request: StreamRequest) -> InputStreamLike:
        stream = self._sd.InputStream(
            device=request.device.index,
            samplerate=request.sample_rate_hz,
            channels=1,
            dtype="int16",
            blocksize=request.blocksize,
            callback=request.callback,
            finished_callback=request.finished_callback,
        )
        try:
            stream.start()
        except Exception:
            stream.close()
            raise
        return stream

    def rescan(self) -> None:
        if self.rescan_allowed:
            self._sd._terminate()
            self._sd._initialize()


def _describe(devices: list[InputDevice]) -> str:
    if not devices:
        return "none"
    return ", ".join(f"{d.index} '{d.name}'" for d in devices)


def resolve_input_device(device: str | int | None, backend: AudioBackend) -> InputDevice:
    """The input device named by config: None = system default, an index, or a case-insensitive substring
    of the name (an exact name wins over a substring; the first match wins among several)."""
    devices = backend.input_devices()
    if not devices:
        raise DeviceError(
            "No audio input device found. Plug in a microphone (or start the sound server, "
            f"PulseAudio/PipeWire); {WHAT_TO_DO}. Meanwhile you can type or open an audio file"
        )
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device.strip())
    if device is None or (isinstance(device, str) and not device.strip()):
        index = backend.default_input_index()
        for d in devices:
            if d.index == index:
                return d
        return devices[0]  # no default set (some ALSA setups): the first input is the best guess
    if isinstance(device, int):
        for d in devices:
            if d.index == device:
                return d
        raise DeviceError(
            f"Input device index {device} does not exist or has no input channels. Input devices: "
            f"{_describe(devices)}. Choose one in the settings (audio input device), or leave it empty for the default"
        )
    wanted = device.strip().lower()
    matches = [d for d in devices if d.name.lower() == wanted] or [
        d for d in devices if wanted in d.name.lower()
    ]
    if not matches:
        raise DeviceError(
            f"No input device matches '{device}'. Input devices: {_describe(devices)}. Choose one in the "
            f"settings (audio input device), or leave it empty for the default; {WHAT_TO_DO}"
        )
    return matches[0]


# ---- The listener ----


class LiveListener:
    """Captures from a microphone on its own thread and calls back with speech onsets, utterances and levels.

    `on_level` gets the RMS dBFS of every frame (SILENCE_DBFS while muted). While muted nothing is segmented
    and an utterance in progress is discarded. Errors never leave the thread: device problems go to
    `on_error` as DeviceError, a failing callback as AudioError.
    """

    def __init__(
        self,
        device: str | int | None = None,
        vad: VadSettings | None = None,
        *,
        on_utterance: Callable[[Utterance], None],
        on_speech_start: Callable[[SpeechStarted], None] | None = None,
        on_speech_discarded: Callable[[SpeechDiscarded], None] | None = None,
        on_speech_paused: Callable[[SpeechPaused], None] | None = None,
        on_speech_resumed: Callable[[SpeechResumed], None] | None = None,
        on_level: Callable[[float], None] | None = None,
        on_error: Callable[[AssistantError], None] | None = None,
        on_notice: Callable[[str], None] | None = None,
        retry_interval_s: float = 2.0,
        stall_timeout_s: float = 3.0,
        backend: AudioBackend | None = None,
        is_speech: Callable[[np.ndarray], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        echo: EchoStage | None = None,
        barge_in_onset_ms: int | None = None,
    ) -> None:
        # echo: an echo canceller (assistant.audio.echo) run on every chunk before the meter and the VAD; its
        # `is_speech` becomes the VAD's classifier, utterances are cut from its `for_asr` (what the recogniser
        # should hear), and while the avatar speaks an utterance needs `barge_in_onset_ms` of voiced audio to
        # start (a cough or a burst of residual echo does not interrupt).
        # clock: when a block was captured, read in the audio callback (tests pass a fake one).
        self.device = device
        self.vad = vad or VadSettings()
        self.on_utterance = on_utterance
        self.on_speech_start = on_speech_start
        self.on_speech_discarded = on_speech_discarded
        self.on_speech_paused = on_speech_paused
        self.on_speech_resumed = on_speech_resumed
        self.on_level = on_level
        self.on_error = on_error
        self.on_notice = on_notice
        self.retry_interval_s = retry_interval_s
        self.stall_timeout_s = stall_timeout_s
        self._backend = backend
        self._is_speech = is_speech if is_speech is not None or echo is None else echo.is_speech
        self._clock = clock
        self.echo = echo
        self._barge_in_onset_ms = barge_in_onset_ms
        self._muted = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.capturing_from: InputDevice | None = None  # the device in use, None while there is none
        self.dropped_chunks = 0  # chunks lost because this thread fell behind the audio callback

    # ---- control (any thread) ----

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mic-listener", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop capturing; no callback fires after this returns (unless the thread is stuck past the timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def muted(self) -> bool:
        return self._muted

    def set_muted(self, muted: bool) -> None:
        self._muted = bool(muted)

    # ---- the thread ----

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # the last line of defence: report, never take the app down
            log.exception("microphone listener stopped")
            self._call(self.on_error, AudioError(f"Microphone capture stopped after an internal error: {e!r}"))

    def _loop(self) -> None:
        # The learned end of turn runs here, on this thread, ~35 ms per pause (loaded once per process).
        end_of_turn = end_of_turn_for(self.vad, on_notice=lambda m: self._call(self.on_notice, m))
        segmenter = VadSegmenter.from_settings(
            self.vad, source="microphone", is_speech=self._is_speech, end_of_turn_model=end_of_turn
        )
        outage: str | None = None  # the message of the problem being reported, None while all is well
        had_stream = False
        while not self._stop.is_set():
            if outage is not None:
                self._rescan()
            frames: queue.Queue[tuple[np.ndarray, float]] = queue.Queue(maxsize=200)  # 6 s of 30 ms frames
            finished = threading.Event()
            try:
                stream, device, resampler = self._open(frames, finished)
            except DeviceError as e:
                if str(e) != outage:
                    self._call(self.on_error, e)
                outage = str(e)
                self._stop.wait(self.retry_interval_s)
                continue
            self.capturing_from = device
            if outage is not None or had_stream:
                self._call(self.on_notice, f"Microphone back: listening on '{device.name}'")
            else:
                self._call(self.on_notice, f"Listening on '{device.name}'")
            outage, had_stream = None, True
            try:
                problem = self._pump(stream, frames, finished, resampler, segmenter, device)
            except Exception as e:  # a bug must not kill the microphone for the rest of the session
                log.exception("microphone listener failed")
                problem = AudioError(f"Microphone capture failed unexpectedly ({e}); restarting capture")
            finally:
                self.capturing_from = None
                _close_quietly(stream)
            if problem is None:
                break
            # Keep what was said before the device went: it is real speech.
            self._dispatch(segmenter.flush())
            outage = str(problem)
            self._call(self.on_error, problem)
            self._stop.wait(self.retry_interval_s)
        self._dispatch(segmenter.reset("listener stopped"))

    def _open(
        self, frames: queue.Queue[tuple[np.ndarray, float]], finished: threading.Event
    ) -> tuple[InputStreamLike, InputDevice, soxr.ResampleStream | None]:
        if self._backend is None:
            self._backend = SoundDeviceBackend()  # raises DeviceError when PortAudio is missing
        backend = self._backend
        device = resolve_input_device(self.device, backend)

        def callback(indata: np.ndarray, n_frames: int, time_info: Any, status: Any) -> None:
            try:
                frames.put_nowait((indata[:, 0].copy(), self._clock()))  # captured by now
            except queue.Full:
                self.dropped_chunks += 1

        rate = self.vad.sample_rate_hz
        request = StreamRequest(device, rate, self.vad.frame_samples, callback, finished.set)
        try:
            return backend.open_input(request), device, None
        except Exception as first:
            native = int(device.default_sample_rate_hz)
            if native <= 0 or native == rate:
                raise self._open_error(device, f"{rate} Hz: {first}") from first
            # The device cannot record at the VAD rate itself: record at its own rate and resample.
            blocksize = native * self.vad.frame_ms // 1000
            try:
                stream = backend.open_input(StreamRequest(device, native, blocksize, callback, finished.set))
            except Exception as second:
                raise self._open_error(device, f"{rate} Hz: {first}; {native} Hz: {second}") from second
            return stream, device, soxr.ResampleStream(native, rate, 1, dtype="int16")

    def _rescan(self) -> None:
        # During an outage, with no stream held: re-read the device list so a device plugged back in (or a
        # sound server restarted) is found under its new index.
        if self._backend is None:
            return
        try:
            self._backend.rescan()
        except Exception as e:  # noqa: BLE001 - PortAudio re-init failing is one more failed retry
            log.warning("rescanning audio devices failed: %s", e)

    @staticmethod
    def _open_error(device: InputDevice, detail: str) -> DeviceError:
        return DeviceError(
            f"Cannot open input device '{device.name}' for mono capture ({detail}). Check that it is plugged in "
            f"and not held by another program, or choose another device in the settings; {WHAT_TO_DO}"
        )

    def _pump(
        self,
        stream: InputStreamLike,
        frames: queue.Queue[tuple[np.ndarray, float]],
        finished: threading.Event,
        resampler: soxr.ResampleStream | None,
        segmenter: VadSegmenter,
        device: InputDevice,
    ) -> AudioError | None:
        """Move frames from the callback queue into the segmenter until stopped (None) or the device fails."""
        last_data = time.monotonic()
        was_muted = False
        while not self._stop.is_set():
            try:
                chunk, captured_at = frames.get(timeout=0.1)
            except queue.Empty:
                if finished.is_set() or not stream.active:
                    why = "the stream stopped: unplugged, or the sound server went away"
                elif time.monotonic() - last_data > self.stall_timeout_s:
                    why = f"no audio for {self.stall_timeout_s:.0f} s"
                else:
                    continue
                return DeviceError(
                    f"Microphone '{device.name}' stopped delivering audio ({why}). Check that it is plugged in "
                    f"and the sound server is running; {WHAT_TO_DO}"
                )
            last_data = time.monotonic()
            if resampler is not None:
                chunk = resampler.resample_chunk(chunk)
            muted = self._muted
            if muted and not was_muted:
                self._dispatch(segmenter.reset("muted"))
            was_muted = muted
            if muted:
                segmenter.skip(len(chunk))
                self._call(self.on_level, SILENCE_DBFS)
                continue
            for_asr = None
            if self.echo is not None:
                chunk = self.echo.process(chunk, captured_at)
                for_asr = self.echo.for_asr
                if self._barge_in_onset_ms is not None:
                    far = self.echo.far_active
                    segmenter.set_onset_ms(self._barge_in_onset_ms if far else self.vad.onset_ms)
            self._call(self.on_level, rms_dbfs(chunk))
            self._dispatch(segmenter.push(chunk, at=captured_at, for_asr=for_asr))
        return None

    def _dispatch(self, events: list[SegmenterEvent]) -> None:
        for event in events:
            if isinstance(event, Utterance):
                self._call(self.on_utterance, event)
            elif isinstance(event, SpeechStarted):
                self._call(self.on_speech_start, event)
            elif isinstance(event, SpeechDiscarded):
                self._call(self.on_speech_discarded, event)
            elif isinstance(event, SpeechPaused):
                self._call(self.on_speech_paused, event)
            elif isinstance(event, SpeechResumed):
                self._call(self.on_speech_resumed, event)

    def _call(self, callback: Callable[[Any], None] | None, arg: Any) -> None:
        """Run a consumer's callback; its failure is reported, never allowed to stop capture."""
        if callback is None:
            return
        try:
            callback(arg)
        except Exception as e:
            log.exception("microphone listener callback %r failed", callback)
            if callback is not self.on_error and self.on_error is not None:
                try:
                    self.on_error(AudioError(f"A handler of microphone events failed: {e!r}"))
                except Exception:
                    log.exception("on_error callback failed")


def _close_quietly(stream: InputStreamLike) -> None:
    # A stream whose device vanished may fail to stop; there is nothing more to do with it.
    for step in (stream.stop, stream.close):
        try:
            step()
        except Exception as e:  # noqa: BLE001 - the stream is being dropped either way
            log.debug("closing input stream: %s", e)


def list_input_devices(backend: AudioBackend | None = None) -> list[InputDevice]:
    """The input devices PortAudio sees (for the settings dialog's list)."""
    return (backend or SoundDeviceBackend(rescan_allowed=False)).input_devices()
