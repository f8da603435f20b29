"""The embedded VLC player for the session's live avatar stream: one media for the whole session.

The core's `LiveStream` hands every frame and its audio to a `LiveEncoder` (ffmpeg, MPEG-TS on a pipe); VLC reads
the pipe's other end through `media_new_fd`, so no network listener is ever opened and there is no media load per
reply. Caching is tuned down (`--file-caching`, VLC's input buffer for this access) so the picture and the voice
reach the user soon after the clock makes them; `bench live` measures the delay at the speaker.

The window shows the photo until VLC reports its video output (`MediaPlayerVout`) and a short settle time has
passed (VLC draws its first frames before it scales them to the widget), then the video for the rest of the session.

`duck()` silences VLC's output at once, for a cancel: the voice fades out in the stream itself, but what is already
in the pipe and VLC's buffer would still play for the buffer's length. `unduck()` brings the sound back once that
buffered audio has gone by.

Needs PySide6 and python-vlc with libvlc (Debian: vlc / libvlc5).
"""

from __future__ import annotations

import logging
import sys

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

from assistant.errors import AssistantError
from assistant.video import LiveEncoder
from ui.widgets import crop_to_fill

log = logging.getLogger(__name__)

# Options that keep VLC from drawing its own overlays or grabbing keys inside our window.
BASE_VLC_ARGS = ("--no-video-title-show", "--no-osd", "--no-snapshot-preview", "--quiet", "--no-xlib")
EMBEDDABLE_PLATFORMS = ("xcb", "windows", "cocoa")  # Qt platforms whose winId() VLC can draw into


class PlayerError(AssistantError):
    """VLC could not be started or could not play the stream."""


CACHING_MS = 100  # VLC's input buffer for the pipe (live.caching_ms). A bare player measured 217 ms from the
# stream's clock to the speaker at 40 against 307 ms at 100, but in the app 40 froze the picture for 0.5-1.1 s while
# a turn loaded both cores (the app test, 2 of 5 runs; 0 of 6 at 100) and bench live's player delay was the same
# (260 vs 276 ms: VLC settles on its own delay per session)
UNDUCK_AFTER_MS = 400  # after a cut, beyond the input buffer: the sound server's share of VLC's delay
SETTLE_MS = 250  # after the first video output: VLC has sized its picture to the widget by then


class LivePlayer(QObject):
    """Plays one live MPEG-TS pipe in `video_widget` for the whole session."""

    video_ready = Signal()  # VLC draws the stream at the widget's size: show the video page
    failed = Signal(str)
    _vlc_vout = Signal()
    _vlc_error = Signal()

    def __init__(
        self, video_widget: QWidget | None, vlc_args: list[str] | tuple[str, ...] = (), caching_ms: int = CACHING_MS
    ) -> None:
        super().__init__()
        try:
            import vlc
        except (ImportError, OSError) as e:
            raise PlayerError(
                f"Cannot load VLC ({e}); install VLC (Debian/Ubuntu: sudo apt install vlc) and python-vlc"
            ) from e
        self._vlc = vlc
        platform = QGuiApplication.platformName() if QGuiApplication.instance() else ""
        self.embedded = video_widget is not None and platform in EMBEDDABLE_PLATFORMS
        args = list(BASE_VLC_ARGS) + [f"--file-caching={caching_ms}", "--clock-jitter=0"] + list(vlc_args)
        if not self.embedded and not any(a.startswith(("--vout", "-V")) for a in args):
            args.append("--vout=vdummy")
        self.vlc_args = tuple(args)
        self.caching_ms = caching_ms
        self._instance = vlc.Instance(args)
        if self._instance is None:
            raise PlayerError(f"libvlc refused to start with options {args}; check the VLC installation")
        self._player = self._instance.media_player_new()
        self._widget = video_widget
        self.media_loads = 0  # how many media this player ever loaded: 1 for a whole session
        self.showing = False
        self._volume = 100
        events = self._player.event_manager()
        events.event_attach(vlc.EventType.MediaPlayerVout, lambda _e: self._vlc_vout.emit())
        events.event_attach(vlc.EventType.MediaPlayerEncounteredError, lambda _e: self._vlc_error.emit())
        self._vlc_vout.connect(self._on_vout)
        self._vlc_error.connect(lambda: self.failed.emit("VLC could not play the live avatar stream"))

    def _attach_window(self) -> None:
        if not self.embedded or self._widget is None:
            return
        handle = int(self._widget.winId())
        if sys.platform.startswith("linux"):
            self._player.set_xwindow(handle)
        elif sys.platform == "win32":
            self._player.set_hwnd(handle)
        elif sys.platform == "darwin":
            self._player.set_nsobject(handle)

    wants_pipe = True  # plays the encoder's MPEG-TS pipe

    def attach(self, stream: object, encoder: LiveEncoder | None) -> None:
        """Play the stream's encoded pipe (`encoder` was made with an ("mpegts", None) output)."""
        if encoder is None or encoder.read_fd is None:
            raise PlayerError("the VLC player needs the live encoder's MPEG-TS pipe")
        self.play_fd(encoder.read_fd)

    def delay_ms(self) -> float | None:
        return None  # VLC does not say how long its buffers hold the sound (`assistant bench live` measures it)

    def cut(self, stream_fade_ms: float = 0.0) -> None:
        """A cancel: silence VLC at once (its buffers still hold the cut voice), sound back once that has played."""
        self.duck()
        QTimer.singleShot(self.caching_ms + UNDUCK_AFTER_MS, self.unduck)

    def play_fd(self, fd: int) -> None:
        """Start playing the MPEG-TS arriving on `fd` (read end of a pipe); call once per session."""
        self._attach_window()
        media = self._instance.media_new_fd(fd)
        media.add_option(f":file-caching={self.caching_ms}")
        media.add_option(":demux=ts")
        self._player.set_media(media)
        media.release()
        self.media_loads += 1
        if self._player.play() == -1:
            self.failed.emit("VLC could not start the live avatar stream")

    def _on_vout(self) -> None:
        if self._player is not None and self._player.video_get_size(0) != (0, 0):
            self._player.video_set_scale(0)  # fit the widget
        QTimer.singleShot(SETTLE_MS, self._show)

    def _show(self) -> None:
        if not self.showing:
            self.showing = True
            log.info("live stream on screen (%d media for the session)", self.media_loads)
            self.video_ready.emit()

    def crop_to(self, stream_w: int, stream_h: int, view_w: int, view_h: int) -> str:
        """Fill a `view_w` x `view_h` pane with the stream, without bars: crop the stream's sides (or top and
        bottom) to the pane's aspect ratio, centred (the face is in the middle; the sides are blurred fill).
        Returns VLC's crop geometry "WxH+X+Y" in stream pixels."""
        crop = crop_to_fill(stream_w, stream_h, view_w, view_h)
        if crop is None:
            return ""
        x, y, cw, ch = crop
        geometry = f"{cw}x{ch}+{x}+{y}"
        if self._player is not None:
            # VLC's ratio form crops centred on the picture; the returned geometry says which pixels that keeps.
            self._player.video_set_crop_geometry(f"{cw}:{ch}")
        return geometry

    def duck(self) -> None:
        if self._player is not None:
            self._player.audio_set_mute(True)

    def unduck(self) -> None:
        if self._player is not None:
            self._player.audio_set_mute(False)

    def release(self) -> None:
        if self._player is None:
            return
        self._player.stop()
        self._player.release()
        self._instance.release()
        self._player = None
        self._instance = None
