"""Start the desktop app: `avatar-assistant-gui` (or `python -m ui.app`).

Loads the settings (a bad value is shown in a dialog naming the key), opens the main window at once, and loads
the models in the background through the core `Session`. A user settings file that could not be read (not UTF-8)
does not stop the start: the app runs on the defaults and says so in a dialog over its window. On Linux under
Wayland the app asks Qt for XWayland (xcb), because VLC can only draw into an X11 window handle there.

Needs PySide6, python-vlc with libvlc, and the core (`assistant.session`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from assistant.config import PROJECT_ROOT, Settings, load_settings
from assistant.errors import ConfigError
from assistant.events import TurnEvent
from assistant.shortcut import DESKTOP_FILE_NAME

log = logging.getLogger(__name__)

ICON_PATH = PROJECT_ROOT / "assets" / "icon.png"
# Each Python signal emit drops a reference to True, QComboBox None data one to None: a crash within minutes.
BROKEN_PYSIDE = ("6.12.0",)
STALL_TICK_MS = 10
STALL_LOG_MS = 30  # three ticks late


class StallWatch:
    """A 10 ms timer on the GUI thread; a tick late by over STALL_LOG_MS means the loop was blocked."""

    def __init__(self, app) -> None:
        from PySide6.QtCore import QTimer

        self.worst_ms = 0.0
        self._last = time.perf_counter()
        self._timer = QTimer(app, interval=STALL_TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        gap_ms = (now - self._last) * 1000
        self._last = now
        if gap_ms > STALL_LOG_MS:
            self.worst_ms = max(self.worst_ms, gap_ms)
            log.info("event loop stalled: %.0f ms between %d ms ticks", gap_ms, STALL_TICK_MS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatar-assistant-gui", description="The avatar assistant's window."
    )
    parser.add_argument(
        "--config", metavar="FILE", help="use this config file instead of the defaults + user overlay"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-file", metavar="FILE", type=Path, help="write the log here")
    parser.add_argument(
        "--no-mic", action="store_true", help="do not open the microphone (type questions only)"
    )
    parser.add_argument(
        "--log-stalls",
        action="store_true",
        help=f"log every event-loop stall over {STALL_LOG_MS} ms (diagnoses a sluggish window)",
    )
    parser.add_argument(
        "--record", metavar="FILE.mp4", help="also record the whole session's avatar stream (video + voice) to this MP4"
    )
    parser.add_argument(
        "--vlc-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra libvlc option, e.g. --vlc-arg=--aout=pulse (repeatable)",
    )
    return parser


def session_factory(settings: Settings, on_event: Callable[[TurnEvent], None]):
    """Build the core Session (on the session worker thread: importing it pulls in the model libraries)."""
    from assistant.session import Session

    return Session(settings, on_event, live=True)


def show_load_notices(parent, notices: Sequence[str]):
    """What went wrong reading the settings, in a warning dialog over `parent`; None when there is nothing to say.

    The dialog is window-modal but does not block: the app goes on starting (models load) behind it.
    """
    if not notices:
        return None
    from PySide6.QtWidgets import QMessageBox

    box = QMessageBox(
        QMessageBox.Icon.Warning, "Avatar Assistant: settings not read", "\n\n".join(notices),
        QMessageBox.StandardButton.Ok, parent,
    )  # fmt: skip
    box.setObjectName("loadNotices")
    box.open()
    return box


def _prefer_xcb() -> None:
    # VLC embeds through an X11 window id on Linux; a native Wayland window has none. XWayland gives one.
    if (
        sys.platform.startswith("linux")
        and "QT_QPA_PLATFORM" not in os.environ
        and os.environ.get("WAYLAND_DISPLAY")
        and os.environ.get("DISPLAY")
    ):
        os.environ["QT_QPA_PLATFORM"] = "xcb"
        log.info("Wayland session: using XWayland (xcb) so VLC can draw into the window")


def _quit_on_signals(app) -> None:
    """Ctrl+C / SIGTERM close the app like its window's close button (mic, VLC, models released)."""
    from PySide6.QtCore import QTimer

    def request_quit(signum: int, _frame: object) -> None:
        log.info("signal %d: quitting", signum)
        app.quit()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_quit)
    # Python runs signal handlers only between bytecodes; while Qt's C++ loop waits, a periodic no-op timer
    # hands control back to the interpreter so the handler runs within 200 ms.
    timer = QTimer(app)
    timer.timeout.connect(lambda: None)
    timer.start(200)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from assistant.logging_setup import setup_logging

    log_path = setup_logging(verbose=args.verbose, log_file=args.log_file)
    _prefer_xcb()
    import PySide6
    from PySide6.QtGui import QGuiApplication, QIcon

    if PySide6.__version__ in BROKEN_PYSIDE:
        log.warning(
            "PySide6 %s miscounts references (True/None) and crashes long sessions; "
            "install another version: pip install 'PySide6-Essentials<6.12'",
            PySide6.__version__,
        )
    from PySide6.QtWidgets import QApplication, QMessageBox

    app = QApplication(sys.argv[:1])
    app.setApplicationName("avatar-assistant")
    app.setApplicationDisplayName("Avatar Assistant")
    QGuiApplication.setDesktopFileName(DESKTOP_FILE_NAME.removesuffix(".desktop"))
    if ICON_PATH.is_file():
        app.setWindowIcon(QIcon(str(ICON_PATH)))
    try:
        settings = load_settings(args.config)
    except ConfigError as e:
        QMessageBox.critical(None, "Avatar Assistant: bad settings", f"{e}\n\nFix the file and start again.")
        print(f"error: {e}", file=sys.stderr)
        return 2

    from ui.main_window import MainWindow
    from ui.microphone import default_listener_factory

    window = MainWindow(
        settings,
        session_factory,
        listener_factory=None if args.no_mic else default_listener_factory,
        vlc_args=tuple(args.vlc_arg),
        record=args.record,
    )
    app.aboutToQuit.connect(window.shutdown)
    _quit_on_signals(app)
    watch = StallWatch(app) if args.log_stalls else None
    window.show()
    window.start()
    show_load_notices(window, settings.load_notices)  # the window owns the dialog
    frame = window.frameGeometry()
    log.info(
        "window shown at x=%d y=%d w=%d h=%d (Qt platform %s); log file %s",
        frame.x(), frame.y(), frame.width(), frame.height(), QGuiApplication.platformName(), log_path,
    )  # fmt: skip
    code = int(app.exec())
    window.shutdown()  # a no-op when the window was closed; after app.quit() it still releases everything
    if watch is not None:
        log.info("event loop: worst stall %.0f ms", watch.worst_ms)
    return code


if __name__ == "__main__":
    sys.exit(main())
