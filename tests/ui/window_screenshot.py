"""The app's main window on the real Session (bundled models, the light engine on the live stream) answers a typed
question; once the reply is on screen and the avatar has been saying it for a while, the window is grabbed to a PNG.

    python -m tests.ui.window_screenshot OUT.png REPORT.json WORK_DIR

Run by tests/ui/test_screenshot.py on an Xvfb display (QT_QPA_PLATFORM=xcb). REPORT.json says where the avatar and
the conversation are in the window and what was asked and answered, for the test to check the picture against.
The window's player is the tests' one (`player_for_tests`: the direct player on the system clock, no sound card).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

QUESTION = "What is the capital of France?"
WINDOW_WH = (1100, 720)  # the README's picture
LOAD_S = 300
TURN_S = 300
SPEAKING_S = 1.0  # of the reply said before the grab: the mouth is moving, the reply is in the conversation


def _wait(app, until: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not until():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")
        app.processEvents()
        time.sleep(0.01)


def main(out: Path, report_path: Path, work: Path) -> None:
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QApplication

    import assistant.profile
    from tests.ui.conftest import player_for_tests, small_stream_settings
    from tests.unit.conftest import REFERENCE_SPEED
    from ui.app import session_factory
    from ui.main_window import MainWindow

    # The tier from the reference machine's speed, as the UI tests take it (measuring costs up to 20 s here).
    assistant.profile.measure_cpu_speed = lambda settings: REFERENCE_SPEED  # type: ignore[assignment]
    app = QApplication.instance() or QApplication([])
    # The app's own stream (the talking head's size and fps), greedy replies (the same answer every time); no
    # microphone.
    settings = small_stream_settings(
        work, gpu_profile="low", talking_head={"engine": "light"}, dialogue={"temperature": 0.0},
        live={"resolution": None, "fps": None},
    )  # fmt: skip
    window = MainWindow(settings, session_factory, listener_factory=None, player_factory=player_for_tests,
                        user_config=work / "user.yaml")  # fmt: skip
    window.resize(*WINDOW_WH)
    window.show()
    window.start()
    _wait(app, lambda: window.ready and window.live.stream is not None, LOAD_S, "the models to load")
    done: list = []
    window.bridge.turn_done.connect(done.append)
    window.ask(QUESTION)
    _wait(app, lambda: bool(done), TURN_S, "the reply")
    said_from = time.monotonic()
    _wait(app, lambda: time.monotonic() - said_from > SPEAKING_S, SPEAKING_S + 5, "the avatar to speak")
    image = window.grab()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(out), "PNG"):
        raise SystemExit(f"could not write {out}")

    def box(widget) -> list[int]:
        corner = widget.mapTo(window, QPoint(0, 0))
        return [corner.x(), corner.y(), widget.width(), widget.height()]

    ratio = image.devicePixelRatio()
    report = {
        "window": [window.width(), window.height()], "device_pixel_ratio": ratio,
        "avatar": box(window.avatar), "avatar_page": window.avatar.currentIndex(),
        "conversation": box(window.conversation), "conversation_text": window.conversation.toPlainText(),
        "question": QUESTION, "reply": done[0].reply,
        "platform": app.platformName(), "speaking": bool(window.live.stream.speaking),
    }  # fmt: skip
    report_path.write_text(json.dumps(report, indent=1))
    window.close()
    app.processEvents()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
