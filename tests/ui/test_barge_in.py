"""Hands-free barge-in in the window: the real echo canceller taps the real live stream, the microphone stays open
while the avatar speaks, and speech from the microphone ends the reply (history keeps what was said) and is
answered. Barge-in off, or no canceller, is the half-duplex of test_main_window.py."""

from __future__ import annotations

import sys
import threading

import pytest

from assistant.audio.vad import SpeechStarted
from assistant.turn_taking import TurnState
from tests.ui.conftest import small_stream_settings
from tests.ui.test_main_window import TURN_MS, spoken, start

pytestmark = pytest.mark.ui


@pytest.fixture
def settings(tmp_path):
    return small_stream_settings(tmp_path, audio={"barge_in": True, "barge_in_min_speech_ms": 210})


def test_speech_over_the_avatar_interrupts_and_is_answered(qtbot, window, fake_listener_factory, make_session):
    gate = threading.Event()
    make_session.options.update(seconds_per_word=0.35, gates={2: gate})  # a long reply still being made
    start(qtbot, window)
    listener = fake_listener_factory.instances[-1]
    assert window.barge.enabled and listener.echo is window.barge.echo and listener.barge_in_onset_ms == 210
    # the canceller hears what the player plays, as it is played (not the stream's release times)
    assert window.barge.echo.reference not in window.live.stream._sinks
    qtbot.waitUntil(lambda: window.barge.echo.reference.written > 0, timeout=TURN_MS)
    window.ask("tell me a long story")
    qtbot.waitUntil(lambda: window.turns.state is TurnState.SPEAKING, timeout=TURN_MS)
    first = window.stream_log.started()[0][0]
    assert not listener.muted and window.mic_state.text() == "listening"  # open while the avatar speaks
    with qtbot.waitSignal(
        window.bridge.turn_done, timeout=TURN_MS, check_params_cb=lambda e: e.turn_id == first
    ) as cut:
        window.bridge.on_mic_speech_start(SpeechStarted(0.0, 0.2, "microphone"))
    assert cut.args[0].cancelled
    qtbot.waitUntil(lambda: bool(window.stream_log.finished(first)), timeout=TURN_MS)
    assert window.stream_log.finished(first)[-1].cancelled  # the voice faded out mid-sentence
    gate.set()
    with qtbot.waitSignal(window.bridge.turn_done, timeout=TURN_MS) as answered:
        listener.say()
    second = answered.args[0].turn_id
    qtbot.waitUntil(lambda: spoken(window, second), timeout=TURN_MS)
    assistant_entries = [e for e in window.conversation.entries if e.role == "assistant"]
    assert len(assistant_entries) >= 2
    user = [e for e in window.conversation.entries if e.role == "user"][-1]
    assert (user.text, user.turn_id) == ("why is the sky blue", second)


def test_no_canceller_shows_a_notice_and_stays_half_duplex(qtbot, tmp_path, make_session, fake_listener_factory,
                                                           monkeypatch):  # fmt: skip
    monkeypatch.setitem(sys.modules, "pywebrtc_audio", None)  # as if the package were not installed
    from tests.ui.conftest import player_for_tests
    from ui.main_window import MainWindow

    win = MainWindow(small_stream_settings(tmp_path, audio={"barge_in": True}), make_session,
                     listener_factory=fake_listener_factory, player_factory=player_for_tests)  # fmt: skip
    qtbot.addWidget(win)
    try:
        assert not win.barge.enabled and not win.turns.barge_in
        assert any("No echo cancellation" in n and "half-duplex" in n for n in win.notices)
        start(qtbot, win)
        listener = fake_listener_factory.instances[-1]
        assert listener.echo is None
    finally:
        win.close()
