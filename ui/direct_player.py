"""The direct player of the session's live avatar stream (`live.player: direct`, the default).

The stream's frames and sound go straight to the window and the sound card: an `AudioPlayout` sink
(`assistant.live.playout`) queues each tick's sound for the sound device and keeps its picture beside it; a precise
timer on the GUI thread asks for the frame being heard now and paints it in the avatar's `VideoSurface`. No encoder,
no container, no player buffer: the delay from the stream's clock to the speaker is the playout's short queue plus
the sound server's own, and the picture follows the sound card's clock (lips on the voice).

A cancel (`cut`) drops the queued sound at once, so nothing of a cut reply is heard after its fade.

Without a sound device the picture still plays on the system clock; `notice` says the voice cannot be heard.

Needs PySide6, OpenCV, and sounddevice with PortAudio for the sound.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
from PySide6.QtCore import QObject, QRect, Qt, QTimer, Signal
from PySide6.QtGui import QImage

from assistant.live.playout import AudioPlayout, OutputOpener, open_sounddevice, play_stream
from assistant.live.stream import LiveStream
from assistant.video import LiveEncoder
from ui.widgets import VideoSurface, crop_to_fill

log = logging.getLogger(__name__)

POLL_MS = 4  # how often the GUI thread asks for the frame being heard (a frame is 40 ms at 25 fps)


class DirectPlayer(QObject):
    """Paints the live stream's frames in `surface` on the clock of the sound card that plays its audio."""

    video_ready = Signal()  # the first frame is painted: show the video page
    failed = Signal(str)
    notice = Signal(str)
    wants_pipe = False  # takes the stream's frames as a sink, not an encoded pipe

    def __init__(
        self, surface: VideoSurface | None, buffer_ms: int = 60, open_output: OutputOpener = open_sounddevice
    ) -> None:
        super().__init__()
        self._surface = surface
        self._buffer_ms = buffer_ms
        self._open_output = open_output
        self.playout: AudioPlayout | None = None
        self.media_loads = 0  # how many times the stream was attached: 1 for a whole session
        self.showing = False
        self._crop: tuple[int, int, int, int] | None = None
        self._rgb: np.ndarray | None = None  # the pixels behind the QImage being shown
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._paint_due)

    def attach(self, stream: LiveStream, encoder: LiveEncoder | None = None) -> None:
        """Play `stream` from now on (its earlier playout, if any, is closed)."""
        if self.playout is not None:
            self.playout.close()
        self.playout = play_stream(stream, self._buffer_ms, self._open_output)
        if self.playout.device_error is not None:
            self.notice.emit(
                f"The avatar's voice cannot be played: {self.playout.device_error}. Check the speakers or "
                "headphones and the sound settings, then restart the app"
            )
        self.media_loads += 1
        self._timer.start()

    def delay_ms(self) -> float | None:
        """The stream's clock to the speaker right now: the queued sound plus the device's reported delay."""
        if self.playout is None or self.playout.device_error is not None:
            return None
        return self.playout.queued_ms() + self.playout.stats.device_delay_ms

    def _paint_due(self) -> None:
        yuv = self.playout.due_frame() if self.playout is not None else None
        if yuv is None or self._surface is None:
            return
        self._rgb = rgb = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
        h, w = rgb.shape[:2]
        image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888)
        x, y, cw, ch = self._crop if self._crop is not None else (0, 0, w, h)
        self._surface.set_frame(image, QRect(x, y, min(cw, w - x), min(ch, h - y)))
        if not self.showing:
            self.showing = True
            log.info(
                "live stream on screen (%d media for the session; direct player, %d ms buffer)",
                self.media_loads, self._buffer_ms,
            )  # fmt: skip
            self.video_ready.emit()

    def crop_to(self, stream_w: int, stream_h: int, view_w: int, view_h: int) -> str:
        """Fill a `view_w` x `view_h` pane with the stream without bars; returns the crop as "WxH+X+Y"."""
        self._crop = crop_to_fill(stream_w, stream_h, view_w, view_h)
        if self._crop is None:
            return ""
        x, y, cw, ch = self._crop
        return f"{cw}x{ch}+{x}+{y}"

    def cut(self, stream_fade_ms: float = 0.0) -> None:
        """A cancel: the sound queued for the speaker is dropped (after a few ms of fade), and the stream's own fade
        of the cut voice (`stream_fade_ms`) is not played after it."""
        if self.playout is not None:
            self.playout.cut(stream_fade_ms)

    def release(self) -> None:
        self._timer.stop()
        if self.playout is not None:
            self.playout.close()
            self.playout = None
