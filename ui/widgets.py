"""Small widgets of the main window: the avatar view (photo until the live stream shows, then the stream), the
input-level meter and the conversation panel.

Needs PySide6 only.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QImageReader, QPainter, QPaintEvent, QPalette, QPixmap, QResizeEvent
from PySide6.QtWidgets import QLabel, QProgressBar, QSizePolicy, QStackedWidget, QTextBrowser, QWidget

METER_FLOOR_DBFS = -60  # quieter than this shows an empty meter (room noise sits around -60..-50 dBFS)


class VideoSurface(QWidget):
    """Where the live stream shows: a black native window VLC draws into, or the direct player's frames painted
    here (`set_frame`: an RGB picture and the part of it that fills the pane)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # Its own native window (VLC needs a handle) without turning every ancestor native too.
        self.setAttribute(Qt.WidgetAttribute.WA_NativeWindow, True)
        self.setAttribute(Qt.WidgetAttribute.WA_DontCreateNativeAncestors, True)
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Window, QColor("black"))
        self.setPalette(palette)
        self.setAutoFillBackground(True)
        self.setObjectName("videoSurface")
        self._frame: QImage | None = None
        self._source = QRect()
        self.frames_painted = 0

    def set_frame(self, image: QImage, source: QRect) -> None:
        """Show `source` (pixels of `image`) filling the pane, at the next paint."""
        self._frame, self._source = image, source
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        if self._frame is None:
            return
        painter = QPainter(self)
        painter.drawImage(self.rect(), self._frame, self._source)
        painter.end()
        self.frames_painted += 1


def crop_to_fill(stream_w: int, stream_h: int, view_w: int, view_h: int) -> tuple[int, int, int, int] | None:
    """The centred part (x, y, w, h) of a `stream_w` x `stream_h` picture with the pane's aspect ratio, so it fills
    the pane without bars (the face is in the middle; the sides are blurred fill); None for an empty pane."""
    if view_w <= 0 or view_h <= 0:
        return None
    if view_w / view_h < stream_w / stream_h:
        cw, ch = max(2, round(stream_h * view_w / view_h)), stream_h
    else:
        cw, ch = stream_w, max(2, round(stream_w * view_h / view_w))
    return (stream_w - cw) // 2, (stream_h - ch) // 2, cw, ch


class AvatarView(QStackedWidget):
    """Page 0: the avatar photo (scaled to fit); page 1: the video surface."""

    PHOTO, VIDEO = 0, 1
    resized = Signal(int, int)  # the view's new width and height (the live stream crops to fit them)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.photo = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
        self.photo.setObjectName("avatarPhoto")
        self.photo.setMinimumSize(160, 120)
        self.photo.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.photo.setStyleSheet("background: #202020; color: #bbbbbb;")
        self.video = VideoSurface()
        self.addWidget(self.photo)
        self.addWidget(self.video)
        self._pixmap = QPixmap()
        self.image_path: Path | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(640, 360)

    def set_image(self, path: str | Path) -> bool:
        """Show this photo at rest; False (and a text) when it cannot be read."""
        self.image_path = Path(path)
        reader = QImageReader(str(path))
        reader.setAutoTransform(True)  # a phone portrait's EXIF orientation: upright, as the avatar is rendered
        self._pixmap = QPixmap.fromImage(reader.read())
        if self._pixmap.isNull():
            self.photo.setPixmap(QPixmap())
            self.photo.setText(f"Cannot show the avatar image\n{path}")
            return False
        self._rescale()
        return True

    def show_photo(self) -> None:
        self.setCurrentIndex(self.PHOTO)

    def show_video(self) -> None:
        self.setCurrentIndex(self.VIDEO)

    @property
    def showing_video(self) -> bool:
        return self.currentIndex() == self.VIDEO

    def _rescale(self) -> None:
        if not self._pixmap.isNull():
            self.photo.setPixmap(
                self._pixmap.scaled(
                    self.photo.size(),
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._rescale()
        self.resized.emit(self.width(), self.height())


class LevelMeter(QProgressBar):
    """Microphone level in dBFS, METER_FLOOR_DBFS..0."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRange(METER_FLOOR_DBFS, 0)
        self.setValue(METER_FLOOR_DBFS)
        self.setTextVisible(False)
        self.setFixedHeight(12)
        self.setToolTip("Microphone input level")
        self.last_dbfs = float(METER_FLOOR_DBFS)

    def set_level(self, dbfs: float) -> None:
        self.last_dbfs = dbfs
        self.setValue(int(max(METER_FLOOR_DBFS, min(0.0, dbfs))))


@dataclass
class ChatEntry:
    role: str  # "user", "assistant" or "system"
    text: str
    at: float = field(default_factory=time.time)  # wall clock, for the displayed time
    turn_id: int | None = None
    note: str = ""  # e.g. "cancelled", "2.1 s"


class ConversationView(QTextBrowser):
    """The conversation: the user's words as recognised, the reply as it streams, with times."""

    _ROLE_STYLE = {
        "user": ("You", "#1f5fa8"),
        "assistant": ("Assistant", "#2e7d32"),
        "system": ("", "#8a6d00"),
    }

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenExternalLinks(False)
        self.setObjectName("conversation")
        self.entries: list[ChatEntry] = []

    def add(self, entry: ChatEntry) -> ChatEntry:
        self.entries.append(entry)
        self._render()
        return entry

    def reply_entry(self, turn_id: int) -> ChatEntry:
        """The assistant entry of `turn_id`, made empty on first use (sentences are added as they stream)."""
        for entry in reversed(self.entries):
            if entry.role == "assistant" and entry.turn_id == turn_id:
                return entry
        return self.add(ChatEntry("assistant", "", turn_id=turn_id))

    def refresh(self) -> None:
        self._render()

    def _render(self) -> None:
        parts = []
        for e in self.entries:
            who, color = self._ROLE_STYLE.get(e.role, ("", "#000000"))
            stamp = time.strftime("%H:%M:%S", time.localtime(e.at))
            note = f" <i>({html.escape(e.note)})</i>" if e.note else ""
            label = f"<b style='color:{color}'>{who}</b> " if who else ""
            text = html.escape(e.text) or "…"
            if e.role == "system":
                text = f"<span style='color:{color}'>{text}</span>"
            parts.append(f"<p><span style='color:#888'>{stamp}</span> {label}{text}{note}</p>")
        self.setHtml("".join(parts))
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    def plain_text(self) -> str:
        return "\n".join(f"{e.role}: {e.text}" for e in self.entries)
