"""The session-long live avatar stream: a frame clock that, at every tick, makes one frame and its audio.

At tick n the clock takes frame n's share of the queued speech (`SpeechQueue.take`: audio, mouth targets, clip
events), eases the mouth toward its targets (fast attack, slower release, so the lips close naturally after the
last sound), asks `IdleMotion` for the pose (breathing, blinks, sway, glances: one continuous state whether the
avatar talks or not), has the renderer draw the frame, converts it to I420 once, and hands frame + audio to every
sink (the desktop player's encoder, a recording, an RTMP publisher). Nothing pushes frames into a sink but this
clock: when there is nothing to say, the frame is an idle one and the audio is silence.

When rendering falls behind the wall clock by more than `max_late_frames`, the tick repeats the last frame (with
its fresh audio) instead of drawing, so the audio never stalls and the stream catches up.

Events (`on_event`, called on the clock thread; keep the callback short): `StreamSpeechStarted` when a clip's
first sample goes out, `StreamSpeechFinished` when its last one does (or it was cut by a cancel, with how much was
said), `StreamDrained` when nothing is left to say. Their times are when the frame left the clock, not when a
player shows it: a sink adds its own latency (measured by `assistant bench live`).

Needs numpy and OpenCV.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from assistant.audio.io import load_audio
from assistant.live.motion import IdleMotion
from assistant.live.renderer import FrameRenderer
from assistant.live.speech_queue import ClipEvent, SpeechQueue
from assistant.talking_head.light import ATTACK_S, RELEASE_S, SHAPE_SMOOTH_S

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamSettings:
    width: int = 1280
    height: int = 720
    fps: float = 25.0
    audio_rate_hz: int = 48000
    fade_ms: float = 30.0  # a cancel fades the voice out over this long (no click)
    max_late_frames: int = 3  # behind the wall clock by more than this: repeat the last frame to catch up


@dataclass(frozen=True)
class StreamEvent:
    frame: int
    at_s: float  # time.monotonic() when the frame left the clock


@dataclass(frozen=True)
class StreamSpeechStarted(StreamEvent):
    key: Any
    text: str


@dataclass(frozen=True)
class StreamSpeechFinished(StreamEvent):
    key: Any
    text: str
    played_s: float
    duration_s: float
    cancelled: bool


@dataclass(frozen=True)
class StreamDrained(StreamEvent):
    """Everything queued has been said (or cancelled); the avatar idles. `last_key`: the clip that ended last."""

    last_key: Any = None


class FrameSink(Protocol):
    def write(self, yuv_i420: np.ndarray, audio_s16: np.ndarray) -> None:
        """One frame ((H * 3/2, W) uint8 I420) and its audio ((samples,) int16 mono). Must not block for long."""
        ...

    def close(self) -> None: ...


@dataclass
class StreamStats:
    frames: int = 0
    repeated_frames: int = 0  # ticks that reused the last frame because rendering was late
    render_ms_max: float = 0.0
    render_ms_total: float = 0.0
    late_ms_max: float = 0.0  # how far behind the wall clock a tick ever started

    @property
    def render_ms_mean(self) -> float:
        drawn = self.frames - self.repeated_frames
        return self.render_ms_total / drawn if drawn else 0.0


class LiveStream:
    """Start it once per session (`start()`), queue speech with `say()`, cut it with `cancel()`, `stop()` at the end."""

    def __init__(
        self,
        renderer: FrameRenderer,
        settings: StreamSettings | None = None,
        on_event: Callable[[StreamEvent], None] | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = s = settings or StreamSettings(renderer.width, renderer.height)
        if (renderer.width, renderer.height) != (s.width, s.height):
            raise ValueError(
                f"renderer draws {renderer.width}x{renderer.height} but the stream is {s.width}x{s.height}"
            )
        self.renderer = renderer
        self.queue = SpeechQueue(s.audio_rate_hz, s.fps)
        self.motion = IdleMotion(s.fps, seed)
        self.on_event = on_event or (lambda event: None)
        self.clock = clock
        self.stats = StreamStats()
        self._sinks: list[FrameSink] = []
        self._sinks_lock = threading.Lock()
        self._open = 0.0
        self._wide = 0.0
        self._frame = 0
        self._last_yuv: np.ndarray | None = None
        self._was_pending = False
        self._last_finished: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.started_at: float | None = None
        dt = 1.0 / s.fps
        self._up = 1.0 - math.exp(-dt / ATTACK_S)
        self._down = 1.0 - math.exp(-dt / RELEASE_S)
        self._shape = 1.0 - math.exp(-dt / SHAPE_SMOOTH_S)

    # ---- sinks ----
    def add_sink(self, sink: FrameSink) -> None:
        with self._sinks_lock:
            self._sinks.append(sink)

    def remove_sink(self, sink: FrameSink) -> None:
        with self._sinks_lock:
            if sink in self._sinks:
                self._sinks.remove(sink)

    # ---- speech ----
    def say(self, samples: np.ndarray, sample_rate_hz: int, key: Any = None, text: str = "") -> float:
        """Queue mono float audio; returns the seconds of speech queued before it (0 when it starts next tick)."""
        from assistant.audio.io import resample

        rate = self.settings.audio_rate_hz
        x = np.asarray(samples, np.float32).reshape(-1)
        if sample_rate_hz != rate:
            x = resample(x, sample_rate_hz, rate)
        ahead = self.queue.queued_s()
        self.queue.add(x, key, text)
        return ahead

    def say_file(self, path: str | Path, key: Any = None, text: str = "") -> float:
        rate = self.settings.audio_rate_hz
        return self.say(load_audio(path, rate), rate, key, text)

    def cancel(self) -> list[ClipEvent]:
        """Fade out what is being said (over `fade_ms`) and drop the rest. The "finished" events of clips that
        were cut come through `on_event` as the fade plays; clips that never started are returned here."""
        fade = int(self.settings.fade_ms / 1000.0 * self.settings.audio_rate_hz)
        dropped = self.queue.cancel(fade)
        for e in dropped:
            self._last_finished = e.key
            self.on_event(
                StreamSpeechFinished(e.frame, self.clock(), e.key, e.text, e.played_s, e.duration_s, True)
            )
        return dropped

    @property
    def speaking(self) -> bool:
        return self.queue.pending

    # ---- the clock ----
    def tick(self, draw: bool = True) -> np.ndarray:
        """Make the next frame and hand it to the sinks; returns its I420 image. The clock thread calls this at
        every frame time; tests may call it directly."""
        n = self._frame
        self._frame += 1
        speech = self.queue.take()
        self._open += (self._up if speech.level > self._open else self._down) * (speech.level - self._open)
        self._wide += self._shape * (speech.wide - self._wide)
        pose = self.motion.pose(n, emphasis=self._open)
        if draw or self._last_yuv is None:
            start = time.perf_counter()
            if speech.clip is not None and getattr(self.renderer, "takes_clip", False):
                frame = self.renderer.render(pose, self._open, self._wide, clip=speech.clip)
            else:
                frame = self.renderer.render(pose, self._open, self._wide)
            yuv = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)  # (H * 3/2, W) uint8, a new array
            ms = (time.perf_counter() - start) * 1000.0
            self.stats.render_ms_total += ms
            self.stats.render_ms_max = max(self.stats.render_ms_max, ms)
            self._last_yuv = yuv
        else:
            yuv = self._last_yuv
            self.stats.repeated_frames += 1
        self.stats.frames += 1
        audio = np.clip(np.round(speech.audio * 32767.0), -32768, 32767).astype(np.int16)
        with self._sinks_lock:
            sinks = list(self._sinks)
        for sink in sinks:
            try:
                sink.write(yuv, audio)
            except Exception:  # noqa: BLE001 - one broken sink must not stop the stream
                log.exception("a live sink failed; removing it")
                self.remove_sink(sink)
        now = self.clock()
        for e in speech.events:
            if e.kind == "started":
                self.on_event(StreamSpeechStarted(n, now, e.key, e.text))
            else:
                self.on_event(StreamSpeechFinished(n, now, e.key, e.text, e.played_s, e.duration_s, e.cancelled))
        pending = self.queue.pending
        finished = [e.key for e in speech.events if e.kind == "finished"]
        if finished:
            self._last_finished = finished[-1]
        if (self._was_pending or finished) and not pending:
            self.on_event(StreamDrained(n, now, self._last_finished))
        self._was_pending = pending
        return yuv

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="live-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fps = self.settings.fps
        t0 = self.clock()
        self.started_at = t0
        n = 0
        while not self._stop.is_set():
            due = t0 + n / fps
            wait = due - self.clock()
            if wait > 0:
                self._stop.wait(wait)
                if self._stop.is_set():
                    break
            late = self.clock() - due
            self.stats.late_ms_max = max(self.stats.late_ms_max, late * 1000.0)
            try:
                self.tick(draw=late < self.settings.max_late_frames / fps)
            except Exception:  # noqa: BLE001 - a frame that failed to draw must not end the session's stream
                log.exception("live stream tick %d failed", n)
            n += 1
            if late > 2.0:  # the machine stalled for seconds (suspend): restart the clock, don't burst-render
                log.warning("live stream was %.1f s behind; resynchronising the clock", late)
                t0, n = self.clock(), 0

    def stop(self, close_sinks: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if close_sinks:
            with self._sinks_lock:
                sinks, self._sinks = list(self._sinks), []
            for sink in sinks:
                try:
                    sink.close()
                except Exception:  # noqa: BLE001
                    log.exception("closing a live sink failed")
