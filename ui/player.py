"""Play reply segments back to back in an embedded VLC player: their video, else their WAV (audio only).

`SegmentPlayer` keeps a queue: the first segment starts as soon as it arrives while later ones are still being
made; VLC's end-reached event starts the next. A segment without video (`SegmentReady.video is None`) plays
its WAV and reports `audio_only` so the window can say why. `VlcBackend` draws into a Qt widget through the
platform window handle (X11 `set_xwindow`, Windows `set_hwnd`, macOS `set_nsobject`); VLC calls back on its
own threads, so its events are turned into queued Qt signals and no libvlc function is ever called from a VLC
callback.

Needs PySide6 and python-vlc with libvlc (Debian: vlc / libvlc5).
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

from assistant.errors import AssistantError
from assistant.events import SegmentReady

log = logging.getLogger(__name__)

# Options that keep VLC from drawing its own overlays or grabbing keys inside our window.
BASE_VLC_ARGS = ("--no-video-title-show", "--no-osd", "--no-snapshot-preview", "--quiet", "--no-xlib")
EMBEDDABLE_PLATFORMS = ("xcb", "windows", "cocoa")  # Qt platforms whose winId() VLC can draw into


class PlayerError(AssistantError):
    """VLC could not be started or could not play a file."""


class PlaybackBackend(Protocol):
    """What SegmentPlayer needs from a media player. `finished` / `failed(str)` are Qt signals."""

    finished: Signal
    failed: Signal

    def play(self, path: Path, has_video: bool) -> None: ...

    def stop(self) -> None: ...

    def release(self) -> None: ...


class VlcBackend(QObject):
    """One libvlc instance and player, drawing into `video_widget` when the platform allows embedding."""

    finished = Signal()
    failed = Signal(str)
    # Raw events from VLC's threads, tagged with the play number they belong to (stale ones are dropped).
    _vlc_ended = Signal(int)
    _vlc_error = Signal(int)

    def __init__(self, video_widget: QWidget | None, vlc_args: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__()
        try:
            import vlc
        except (ImportError, OSError) as e:  # python-vlc raises OSError when libvlc itself is missing
            raise PlayerError(
                f"Cannot load VLC ({e}); install VLC (Debian/Ubuntu: sudo apt install vlc) and python-vlc"
            ) from e
        self._vlc = vlc
        platform = QGuiApplication.platformName() if QGuiApplication.instance() else ""
        self.embedded = video_widget is not None and platform in EMBEDDABLE_PLATFORMS
        args = list(BASE_VLC_ARGS) + list(vlc_args)
        if not self.embedded and not any(a.startswith(("--vout", "-V")) for a in args):
            # Nothing to draw into (offscreen tests, Wayland without XWayland): decode but show nothing.
            args.append("--vout=vdummy")  # VLC's dummy video output module
        self.vlc_args = tuple(args)
        self._instance = vlc.Instance(args)
        if self._instance is None:
            raise PlayerError(f"libvlc refused to start with options {args}; check the VLC installation")
        self._player = self._instance.media_player_new()
        self._widget = video_widget
        self._window_set = False
        self._play_number = 0
        events = self._player.event_manager()
        events.event_attach(vlc.EventType.MediaPlayerEndReached, self._vlc_callback_end)
        events.event_attach(vlc.EventType.MediaPlayerEncounteredError, self._vlc_callback_error)
        self._vlc_ended.connect(self._on_vlc_ended)
        self._vlc_error.connect(self._on_vlc_error)
        self.current: Path | None = None

    # ---- called on VLC's event thread: only emit (queued to the GUI thread) ----
    def _vlc_callback_end(self, _event: object) -> None:
        self._vlc_ended.emit(self._play_number)

    def _vlc_callback_error(self, _event: object) -> None:
        self._vlc_error.emit(self._play_number)

    # ---- GUI thread ----
    def _on_vlc_ended(self, number: int) -> None:
        if number == self._play_number:
            self.current = None
            self.finished.emit()

    def _on_vlc_error(self, number: int) -> None:
        if number == self._play_number:
            path, self.current = self.current, None
            self.failed.emit(f"VLC could not play {path}")

    def _attach_window(self) -> None:
        if self._window_set or not self.embedded or self._widget is None:
            return
        handle = int(self._widget.winId())  # creates the native window
        if sys.platform.startswith("linux"):
            self._player.set_xwindow(handle)
        elif sys.platform == "win32":
            self._player.set_hwnd(handle)
        elif sys.platform == "darwin":
            self._player.set_nsobject(handle)
        self._window_set = True

    def play(self, path: Path, has_video: bool) -> None:
        self._attach_window()
        self._play_number += 1
        self.current = Path(path)
        media = self._instance.media_new_path(str(path))
        self._player.set_media(media)
        media.release()  # the player holds its own reference
        if self._player.play() == -1:
            self.current = None
            self.failed.emit(f"VLC could not start playing {path}")

    def stop(self) -> None:
        self._play_number += 1  # any end event still in flight is now stale
        self.current = None
        self._player.stop()

    def release(self) -> None:
        if self._player is None:
            return
        self.stop()
        self._player.release()
        self._instance.release()
        self._player = None
        self._instance = None


class SilentBackend(QObject):
    """Stands in when VLC cannot start: every file "finishes" at once; the rest of the app keeps working."""

    finished = Signal()
    failed = Signal(str)

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason
        self.current: Path | None = None

    def play(self, path: Path, has_video: bool) -> None:
        self.current = Path(path)
        QTimer.singleShot(0, self._end)

    def _end(self) -> None:
        if self.current is not None:
            self.current = None
            self.finished.emit()

    def stop(self) -> None:
        self.current = None

    def release(self) -> None:
        self.current = None


class SegmentPlayer(QObject):
    """A queue of reply segments played one after another through a PlaybackBackend."""

    segment_started = Signal(object, bool)  # SegmentReady, True when its video plays
    audio_only = Signal(object, str)  # SegmentReady, why it has no video
    segment_finished = Signal(object)  # SegmentReady
    idle = Signal()  # the queue ran dry
    error = Signal(str)

    def __init__(self, backend: PlaybackBackend) -> None:
        super().__init__()
        self.backend = backend
        self._queue: deque[SegmentReady] = deque()
        self.current: SegmentReady | None = None
        self._current_is_video = False
        self.played: list[tuple[int, int, Path]] = []  # (turn_id, index, path) in play order, for logs/tests
        backend.finished.connect(self._on_finished)
        backend.failed.connect(self._on_failed)

    @property
    def busy(self) -> bool:
        return self.current is not None

    @property
    def pending(self) -> int:
        return len(self._queue)

    def enqueue(self, segment: SegmentReady) -> None:
        if self.current is not None and segment.turn_id != self.current.turn_id:
            self.clear()  # a new turn's reply replaces what is left of the old one
        self._queue.append(segment)
        if self.current is None:
            self._play_next()

    def clear(self) -> None:
        """Drop queued segments and stop the one playing (a new turn, barge-in, or the Stop button)."""
        self._queue.clear()
        if self.current is not None:
            self.current = None
            self.backend.stop()
            self.idle.emit()

    def _play_next(self) -> None:
        if not self._queue:
            self.current = None
            log.info("playback idle: nothing more queued")
            self.idle.emit()
            return
        segment = self._queue.popleft()
        self.current = segment
        as_video = segment.video is not None and segment.video.mp4_path.is_file()
        self._start(segment, as_video)
        if not as_video:
            reason = segment.audio_only_reason or "no video for this segment"
            self.audio_only.emit(segment, reason)

    def _start(self, segment: SegmentReady, as_video: bool) -> None:
        self._current_is_video = as_video
        path = segment.video.mp4_path if as_video and segment.video else segment.speech.wav_path
        self.played.append((segment.turn_id, segment.index, path))
        log.info(
            "playing %s of turn %d segment %d: %s",
            "video" if as_video else "audio",
            segment.turn_id,
            segment.index,
            path,
        )
        self.segment_started.emit(segment, as_video)
        self.backend.play(path, as_video)

    def _on_finished(self) -> None:
        segment = self.current
        if segment is None:
            return
        log.info("finished turn %d segment %d", segment.turn_id, segment.index)
        self.segment_finished.emit(segment)
        self._play_next()

    def _on_failed(self, message: str) -> None:
        segment = self.current
        if segment is None:
            return
        if self._current_is_video:
            # The MP4 would not play: say it and play the same segment's WAV instead.
            reason = f"{message}; playing the audio only"
            self.error.emit(reason)
            self.audio_only.emit(segment, reason)
            self._start(segment, as_video=False)
            return
        self.error.emit(message)
        self._on_finished()
