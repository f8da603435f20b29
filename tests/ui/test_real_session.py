"""The window on the real Session (bundled models, light engine) on the offscreen platform: a typed question
is answered with video segments, then the settings dialog switches the voice to espeak-ng and the running
session reloads only that stage, in the background, and the next reply is spoken by espeak-ng. Playback is
recorded (VLC itself is exercised by the Xvfb test).
"""

from __future__ import annotations

import pytest
import yaml

from assistant.config import settings_to_dict, validate_dict
from tests.ui.conftest import RecordingBackend
from ui.app import session_factory
from ui.main_window import MainWindow

pytestmark = [pytest.mark.integration, pytest.mark.ui]

LOAD_S = 240
TURN_S = 240


@pytest.fixture
def real_window(qtbot, tmp_path):
    data = settings_to_dict(validate_dict({}))
    data["gpu_profile"] = "low"
    data["talking_head"]["engine"] = "light"
    data["talking_head"]["light"]["resolution"] = {"width": 320, "height": 180}  # keep the CPU work small
    data["paths"]["data_dir"] = str(tmp_path / "data")
    settings = validate_dict(data)
    backends: list[RecordingBackend] = []

    def backend_factory(_widget):
        backends.append(RecordingBackend(play_ms=50))
        return backends[-1]

    window = MainWindow(
        settings, session_factory, backend_factory=backend_factory, listener_factory=None,
        user_config=tmp_path / "user.yaml",
    )  # fmt: skip
    window.backend = backends[0]
    qtbot.addWidget(window)
    window.show()
    window.start()
    qtbot.waitUntil(lambda: window.ready, timeout=LOAD_S * 1000)
    yield window
    window.close()


def test_real_session_answers_and_reconfigures_without_restart(qtbot, real_window):
    window = real_window
    session = window.worker.session
    assert "light engine on CPU" in window.engines_label.text()
    with qtbot.waitSignal(window.bridge.turn_done, timeout=TURN_S * 1000) as first:
        window.ask("What is the capital of France?")
    assert first.args[0].reply.strip() and first.args[0].engines["tts"] == "piper"
    qtbot.waitUntil(lambda: len(window.backend.calls) == first.args[0].segments, timeout=30_000)
    assert all(path.suffix == ".mp4" and has_video for path, has_video in window.backend.calls)

    window.open_settings()
    dialog = window.settings_dialog
    dialog.tts_combo.setCurrentIndex(dialog.tts_combo.findData("espeak"))
    with qtbot.waitSignal(window.worker.reconfigured, timeout=LOAD_S * 1000) as reconfigured:
        assert dialog.apply()
    assert reconfigured.args[0] == ["tts"]  # only the voice reloaded
    assert window.worker.session is session  # same session: no restart
    assert yaml.safe_load(window.user_config.read_text()) == {"tts": {"engine": "espeak"}}
    dialog.accept()

    with qtbot.waitSignal(window.bridge.turn_done, timeout=TURN_S * 1000) as second:
        window.ask("And of Spain?")
    assert second.args[0].engines["tts"] == "espeak"
