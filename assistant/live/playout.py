"""The direct player's core: the live stream's audio to the sound device through a short queue, its frames due on
the audio clock.

`AudioPlayout` is a `FrameSink` of the live stream. Each tick's audio joins a queue that the sound device's callback
drains (sounddevice/PortAudio, a short block); each tick's picture waits beside it, stamped with the sample where its
audio begins. When the device's callback takes that sample, the frame gets the time it will be heard: the callback's
time plus the device's own delay (PortAudio's `outputBufferDacTime - currentTime`) plus the sample's place in the
block. The painter (`ui/direct_player.py`) asks `due_frame(now)` and shows the newest frame whose sound is being
heard: the picture is slaved to the audio clock, and there is no encoder, container or player buffer in between.

The queue aims to hold `target_ms` of audio ahead of the device (enough to ride over a late tick of the stream's
clock); each time it runs dry anyway (a loaded machine: an underrun, silence until the target is back) the target
grows a little, up to `max_target_ms`. After a hiccup the stream catches up in a burst and the queue grows: the extra
is dropped while it is silence (between replies and sentences), and whatever it is above `max_ms` (the machine
stalled for seconds).

`flush()` is the player's part of a cancel: what is queued (never yet heard) is dropped at once, after a few
milliseconds of fade, so nothing of a cut reply comes back later. The queue it empties is no underrun: counted as one,
every barge-in grew the target by 20 ms (in `assistant bench echo` the player's delay rose from ~110 to ~130 ms over
a session's first three cuts) and moved the avatar's sound, and with it its echo, against the canceller's reference.

Without a sound device (`open_output` fails) the playout keeps time on the system clock (`SystemClockOutput`): the
picture still plays, the sound goes nowhere, and `device_error` says why.

Needs numpy; sounddevice (PortAudio) for a real device.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

CUT_FRAME_MS = 40.0  # a cut also silences one 25 fps frame beyond the stream's fade (the fade may straddle two)
SILENT_PEAK = 8  # int16: a queued stretch this quiet may be dropped to shorten the queue


@dataclass(frozen=True)
class PlayoutSettings:
    rate_hz: int = 48000
    block_ms: float = 10.0  # the device callback's block
    target_ms: float = 60.0  # audio held ahead of the device at the start (live.audio_buffer_ms)
    grow_ms: float = 20.0  # each time the queue runs dry, the target grows by this ...
    max_target_ms: float = 120.0  # ... up to this (a loaded machine's late ticks; a quiet one stays at the start)
    trim_ms: float = 80.0  # queued beyond target + this while silent: the silence is dropped down to target
    max_ms: float = 600.0  # queued beyond this: dropped whatever it is
    fade_ms: float = 5.0  # a flush fades the next samples out over this long

    def samples(self, ms: float) -> int:
        return int(round(ms * self.rate_hz / 1000.0))


@dataclass
class PlayoutStats:
    underruns: int = 0  # callbacks that found the queue short (they played silence for the rest)
    underrun_ms: float = 0.0
    trimmed_ms: float = 0.0  # silence dropped to shorten the queue
    dropped_ms: float = 0.0  # audio dropped: flushes, and a queue past max_ms
    device_delay_ms: float = 0.0  # the device's own delay, as its last callback reported it
    target_ms: float = 0.0  # the queue's target now (grows after underruns)
    frames_shown: int = 0
    frames_skipped: int = 0  # due frames that a newer one replaced before the painter asked


@dataclass
class _Frame:
    start: int  # the sample of the written audio where this frame's audio begins
    yuv: np.ndarray
    heard_at: float | None = None  # time.monotonic() when that sample reaches the speaker


class OutputTime(Protocol):
    currentTime: float  # noqa: N815 - PortAudio's names
    outputBufferDacTime: float  # noqa: N815


class OutputStreamLike(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


# (int16 samples as played, time.monotonic() when the first of them is heard): see AudioPlayout.add_listener
PlayedListener = Callable[[np.ndarray, float], None]

# (rate_hz, block samples, callback(out int16 (n, 1), n, time_info, status)) -> a started-or-startable stream
OutputOpener = Callable[[int, int, Callable[..., None]], OutputStreamLike]


def open_sounddevice(rate_hz: int, block: int, callback: Callable[..., None]) -> OutputStreamLike:
    """The default output device through PortAudio, mono int16, at its lowest latency."""
    import sounddevice as sd

    return sd.OutputStream(
        samplerate=rate_hz, blocksize=block, channels=1, dtype="int16", latency="low", callback=callback
    )


class SystemClockOutput:
    """No sound device: calls the callback every block on the system clock (the sound is discarded)."""

    def __init__(self, rate_hz: int, block: int, callback: Callable[..., None]) -> None:
        self._period = block / rate_hz
        self._block = block
        self._callback = callback
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="playout-clock", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        out = np.zeros((self._block, 1), np.int16)
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._callback(out, self._block, None, None)
            next_at += self._period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def close(self) -> None:
        self.stop()


class AudioPlayout:
    """A live stream sink that plays its audio on the sound device and says which frame is being heard."""

    def __init__(
        self,
        settings: PlayoutSettings | None = None,
        open_output: OutputOpener = open_sounddevice,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = s = settings or PlayoutSettings()
        self.stats = PlayoutStats()
        self.device_error: str | None = None
        self._open_output = open_output
        self._clock = clock
        self._lock = threading.Lock()
        self._audio: deque[np.ndarray] = deque()  # queued int16 chunks, oldest first
        self._head = 0  # samples of _audio[0] already played
        self._written = 0  # samples ever written
        self._played = 0  # samples ever taken off the queue (played, trimmed or dropped)
        self._frames: deque[_Frame] = deque()
        self._block = max(1, s.samples(s.block_ms))
        self._priming = True  # silence until the queue first holds its target (and again after running dry)
        self._silence_left = 0  # samples still to be written that a flush silenced (the stream's fade)
        self._flushed = False  # the queue was emptied on purpose: running out of it is no underrun
        self.stats.target_ms = s.target_ms
        self._stream: OutputStreamLike | None = None
        self._listeners: list[PlayedListener] = []

    # ---- who hears what is played (the echo canceller's reference) ----
    def add_listener(self, listener: PlayedListener) -> None:
        """Call `listener(samples, heard_at)` with every block handed to the device, silence included, and when its
        first sample reaches the speaker (time.monotonic()): the sound exactly as played, on the device's clock."""
        self._listeners = [*self._listeners, listener]

    def remove_listener(self, listener: PlayedListener) -> None:
        self._listeners = [x for x in self._listeners if x is not listener]

    # ---- lifecycle ----
    def start(self) -> None:
        """Open the sound device; without one, keep time on the system clock (`device_error` says why)."""
        rate = self.settings.rate_hz
        try:
            self._stream = self._open_output(rate, self._block, self._callback)
            self._stream.start()
        except Exception as e:  # noqa: BLE001 - PortAudio raises its own errors and OSError
            self.device_error = f"no sound output ({e})"
            log.warning("direct player: %s; the picture runs on the system clock, without sound", self.device_error)
            self._stream = SystemClockOutput(rate, self._block, self._callback)
            self._stream.start()

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            log.info("direct player closed: %s", self.stats)
            try:
                stream.stop()
                stream.close()
            except Exception:  # noqa: BLE001 - closing a device that went away
                log.debug("closing the sound output failed", exc_info=True)

    # ---- the stream's side (the clock thread) ----
    def write(self, yuv_i420: np.ndarray, audio_s16: np.ndarray) -> None:
        with self._lock:
            self._frames.append(_Frame(self._written, yuv_i420))
            if len(audio_s16):
                audio = np.asarray(audio_s16, np.int16)
                if self._silence_left > 0:
                    audio = audio.copy()
                    audio[: self._silence_left] = 0
                    self._silence_left = max(0, self._silence_left - len(audio))
                self._audio.append(audio)
                self._written += len(audio_s16)
            self._limit_frames()

    def flush(self, silence_next_ms: float = 0.0) -> None:
        """Drop everything queued (a cancel): the next few ms fade out, the rest is never heard. `silence_next_ms`:
        the sound written in that much stream time from now is silenced too (the stream's own fade of the cut
        voice, which the player's fade has made redundant: played after the drop, it was the last sound heard)."""
        with self._lock:
            self._silence_left = self.settings.samples(silence_next_ms)
            fade = self._take(self.settings.samples(self.settings.fade_ms))
            dropped = self._queued()
            self._skip(dropped)
            self.stats.dropped_ms += dropped * 1000.0 / self.settings.rate_hz
            self._flushed = True
            if len(fade):
                ramp = np.linspace(1.0, 0.0, len(fade), dtype=np.float32)
                self._audio.appendleft((fade * ramp).astype(np.int16))
                self._head = 0
                self._played -= len(fade)

    def cut(self, stream_fade_ms: float) -> None:
        """A cancel of the stream that fades its voice out over `stream_fade_ms`: drop what is queued, and the
        stream's fade too (plus a frame it may straddle), so the last sound heard is the drop's own short fade."""
        self.flush(silence_next_ms=stream_fade_ms + CUT_FRAME_MS)

    # ---- the painter's side (the GUI thread) ----
    def due_frame(self, now: float | None = None) -> np.ndarray | None:
        """The newest frame whose sound is being heard, if it was not handed out already; else None."""
        now = self._clock() if now is None else now
        due: _Frame | None = None
        with self._lock:
            while self._frames and self._frames[0].heard_at is not None and self._frames[0].heard_at <= now:
                if due is not None:
                    self.stats.frames_skipped += 1
                due = self._frames.popleft()
        if due is None:
            return None
        self.stats.frames_shown += 1
        return due.yuv

    def queued_ms(self) -> float:
        with self._lock:
            return self._queued() * 1000.0 / self.settings.rate_hz

    # ---- the device's side (its callback thread) ----
    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        now = self._clock()
        delay = _device_delay(time_info)
        self.stats.device_delay_ms = delay * 1000.0
        with self._lock:
            self._priming = self._priming and self._queued() < self._target()
            if self._priming:
                chunk = np.zeros(0, np.int16)
            else:
                self._shorten()
                first = self._played
                chunk = self._take(frames)
                self._stamp(first, now + delay, frames)
                if len(chunk) < frames and self._flushed:
                    self._priming = True  # after a cancel: wait for the target again, but it is no hiccup
                elif len(chunk) < frames:
                    self._ran_dry(frames - len(chunk))
                self._flushed = False
        outdata[: len(chunk), 0] = chunk
        outdata[len(chunk) :, 0] = 0
        for listener in self._listeners:
            listener(outdata[:frames, 0].copy(), now + delay)

    # ---- internals (called with the lock held) ----
    def _queued(self) -> int:
        return self._written - self._played

    def _target(self) -> int:
        return self.settings.samples(self.stats.target_ms)

    def _ran_dry(self, missing: int) -> None:
        """Silence until the queue holds its target again, and a slightly longer target from now on."""
        s = self.settings
        self._priming = True
        self.stats.underruns += 1
        self.stats.underrun_ms += missing * 1000.0 / s.rate_hz
        self.stats.target_ms = min(s.max_target_ms, self.stats.target_ms + s.grow_ms)

    def _take(self, n: int) -> np.ndarray:
        """Up to n samples off the front of the queue."""
        parts: list[np.ndarray] = []
        while n > 0 and self._audio:
            chunk = self._audio[0]
            piece = chunk[self._head : self._head + n]
            parts.append(piece)
            n -= len(piece)
            self._head += len(piece)
            self._played += len(piece)
            if self._head >= len(chunk):
                self._audio.popleft()
                self._head = 0
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)

    def _skip(self, n: int) -> None:
        first = self._played
        self._take(n)
        self._stamp(first, self._clock(), 0)

    def _shorten(self) -> None:
        """Bring a queue that grew after a hiccup back to its target: silence first, anything past max_ms."""
        s = self.settings
        excess = self._queued() - self._target()
        if excess > s.samples(s.max_ms) - self._target():
            self.stats.dropped_ms += excess * 1000.0 / s.rate_hz
            self._skip(excess)
        elif excess > s.samples(s.trim_ms):
            silent = self._silent_prefix(excess)
            if silent:
                self.stats.trimmed_ms += silent * 1000.0 / s.rate_hz
                self._skip(silent)

    def _silent_prefix(self, limit: int) -> int:
        """How many of the next `limit` queued samples are silence, counted in whole chunks."""
        n, head = 0, self._head
        for chunk in self._audio:
            piece = chunk[head:]
            head = 0
            if n + len(piece) > limit or (len(piece) and int(np.abs(piece).max()) > SILENT_PEAK):
                break
            n += len(piece)
        return n

    def _stamp(self, first: int, heard_at: float, frames: int) -> None:
        """Frames whose audio starts in [first, self._played) are heard from `heard_at` on (their offset added)."""
        rate = self.settings.rate_hz
        for frame in self._frames:
            if frame.start >= self._played:
                break
            if frame.heard_at is None:
                frame.heard_at = heard_at + max(0, min(frame.start - first, frames)) / rate

    def _limit_frames(self) -> None:
        """Frames must not pile up (a device that stopped calling back, a painter that stopped asking)."""
        keep, stale = self.settings.samples(self.settings.max_ms), self._clock() - self.settings.max_ms / 1000.0
        while len(self._frames) > 2:
            first = self._frames[0]
            waiting_too_long = first.heard_at is None and self._written - first.start > keep
            if not (waiting_too_long or (first.heard_at is not None and first.heard_at < stale)):
                break
            self._frames.popleft()
            self.stats.frames_skipped += 1


def play_stream(stream: Any, buffer_ms: float, open_output: OutputOpener = open_sounddevice) -> AudioPlayout:
    """The direct player's sound for `stream` (a `LiveStream`): a started `AudioPlayout` holding `buffer_ms`
    (live.audio_buffer_ms) at the stream's audio rate, added as its sink. The window's `DirectPlayer` and `assistant
    bench echo` play through this; `device_error` says when there is no sound device."""
    settings = PlayoutSettings(rate_hz=stream.settings.audio_rate_hz, target_ms=float(buffer_ms))
    playout = AudioPlayout(settings, open_output)
    playout.start()
    stream.add_sink(playout)
    return playout


def _device_delay(time_info: Any) -> float:
    """Seconds from the callback until its first sample is heard, as PortAudio reports it (0 when it cannot)."""
    if time_info is None:
        return 0.0
    try:
        delay = float(time_info.outputBufferDacTime) - float(time_info.currentTime)
    except (AttributeError, TypeError, ValueError):
        return 0.0
    return delay if 0.0 <= delay < 2.0 else 0.0
