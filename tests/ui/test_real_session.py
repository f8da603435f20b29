"""The window on the real Session (bundled models) with the real live avatar on the offscreen platform: a
typed question is answered, the session runs in live mode (segments are audio that the stream animates, no
video files), the stream says every segment in order on the one VLC media; then the settings dialog switches
the voice to espeak-ng, the running session reloads only that stage, in the background, and the next reply is
spoken by espeak-ng through the same stream.
"""

from __future__ import annotations

import pytest
import yaml

from tests.ui.conftest import StreamLog, player_for_tests, small_stream_settings
from ui.app import session_factory
from ui.main_window import MainWindow

pytestmark = [pytest.mark.integration, pytest.mark.ui]

LOAD_S = 240
TURN_S = 240


@pytest.fixture
def real_window(qtbot, tmp_path):
    # The light engine at 320x180 keeps the CPU work small; the stream is that size too.
    settings = small_stream_settings(tmp_path, gpu_profile="low", talking_head={"engine": "light"})
    window = MainWindow(
        settings, session_factory, listener_factory=None, player_factory=player_for_tests,
        user_config=tmp_path / "user.yaml",
    )  # fmt: skip
    window.stream_log = StreamLog(window.live)
    qtbot.addWidget(window)
    window.show()
    window.start()
    qtbot.waitUntil(lambda: window.ready and window.live.stream is not None, timeout=LOAD_S * 1000)
    yield window
    window.close()


def spoken_in_full(window, turn_id: int, segments: int) -> bool:
    finished = window.stream_log.finished(turn_id)
    return len(finished) == segments and window.stream_log.drained() >= 1 and not window.live.stream.speaking


def test_real_session_answers_on_the_live_stream_and_reconfigures_without_restart(qtbot, real_window):
    window = real_window
    session = window.worker.session
    assert session.live  # the app's session: the stream animates the speech, no talking-head files
    assert "light engine 320x180 at 25 fps" in window.engines_label.text()
    segments = []
    window.bridge.segment_ready.connect(segments.append)
    with qtbot.waitSignal(window.bridge.turn_done, timeout=TURN_S * 1000) as first:
        window.ask("What is the capital of France?")
    done = first.args[0]
    assert done.reply.strip() and done.engines["tts"] == "piper" and not done.cancelled
    assert done.segments >= 1
    assert [(s.index, s.video, s.audio_only_reason) for s in segments] == [
        (i, None, None) for i in range(done.segments)
    ]
    qtbot.waitUntil(lambda: spoken_in_full(window, done.turn_id, done.segments), timeout=60_000)
    finished = window.stream_log.finished(done.turn_id)
    assert [e.key for e in finished] == [(done.turn_id, i) for i in range(done.segments)]
    assert not any(e.cancelled for e in finished)
    assert " ".join(e.text for e in finished).split() == done.reply.split()  # the stream said the whole reply

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
    turn = second.args[0]
    qtbot.waitUntil(lambda: spoken_in_full(window, turn.turn_id, turn.segments), timeout=60_000)
    assert window.live.media_loads == 1  # both replies on the session's one VLC media
