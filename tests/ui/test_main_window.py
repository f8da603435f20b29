"""The main window on the offscreen platform with fake models: a typed turn, a spoken turn, streaming into the
conversation, back-to-back playback, the status line, the audio-only fallback after an out-of-memory,
push-to-talk, mute, and closing in order.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication

from tests.ui.conftest import REPLY

pytestmark = pytest.mark.ui


def start(qtbot, window):
    window.show()
    window.start()
    qtbot.waitUntil(lambda: window.ready, timeout=10_000)


def test_loads_in_background_and_says_ready(qtbot, window, make_session):
    make_session.options["load_delay_s"] = 0.4
    window.show()
    window.start()
    # The window is up and answering at once; the models are still loading.
    assert window.isVisible() and not window.ready
    assert window.stage_label.text().startswith("Loading")
    qtbot.waitUntil(lambda: window.ready, timeout=10_000)
    assert window.stage_label.text() == "Ready"
    assert "light engine on CPU" in window.engines_label.text()
    assert not window.load_progress.isVisible()
    assert "Ready" in window.conversation.plain_text()


def test_question_typed_during_loading_is_answered_once_loaded(qtbot, window, make_session):
    make_session.options["load_delay_s"] = 0.3
    window.show()
    window.start()
    qtbot.keyClicks(window.text_input, "why is the sky blue")
    qtbot.keyClick(window.text_input, Qt.Key.Key_Return)
    assert window.conversation.entries[-1].note == "queued until loaded"
    qtbot.waitUntil(
        lambda: len(window.backend.calls) == len(REPLY) and not window.player.busy, timeout=15_000
    )
    assert window.conversation.entries[-1].text == " ".join(REPLY)


def test_typed_turn_streams_reply_and_plays_segments_back_to_back(qtbot, window):
    start(qtbot, window)
    with qtbot.waitSignal(window.bridge.turn_done, timeout=10_000):
        window.ask("why is the sky blue")
    qtbot.waitUntil(
        lambda: len(window.backend.calls) == len(REPLY) and not window.player.busy, timeout=10_000
    )
    user, reply = window.conversation.entries[-2:]
    assert (user.role, user.text) == ("user", "why is the sky blue")
    assert (reply.role, reply.text) == ("assistant", " ".join(REPLY))
    assert reply.note.endswith(" s")  # the turn's total time
    # Every segment played as video, in order, one after the other.
    assert [(p.name, v) for p, v in window.backend.calls] == [(f"seg-{i:03d}.mp4", True) for i in range(3)]
    assert "LLM" in window.timings_label.text() and "total" in window.timings_label.text()
    assert window.stage_label.text() == "Ready"
    assert not window.notice_label.isVisible()
    assert not window.avatar.showing_video  # back to the photo at rest


def test_first_segment_plays_while_later_ones_are_being_made(qtbot, window, make_session):
    make_session.options["llm_delay_s"] = 0.4  # sentences 0.4 s apart, each segment plays for 30 ms
    start(qtbot, window)
    window.ask("tell me more")
    qtbot.waitUntil(lambda: len(window.backend.calls) >= 1, timeout=10_000)
    # The first segment started before the language model had written the last sentence.
    assert window.conversation.entries[-1].text != " ".join(REPLY)
    qtbot.waitUntil(lambda: len(window.backend.calls) == len(REPLY), timeout=10_000)


def test_spoken_turn_from_the_microphone(qtbot, window, fake_listener_factory):
    start(qtbot, window)
    listener = fake_listener_factory.instances[-1]
    assert listener.started
    with qtbot.waitSignal(window.bridge.turn_done, timeout=10_000):
        listener.say()
    user = [e for e in window.conversation.entries if e.role == "user"][-1]
    assert user.text == "why is the sky blue" and user.turn_id is not None
    assert window.meter.last_dbfs == -20.0
    qtbot.waitUntil(lambda: len(window.backend.calls) == len(REPLY), timeout=10_000)


def test_out_of_memory_plays_audio_only_with_notice_and_next_turn_tries_video(qtbot, window, make_session):
    make_session.options["oom_on"] = {0}  # the first render of the first turn runs out of memory
    start(qtbot, window)
    with qtbot.waitSignal(window.bridge.turn_done, timeout=10_000):
        window.ask("first question")
    qtbot.waitUntil(
        lambda: len(window.backend.calls) == len(REPLY) and not window.player.busy, timeout=10_000
    )
    # The player was asked to play each WAV (audio only) and the notice says why.
    assert [(p.suffix, v) for p, v in window.backend.calls] == [(".wav", False)] * len(REPLY)
    assert window.notice_label.isVisible()
    assert "out of memory" in window.notice_label.text()
    assert any("audio only" in n for n in window.notices)
    # The next turn tries video again.
    window.backend.calls.clear()
    with qtbot.waitSignal(window.bridge.turn_done, timeout=10_000):
        window.ask("second question")
    qtbot.waitUntil(lambda: len(window.backend.calls) == len(REPLY), timeout=10_000)
    assert [(p.suffix, v) for p, v in window.backend.calls] == [(".mp4", True)] * len(REPLY)


def test_new_question_interrupts_the_reply_in_flight(qtbot, window, make_session):
    make_session.options["llm_delay_s"] = 0.5
    start(qtbot, window)
    window.ask("a long question")
    qtbot.waitUntil(lambda: len(window.backend.calls) >= 1, timeout=10_000)
    with qtbot.waitSignal(window.bridge.turn_done, timeout=10_000) as first_done:
        window.ask("never mind")
    assert first_done.args[0].cancelled
    qtbot.waitUntil(lambda: window.conversation.entries[-1].text == " ".join(REPLY), timeout=15_000)
    replies = [e for e in window.conversation.entries if e.role == "assistant"]
    assert replies[0].note == "interrupted" and replies[0].text != " ".join(REPLY)


def _key(window, kind, key=Qt.Key.Key_Space):
    QApplication.sendEvent(window, QKeyEvent(kind, key, Qt.KeyboardModifier.NoModifier, " "))


def test_push_to_talk_with_the_space_bar(qtbot, window, fake_listener_factory):
    start(qtbot, window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
    window.mode_combo.setCurrentIndex(window.mode_combo.findData("push_to_talk"))
    listener = fake_listener_factory.instances[-1]
    assert listener.is_speech is not None  # rebuilt with the key as the speech detector
    assert window.talk_button.isEnabled()
    frame = b"\0" * 960
    window.setFocus()
    _key(window, QEvent.Type.KeyPress)
    assert window.mic.ptt_down and listener.is_speech(frame)
    _key(window, QEvent.Type.KeyRelease)
    assert not window.mic.ptt_down and not listener.is_speech(frame)
    # In the text box the space bar types a space instead.
    window.text_input.setFocus()
    qtbot.keyClick(window.text_input, Qt.Key.Key_Space)
    assert not window.mic.ptt_down


def test_mute_and_echo_guard(qtbot, window, fake_listener_factory):
    start(qtbot, window)
    listener = fake_listener_factory.instances[-1]
    window.mute_button.click()
    assert listener.muted_history[-1] is True and window.mic_state.text() == "muted"
    window.mute_button.click()
    assert listener.muted_history[-1] is False
    # Hands-free: listening pauses while the avatar speaks, and resumes after.
    window.ask("hello")
    qtbot.waitUntil(lambda: True in listener.muted_history[2:], timeout=10_000)
    qtbot.waitUntil(
        lambda: len(window.backend.calls) == len(REPLY) and not window.player.busy, timeout=10_000
    )
    assert listener.muted_history[-1] is False


def test_close_stops_microphone_player_and_session_in_order(
    qtbot, window, make_session, fake_listener_factory
):
    start(qtbot, window)
    session = make_session.made[-1]
    listener = fake_listener_factory.instances[-1]
    window.close()
    assert listener.stopped
    assert window.backend.released
    assert session.log[-1] == "close"
    assert not window.worker.isRunning()


def test_reply_prepared_at_a_pause_is_shown_when_the_end_is_confirmed(qtbot, window, make_session):
    import numpy as np

    from assistant.audio.vad import SpeechPaused
    from assistant.events import Utterance

    start(qtbot, window)
    utterance = Utterance(np.zeros(16000, np.float32), 16000, 0.0, 1.0)
    window.bridge.on_mic_speech_paused(SpeechPaused(utterance, 1.0))
    # The held turn runs to the end in the background, yet nothing is shown or played.
    qtbot.waitUntil(lambda: make_session.made[-1].log.count("held turn") == 1, timeout=5_000)
    qtbot.wait(300)
    assert window.backend.calls == []
    assert not [e for e in window.conversation.entries if e.role == "assistant" and e.text]
    with qtbot.waitSignal(window.bridge.turn_done, timeout=10_000):
        window.bridge.on_mic_utterance(utterance)  # the same utterance: the end of speech is confirmed
    qtbot.waitUntil(lambda: len(window.backend.calls) == len(REPLY), timeout=10_000)
    assert make_session.made[-1].log.count("turn") == 0  # no second turn was run for it


def test_reply_prepared_at_a_pause_is_dropped_when_speech_resumes(qtbot, window, make_session):
    import numpy as np

    from assistant.audio.vad import SpeechPaused, SpeechResumed
    from assistant.events import Utterance

    start(qtbot, window)
    early = Utterance(np.zeros(8000, np.float32), 16000, 0.0, 0.5)
    window.bridge.on_mic_speech_paused(SpeechPaused(early, 0.5))
    window.bridge.on_mic_speech_resumed(SpeechResumed(0.6, "microphone"))
    final = Utterance(np.zeros(16000, np.float32), 16000, 0.0, 1.0)
    with qtbot.waitSignal(window.bridge.turn_done, timeout=10_000) as done:
        window.bridge.on_mic_utterance(final)
    assert not done.args[0].cancelled
    qtbot.waitUntil(lambda: len(window.backend.calls) == len(REPLY), timeout=10_000)
    # The held turn was dropped before it ran or cancelled while it ran; either way one answer is shown.
    assert make_session.made[-1].log.count("held turn") <= 1 and make_session.made[-1].log.count("turn") == 1
    assistant_entries = [e for e in window.conversation.entries if e.role == "assistant" and e.text]
    assert len(assistant_entries) == 1
