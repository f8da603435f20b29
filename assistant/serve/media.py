"""The media of one browser: the live avatar stream out as WebRTC tracks, the browser's microphone in.

`StreamTracks` is a sink of the session's `LiveStream` (the frame clock that already drives the desktop player and
the RTMP publisher): each tick's I420 frame and its audio become an `av.VideoFrame` and an `av.AudioFrame`, stamped
with the tick number (so sound and picture carry the same clock), and wait in two small queues for aiortc's
senders, which encode them (VP8/Opus) when they ask (`recv`). A sender that falls behind loses its oldest frames,
counted in `stats`, rather than drifting later and later; before the browser is connected nothing asks, and the
queues keep only the newest frame.

`read_microphone` takes the browser's audio track (echo-cancelled by the browser), resamples it to the VAD's rate,
mono int16, and hands each piece to a callback with the time it arrived.

Needs aiortc and PyAV.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

log = logging.getLogger(__name__)

VIDEO_CLOCK_HZ = 90_000  # RTP's video clock
MAX_VIDEO_QUEUED = 4  # frames; more means the encoder is late: drop the oldest
# The longest a frame waits for its sound (a stalled sound sender must not freeze the picture).
MAX_SYNC_WAIT_S = 0.5
MAX_AUDIO_QUEUED = 12  # ticks (480 ms at 25 fps) of sound held for a late sender: a gap is worse than a delay


@dataclass
class TrackStats:
    ticks: int = 0  # frames the stream handed over
    video_sent: int = 0  # frames the video sender took
    video_dropped: int = 0  # frames dropped because the sender was late (or not connected yet)
    audio_dropped: int = 0  # ticks of sound dropped for the same reasons
    video_wait_ms_mean: float = 0.0  # from the stream's tick to its sender taking the frame
    video_wait_ms_max: float = 0.0
    audio_wait_ms_mean: float = 0.0
    audio_wait_ms_max: float = 0.0


class _QueueTrack(MediaStreamTrack):
    """A track whose frames come from a bounded queue filled by `StreamTracks` on the event loop."""

    def __init__(self, kind: str, limit: int) -> None:
        super().__init__()
        self.kind = kind
        self._frames: deque[tuple[av.frame.Frame, float]] = deque()  # (frame, time.monotonic() it was made)
        self._limit = limit
        self._ready = asyncio.Event()
        self._ended = False
        self.dropped = 0
        self.taken = 0
        self.waited_ms_total = 0.0
        self.waited_ms_max = 0.0
        self._pulled = False  # the sender has started asking for frames
        self.last_taken_at = float("-inf")  # when the frame its sender took last was made
        self._taken = asyncio.Event()
        self.follow: _QueueTrack | None = (
            None  # a track this one's frames wait for (the picture waits for the sound)
        )

    def put(self, frame: av.frame.Frame, made_at: float) -> None:
        # Until the sender starts, only the newest frame is kept: a backlog sent in a burst at the start would sit
        # in the browser's jitter buffer (the sound then lags the picture for the whole session).
        if len(self._frames) >= (self._limit if self._pulled else 1):
            self._frames.popleft()
            self.dropped += 1
        self._frames.append((frame, made_at))
        self._ready.set()

    def finish(self) -> None:
        self._ended = True
        self._ready.set()

    async def recv(self) -> av.frame.Frame:
        self._pulled = True
        while not self._frames:
            if self._ended or self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        self.taken += 1
        frame, made_at = self._frames.popleft()
        self.last_taken_at = made_at
        self._taken.set()
        if self.follow is not None:
            await self.follow.reached(made_at, MAX_SYNC_WAIT_S)
        waited = (time.monotonic() - made_at) * 1000.0
        self.waited_ms_total += waited
        self.waited_ms_max = max(self.waited_ms_max, waited)
        return frame

    async def reached(self, made_at: float, timeout_s: float) -> None:
        """Until this track's sender has taken the frame made at `made_at` (or `timeout_s` passed, or the sender
        has not started: nothing to wait for)."""
        deadline = time.monotonic() + timeout_s
        while self._pulled and not self._ended and self.last_taken_at < made_at:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._taken.clear()
            try:
                await asyncio.wait_for(self._taken.wait(), left)
            except TimeoutError:
                return

    @property
    def waited_ms_mean(self) -> float:
        return self.waited_ms_total / self.taken if self.taken else 0.0


class StreamTracks:
    """A `FrameSink` for `LiveStream` that feeds one browser's audio and video tracks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fps: float, audio_rate_hz: int) -> None:
        self._loop = loop
        self.fps = fps
        self.audio_rate_hz = audio_rate_hz
        self.video = _QueueTrack("video", MAX_VIDEO_QUEUED)
        self.audio = _QueueTrack("audio", MAX_AUDIO_QUEUED)
        # On a starved machine the sound's sender falls behind (it cannot skip) while the picture's drops its oldest
        # frames; the browser then plays the picture ahead (3 sessions on 2 cores: sound 80 ms late at the sender,
        # picture 23 ms, 99 ms ahead as played). So a frame goes out once the sound of its tick has.
        self.video.follow = self.audio
        self._tick = 0
        self._closed = False

    @property
    def stats(self) -> TrackStats:
        v, a = self.video, self.audio
        return TrackStats(
            self._tick, v.taken, v.dropped, a.dropped,
            v.waited_ms_mean, v.waited_ms_max, a.waited_ms_mean, a.waited_ms_max,
        )  # fmt: skip

    def write(self, yuv_i420: np.ndarray, audio_s16: np.ndarray) -> None:
        """On the stream's clock thread: make the frames and hand them to the event loop."""
        n = self._tick
        self._tick += 1
        video = av.VideoFrame.from_ndarray(yuv_i420, format="yuv420p")  # (H * 3/2, W) uint8
        video.pts = round(n * VIDEO_CLOCK_HZ / self.fps)
        video.time_base = fractions.Fraction(1, VIDEO_CLOCK_HZ)
        audio = av.AudioFrame.from_ndarray(
            audio_s16.reshape(1, -1), format="s16", layout="mono"
        )  # (1, samples)
        audio.sample_rate = self.audio_rate_hz
        audio.pts = n * len(audio_s16)
        audio.time_base = fractions.Fraction(1, self.audio_rate_hz)
        try:
            self._loop.call_soon_threadsafe(self._put, video, audio, time.monotonic())
        except RuntimeError:  # the loop has closed: the server is shutting down
            self._closed = True

    def _put(self, video: av.VideoFrame, audio: av.AudioFrame, made_at: float) -> None:
        if self._closed:
            return
        self.video.put(video, made_at)
        self.audio.put(audio, made_at)

    def close(self) -> None:
        """The stream stopped: the tracks end (their senders stop)."""
        self._closed = True
        try:
            self._loop.call_soon_threadsafe(self._finish)
        except RuntimeError:
            pass

    def _finish(self) -> None:
        self.video.finish()
        self.audio.finish()
        self.video.stop()
        self.audio.stop()


async def read_microphone(
    track: MediaStreamTrack, rate_hz: int, on_samples: Callable[[np.ndarray, float], None]
) -> None:
    """Feed the browser's microphone to `on_samples((n,) int16 mono at rate_hz, arrival time.monotonic())` until
    the track ends."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate_hz)
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        now = time.monotonic()
        for piece in resampler.resample(frame):
            samples = piece.to_ndarray().reshape(-1)
            try:
                on_samples(samples, now)
            except Exception:  # a bug in one chunk's handling must not deafen the session
                log.exception("handling the browser's microphone failed")
