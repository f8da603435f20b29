"""The RTMP publisher: a `FrameSink` of the live stream that keeps one ffmpeg publishing to an RTMP URL, and starts
a new one (with backoff) whenever the server goes away.

The stream's clock calls `write` at every tick and never waits on it: while the encoder is up the frame goes to it
(`assistant.video.LiveEncoder` with `("flv", url)`: x264 ultrafast/zerolatency at a fixed bitrate and keyframe
interval, AAC); while it is down (the server refused, dropped the connection, or ffmpeg stopped taking frames for
`stall_s`) the frame is counted in `frames_unpublished` and a new encoder is started on a helper thread after the
backoff delay. The stream itself never stops: viewers see it resume at the next keyframe of the new connection.

Needs ffmpeg (with RTMP, which Debian's has).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from assistant.livestream.backoff import Backoff
from assistant.redact import mask_text, mask_url

log = logging.getLogger(__name__)

STALL_S = 5.0  # an encoder that took no frame for this long is hung (a half-open TCP connection): restart it
HEALTHY_S = 3.0  # an encoder that has been taking frames this long is connected: the backoff starts over


@dataclass
class PublisherStats:
    connects: int = 0  # encoders started
    failures: int = 0  # encoders that failed (refused, lost, hung)
    frames_in: int = 0  # frames the stream handed over
    frames_unpublished: int = 0  # frames that arrived while no encoder was up
    frames_dropped_encoder: int = 0  # frames a live encoder dropped because it fell behind
    frames_published: int = 0  # frames the encoders took (to ffmpeg's stdin)


class RtmpPublisher:
    """Publish the live stream to `url`; `close()` at the end. Safe to call `write` from the clock thread only."""

    def __init__(
        self,
        url: str,
        width: int,
        height: int,
        fps: float,
        audio_rate_hz: int,
        video_bitrate: str | None = "2500k",
        keyframe_s: float = 2.0,
        backoff: Backoff | None = None,
        encoder_factory: Callable[..., Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from assistant.video import LiveEncoder

        self.url = url
        self.masked_url = mask_url(url)
        self._size = (width, height, fps, audio_rate_hz)
        self._video_bitrate, self._keyframe_s = video_bitrate, keyframe_s
        self.backoff = backoff or Backoff()
        self._factory = encoder_factory or LiveEncoder
        self._clock = clock
        self.stats = PublisherStats()
        self._encoder: Any = None
        self._since = 0.0  # when the current encoder started
        self._progress_at = 0.0  # when the current encoder last took a frame
        self._progress_frames = 0
        self._healthy = False
        self._retry_at = 0.0
        self._starting = False
        self._closed = False
        self._lock = threading.Lock()
        self.on_state: Callable[[str], None] = lambda state: None  # "connected" / "lost", for tests and the bench

    @property
    def connected(self) -> bool:
        return self._encoder is not None and self._healthy

    # ---- FrameSink ----
    def write(self, yuv_i420: np.ndarray, audio_s16: np.ndarray) -> None:
        self.stats.frames_in += 1
        now = self._clock()
        encoder = self._encoder
        if encoder is not None:
            if self._check(encoder, now):
                encoder.write(yuv_i420, audio_s16)
                return
            self._lost(encoder, now)
        self.stats.frames_unpublished += 1
        if not self._starting and not self._closed and now >= self._retry_at:
            self._starting = True
            threading.Thread(target=self._start_encoder, name="rtmp-connect", daemon=True).start()

    def _check(self, encoder: Any, now: float) -> bool:
        """Whether the encoder is up: ffmpeg running, its writer taking frames."""
        if not encoder.alive:
            return False
        if encoder.frames_written != self._progress_frames:
            self._progress_frames, self._progress_at = encoder.frames_written, now
            if not self._healthy and now - self._since >= HEALTHY_S:
                self._healthy = True
                self.backoff.reset()
                log.info("publishing to %s", self.masked_url)
                self.on_state("connected")
        return now - self._progress_at < STALL_S

    def _lost(self, encoder: Any, now: float) -> None:
        self._encoder = None
        self.stats.failures += 1
        self._account(encoder)
        why = encoder.failed or ("ffmpeg took no frame for %.0f s" % STALL_S if encoder.alive else "ffmpeg exited")
        delay = self.backoff.next_delay()
        self._retry_at = now + delay
        log.warning(
            "RTMP publish to %s lost (%s); the stream goes on, reconnecting in %.1f s",
            self.masked_url, mask_text(str(why))[-600:], delay,
        )  # fmt: skip
        self._healthy = False
        self.on_state("lost")
        threading.Thread(target=self._close_quietly, args=(encoder,), name="rtmp-close", daemon=True).start()

    def _account(self, encoder: Any) -> None:
        self.stats.frames_published += encoder.frames_written
        self.stats.frames_dropped_encoder += encoder.frames_dropped

    def _start_encoder(self) -> None:
        width, height, fps, rate = self._size
        try:
            encoder = self._factory(
                [("flv", self.url)], width, height, fps, rate,
                video_bitrate=self._video_bitrate, keyframe_s=self._keyframe_s,
            )  # fmt: skip
        except Exception as e:  # noqa: BLE001 - ffmpeg missing or an OS limit: retry later, the stream goes on
            delay = self.backoff.next_delay()
            self._retry_at = self._clock() + delay
            log.error("cannot start the RTMP publisher for %s: %s; retrying in %.1f s", self.masked_url,
                      mask_text(str(e)), delay)  # fmt: skip
            self._starting = False
            return
        with self._lock:
            if self._closed:
                self._close_quietly(encoder)
                self._starting = False
                return
            now = self._clock()
            self._since = self._progress_at = now
            self._progress_frames = 0
            self._healthy = False
            self.stats.connects += 1
            self._encoder = encoder
            self._starting = False
        log.debug("RTMP publisher started for %s (try %d)", self.masked_url, self.stats.connects)

    @staticmethod
    def _close_quietly(encoder: Any) -> None:
        try:
            encoder.close(timeout_s=3.0)
        except Exception:  # noqa: BLE001 - it failed already; its error was logged
            log.debug("closing a failed RTMP encoder", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            encoder, self._encoder = self._encoder, None
        if encoder is not None:
            try:
                encoder.close(timeout_s=5.0)
            finally:
                self._account(encoder)
