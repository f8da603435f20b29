"""The main window on the offscreen platform with fake models and the real live avatar (LiveStream, ffmpeg
LiveEncoder, VLC with its dummy outputs): loading in the background, typed and spoken turns spoken by the
stream in order, the states the turn-taking controller shows, interrupting a reply (what was really said goes
back to the session), push-to-talk, mute and the half-duplex guard, closing in order, the early-start hold,
and one VLC media for a whole session.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QApplication

from assistant.audio.vad import SpeechPaused, SpeechResumed
from assistant.events import Utterance
from assistant.live import StreamDrained, StreamSpeechFinished
from assistant.turn_taking import TurnState
from tests.ui.conftest import REPLY, StreamLog, frames_played, player_for_tests
from ui.main_window import MainWindow

pytestmark = pytest.mark.ui

LOAD_MS = 20_000  # caps on waits for something that must happen; they do not measure anything
TURN_MS = 20_000


def start(qtbot, window) -> None:
    window.show()
    window.start()
    qtbot.waitUntil(lambda: window.ready and window.live.stream is not None, timeout=LOAD_MS)


def spoken(window, turn_id: int, count: int = len(REPLY)) -> bool:
    """The stream has finished saying `count` segments of the turn and the controller is idle again."""
    return len(window.stream_log.finished(turn_id)) == count and window.turns.state is TurnState.LISTENING


def ask_and_wait(qtbot, window, text: str) -> int:
    """Ask, wait until the whole reply has been said; returns the turn id."""
    with qtbot.waitSignal(window.bridge.turn_done, timeout=TURN_MS) as done:
        window.ask(text)
    turn_id = done.args[0].turn_id
    qtbot.waitUntil(lambda: spoken(window, turn_id), timeout=TURN_MS)
    return turn_id


def test_loads_in_background_and_says_ready(qtbot, window, make_session):
    gate = threading.Event()
    make_session.options["load_gate"] = gate  # the models load when the test says so
    window.show()
    window.start()
    # The window is up and answering at once; the models are still loading, and meanwhile the avatar stream
    # already runs (frames reach the player).
    assert window.isVisible() and not window.ready
    assert window.stage_label.text().startswith("Loading")
    qtbot.waitUntil(lambda: frames_played(window.live) > 0, timeout=LOAD_MS)
    assert not window.ready and window.turns.state is TurnState.LOADING
    gate.set()
    qtbot.waitUntil(lambda: window.ready, timeout=LOAD_MS)
    assert window.stage_label.text() == "Ready"
    # The engines line names what really draws the avatar: the live stream, at the configured size.
    assert "320x180 at 25 fps" in window.engines_label.text()
    assert "fake whisper on CPU" in window.engines_label.text()
    assert not window.load_progress.isVisible()
    assert "Ready" in window.conversation.plain_text()
    assert window.notices == []


def test_question_typed_during_loading_is_answered_once_loaded(qtbot, window, make_session):
    gate = threading.Event()
    make_session.options["load_gate"] = gate
    window.show()
    window.start()
    qtbot.keyClicks(window.text_input, "why is the sky blue")
    qtbot.keyClick(window.text_input, Qt.Key.Key_Return)
    question = window.conversation.entries[-1]
    assert (question.role, question.text) == ("user", "why is the sky blue")
    assert question.note == "queued until loaded"
    assert window.stage_label.text() == "Queued until the models load"
    with qtbot.waitSignal(window.bridge.turn_done, timeout=TURN_MS) as done:
        gate.set()
    turn_id = done.args[0].turn_id
    qtbot.waitUntil(lambda: spoken(window, turn_id), timeout=TURN_MS)
    assert question.note != "queued until loaded"
    assert window.conversation.reply_entry(turn_id).text == " ".join(REPLY)
    assert [e.text for e in window.stream_log.finished(turn_id)] == list(REPLY)
    assert [e.text for e in window.conversation.entries if e.role == "user"] == ["why is the sky blue"]


def test_typed_turn_is_spoken_by_the_stream_segment_by_segment_in_order(qtbot, window, caplog):
    caplog.set_level(logging.INFO)
    start(qtbot, window)
    segments = []
    window.bridge.segment_ready.connect(segments.append)
    first_state = len(window.state_log.states)
    turn_id = ask_and_wait(qtbot, window, "why is the sky blue")
    # Live mode: every segment is audio only, and that is not a fallback (nothing is missing).
    assert [(s.index, s.video, s.audio_only_reason) for s in segments] == [(i, None, None) for i in range(3)]
    # The stream said the segments in the order they were queued: each started after the one before finished,
    # each was said whole, and the stream drained after the last.
    log = window.stream_log
    assert log.started(turn_id) == [(turn_id, i) for i in range(3)]
    finished = log.finished(turn_id)
    assert [(e.key, e.text, e.cancelled) for e in finished] == [
        ((turn_id, i), REPLY[i], False) for i in range(3)
    ]
    assert all(e.played_s == pytest.approx(e.duration_s, abs=1e-3) and e.duration_s > 0 for e in finished)
    ordered = [
        (type(e).__name__, getattr(e, "key", None))
        for e in log.events
        if not isinstance(e, StreamDrained) or e is log.events[-1]
    ]
    assert ordered == [
        *[(kind, (turn_id, i)) for i in range(3) for kind in ("StreamSpeechStarted", "StreamSpeechFinished")],
        ("StreamDrained", None),
    ]
    assert [f.frame for f in finished] == sorted(f.frame for f in finished)
    # The controller went Thinking -> Speaking -> Ready, and the status line said so.
    assert window.state_log.distinct()[first_state:] == [
        TurnState.THINKING,
        TurnState.SPEAKING,
        TurnState.LISTENING,
    ]
    assert window.state_log.texts[first_state:] == ["Thinking…", "Speaking", "Ready"]
    assert window.stage_label.text() == "Ready"
    user, reply = window.conversation.entries[-2:]
    assert (user.role, user.text) == ("user", "why is the sky blue")
    assert (reply.role, reply.text) == ("assistant", " ".join(REPLY))
    assert reply.note.endswith(" s")  # the turn's total time
    assert "LLM" in window.timings_label.text() and "total" in window.timings_label.text()
    assert not window.notice_label.isVisible()
    assert window.worker.session.amended == []  # nothing was cut
    # Privacy: the log at its default level says a turn was done, never what was said in it.
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert f"turn {turn_id} done" in logged
    assert "sky is blue" not in logged.lower() and "why is the sky" not in logged.lower()


def test_spoken_turn_from_the_microphone(qtbot, window, fake_listener_factory):
    start(qtbot, window)
    listener = fake_listener_factory.instances[-1]
    assert listener.started
    first_state = len(window.state_log.states)
    with qtbot.waitSignal(window.bridge.turn_done, timeout=TURN_MS) as done:
        listener.say()
    turn_id = done.args[0].turn_id
    qtbot.waitUntil(lambda: spoken(window, turn_id), timeout=TURN_MS)
    user = [e for e in window.conversation.entries if e.role == "user"][-1]
    assert (user.text, user.turn_id) == ("why is the sky blue", turn_id)
    assert user.note.startswith("heard in")
    assert window.meter.last_dbfs == -20.0
    assert window.stream_log.started(turn_id) == [(turn_id, i) for i in range(3)]
    # Recognising first, then thinking about the words heard, speaking, ready.
    assert window.state_log.texts[first_state:] == ["Recognising speech…", "Thinking…", "Speaking", "Ready"]
    # The status line leads with the user's wait: end of speech to the reply's first sound at the speaker (the
    # direct player says its delay), then the stages.
    timings = window.timings_label.text()
    assert timings.startswith("first sound ") and " s · ASR " in timings and "player delay" not in timings, timings


def test_new_question_interrupts_the_reply_in_flight(qtbot, window, make_session):
    # Sentences of ~1.4 s; the third waits for the gate, so the first turn is still running when it is cut.
    gate = threading.Event()
    make_session.options.update(seconds_per_word=0.35, gates={2: gate})
    start(qtbot, window)
    session = window.worker.session
    window.ask("a long question")
    qtbot.waitUntil(lambda: len(window.stream_log.started()) == 2, timeout=TURN_MS)  # the 2nd sentence plays
    first = window.stream_log.started()[0][0]
    with qtbot.waitSignal(
        window.bridge.turn_done, timeout=TURN_MS, check_params_cb=lambda e: e.turn_id == first
    ) as first_done:
        window.ask("never mind")
    assert first_done.args[0].cancelled
    gate.set()
    with qtbot.waitSignal(window.bridge.turn_done, timeout=TURN_MS) as second_done:
        pass
    second = second_done.args[0].turn_id
    qtbot.waitUntil(lambda: spoken(window, second), timeout=TURN_MS)

    # The stream cut the first reply in its second sentence and went on with the second reply.
    cut = window.stream_log.finished(first)
    assert [(e.key, e.cancelled) for e in cut] == [((first, 0), False), ((first, 1), True)]
    assert 0 < cut[1].played_s < cut[1].duration_s
    assert window.stream_log.started(second) == [(second, i) for i in range(3)]
    assert not any(e.cancelled for e in window.stream_log.finished(second))
    # The session keeps only what was said: all of the first sentence and the part of the second played.
    assert [turn for turn, _ in session.amended] == [first]
    said = session.amended[0][1].split()
    heard_in_full, cut_short = REPLY[0].split(), REPLY[1].split()
    assert said[: len(heard_in_full)] == heard_in_full
    assert said[len(heard_in_full) :] == cut_short[: len(said) - len(heard_in_full)]
    assert len(said) < len(heard_in_full) + len(cut_short)
    # The conversation marks the first reply interrupted and shows the second in full.
    assert window.conversation.reply_entry(first).note == "interrupted"
    assert window.conversation.reply_entry(second).text == " ".join(REPLY)
    assert window.live.media_loads == 1


def test_reply_cut_after_its_turn_finished_is_marked_interrupted(qtbot, window, make_session):
    make_session.options.update(seconds_per_word=0.35)  # every segment is made long before it has been said
    start(qtbot, window)
    with qtbot.waitSignal(window.bridge.turn_done, timeout=TURN_MS) as done:
        window.ask("a long question")
    first = done.args[0].turn_id
    assert not done.args[0].cancelled
    qtbot.waitUntil(lambda: len(window.stream_log.started(first)) == 2, timeout=TURN_MS)
    window.stop_button.click()
    qtbot.waitUntil(lambda: window.worker.session.amended != [], timeout=TURN_MS)
    assert window.worker.session.amended[0][0] == first  # the history part works
    assert window.conversation.reply_entry(first).note == "interrupted"
    said = window.worker.session.amended[0][1]
    assert window.conversation.reply_entry(first).text == f"{said} …".strip()  # the panel shows what was said


def test_reply_cut_between_segments_keeps_only_what_was_said(qtbot, window, make_session):
    gate = threading.Event()
    make_session.options["gates"] = {1: gate}  # the second sentence is not made until the gate opens
    start(qtbot, window)
    window.ask("a long question")
    qtbot.waitUntil(lambda: window.stream_log.drained() == 1, timeout=TURN_MS)  # the first sentence was said
    first = window.stream_log.started()[0][0]
    with qtbot.waitSignal(
        window.bridge.turn_done, timeout=TURN_MS, check_params_cb=lambda e: e.turn_id == first
    ):
        window.stop_button.click()
    assert window.worker.session.amended == [(first, REPLY[0])]


def _key(window, kind, key=Qt.Key.Key_Space):
    QApplication.sendEvent(window, QKeyEvent(kind, key, Qt.KeyboardModifier.NoModifier, " "))


def test_push_to_talk_with_the_space_bar(qtbot, window, fake_listener_factory, make_session):
    make_session.options.update(seconds_per_word=0.35)
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
    assert window.turns.state is TurnState.HEARING
    _key(window, QEvent.Type.KeyRelease)
    assert not window.mic.ptt_down and not listener.is_speech(frame)
    # In the text box the space bar types a space instead.
    window.text_input.setFocus()
    qtbot.keyClick(window.text_input, Qt.Key.Key_Space)
    assert not window.mic.ptt_down and window.text_input.text() == " "
    window.text_input.clear()
    # While the avatar speaks, push-to-talk keeps the microphone open (the key says who talks), and the key
    # interrupts the reply: the stream's speech is cancelled.
    window.ask("tell me more")
    qtbot.waitUntil(lambda: window.turns.state is TurnState.SPEAKING, timeout=TURN_MS)
    turn_id = window.stream_log.started()[-1][0]
    assert not listener.muted
    window.setFocus()
    _key(window, QEvent.Type.KeyPress)
    qtbot.waitUntil(lambda: any(e.cancelled for e in window.stream_log.finished(turn_id)), timeout=TURN_MS)
    assert window.turns.state is TurnState.HEARING
    _key(window, QEvent.Type.KeyRelease)


def test_mute_and_half_duplex_guard(qtbot, window, fake_listener_factory, make_session):
    gate = threading.Event()
    make_session.options["gates"] = {1: gate}  # the second sentence arrives after the first was said
    start(qtbot, window)
    listener = fake_listener_factory.instances[-1]
    window.mute_button.click()
    assert listener.muted and window.mic_state.text() == "muted"
    assert window.stage_label.text() == "Ready (microphone muted)"
    window.mute_button.click()
    assert not listener.muted and window.stage_label.text() == "Ready"

    # Hands-free: the microphone closes while the avatar speaks and reopens only once the stream has drained
    # AND the turn is over. Here the stream drains after the first sentence, before the second exists.
    done: list[object] = []
    window.bridge.turn_done.connect(done.append)
    changes: list[tuple[bool, bool, bool]] = []  # (muted, turn done, stream still has speech) at each change
    set_muted = listener.set_muted

    def watch(muted: bool) -> None:
        stream = window.live.stream
        changes.append((muted, bool(done), stream is not None and stream.speaking))
        set_muted(muted)

    listener.set_muted = watch
    at_gap: list[tuple[bool, TurnState, str]] = []

    def probe(event) -> None:
        if isinstance(event, StreamDrained) and not gate.is_set():
            at_gap.append((listener.muted, window.turns.state, window.mic_state.text()))

    window.stream_log.on_event = probe
    window.ask("hello")
    qtbot.waitUntil(lambda: bool(at_gap), timeout=TURN_MS)
    # The first sentence has been said and nothing else is queued: the microphone must still be closed.
    assert at_gap[0] == (True, TurnState.SPEAKING, "paused while the avatar speaks")
    assert not done and window.live.stream is not None and not window.live.stream.speaking
    gate.set()
    qtbot.waitUntil(lambda: bool(done) and window.turns.state is TurnState.LISTENING, timeout=TURN_MS)
    turn_id = done[0].turn_id
    assert [(e.text, e.cancelled) for e in window.stream_log.finished(turn_id)] == [(t, False) for t in REPLY]
    # Closed once when the first sound played, reopened once, after the turn was over and the stream drained.
    assert changes == [(True, False, True), (False, True, False)]
    assert not listener.muted and window.mic_state.text() == "listening"


def test_close_stops_microphone_live_avatar_and_session_in_order(
    qtbot, window, make_session, fake_listener_factory
):
    start(qtbot, window)
    session = window.worker.session
    listener = fake_listener_factory.instances[-1]
    live = window.live
    stream, encoder, player = live.stream, live.encoder, live.player
    order: list[str] = []
    listener.on_stop = lambda: order.append("microphone")
    for name, obj, method in (
        ("stream", stream, "stop"),
        ("player", player, "release"),
        ("session", session, "close"),
    ):
        original = getattr(obj, method)

        def wrapped(*args, _name=name, _original=original, **kwargs):
            order.append(_name)
            return _original(*args, **kwargs)

        setattr(obj, method, wrapped)
    window.close()
    assert order == ["microphone", "stream", "player", "session"]
    assert listener.stopped
    assert encoder is None and player.playout is None  # the direct player: no encoder; the sound device closed
    assert live.stream is None and not stream._thread  # the clock thread has ended
    assert session.log[-1] == "close"
    assert not window.worker.isRunning()


def test_reply_prepared_at_a_pause_is_spoken_when_the_end_is_confirmed(qtbot, window, make_session):
    start(qtbot, window)
    session = window.worker.session
    utterance = Utterance(np.zeros(16000, np.float32), 16000, 0.0, 1.0)
    # The held turn runs to its end in the background; the worker reports it finished...
    with qtbot.waitSignal(window.worker.turn_finished, timeout=TURN_MS):
        window.bridge.on_mic_speech_paused(SpeechPaused(utterance, 1.0))
    assert session.log.count("held turn") == 1
    # ... and by then every event it made is held back: nothing was shown or queued into the stream.
    assert window.stream_log.events == []
    assert not [e for e in window.conversation.entries if e.role == "assistant" and e.text]
    assert window.turns.state is TurnState.EARLY_START and window.stage_label.text() == "Listening…"
    with qtbot.waitSignal(window.bridge.turn_done, timeout=TURN_MS) as done:
        window.bridge.on_mic_utterance(utterance)  # the same utterance: the end of speech is confirmed
    turn_id = done.args[0].turn_id
    qtbot.waitUntil(lambda: spoken(window, turn_id), timeout=TURN_MS)
    assert window.stream_log.started() == [(turn_id, i) for i in range(3)]
    assert session.log.count("turn") == 0  # no second turn was run for it


def test_reply_prepared_at_a_pause_is_dropped_when_speech_resumes(qtbot, window, make_session):
    start(qtbot, window)
    session = window.worker.session
    early = Utterance(np.zeros(8000, np.float32), 16000, 0.0, 0.5)
    window.bridge.on_mic_speech_paused(SpeechPaused(early, 0.5))
    window.bridge.on_mic_speech_resumed(SpeechResumed(0.6, "microphone"))
    final = Utterance(np.zeros(16000, np.float32), 16000, 0.0, 1.0)
    with qtbot.waitSignal(
        window.bridge.turn_done, timeout=TURN_MS, check_params_cb=lambda e: not e.cancelled
    ) as done:
        window.bridge.on_mic_utterance(final)
    turn_id = done.args[0].turn_id
    qtbot.waitUntil(lambda: spoken(window, turn_id), timeout=TURN_MS)
    # The held turn was dropped before it ran or cancelled while it ran; either way only the final answer was
    # spoken and shown.
    assert session.log.count("held turn") <= 1 and session.log.count("turn") == 1
    assert window.stream_log.started() == [(turn_id, i) for i in range(3)]
    assistant_entries = [e for e in window.conversation.entries if e.role == "assistant" and e.text]
    assert [e.turn_id for e in assistant_entries] == [turn_id]


@pytest.mark.parametrize("player", ["direct", "vlc"])
def test_one_player_for_a_whole_session(qtbot, settings, make_session, fake_listener_factory, tmp_path, player):
    window = MainWindow(
        settings.model_copy(update={"live": settings.live.model_copy(update={"player": player})}), make_session,
        listener_factory=fake_listener_factory, player_factory=player_for_tests, user_config=tmp_path / "u.yaml",
    )  # fmt: skip
    window.stream_log = StreamLog(window.live)
    qtbot.addWidget(window)
    start(qtbot, window)
    live = window.live
    stream, encoder = live.stream, live.encoder
    assert (encoder is None) == (player == "direct")  # the direct player needs no encoder
    # The player shows the stream's video: the window shows it instead of the photo.
    qtbot.waitUntil(lambda: window.avatar.showing_video, timeout=LOAD_MS)
    turns = []

    def idle_frames_flow() -> None:
        # Nothing is being said, and the stream still makes frames (an idling avatar, not a still photo).
        assert not stream.speaking
        before = frames_played(live)
        qtbot.waitUntil(lambda: frames_played(live) >= before + 10, timeout=LOAD_MS)

    idle_frames_flow()
    turns.append(ask_and_wait(qtbot, window, "first question"))
    idle_frames_flow()
    listener = fake_listener_factory.instances[-1]
    with qtbot.waitSignal(window.bridge.turn_done, timeout=TURN_MS) as done:
        listener.say()
    qtbot.waitUntil(lambda: spoken(window, done.args[0].turn_id), timeout=TURN_MS)
    turns.append(done.args[0].turn_id)
    idle_frames_flow()
    turns.append(ask_and_wait(qtbot, window, "third question"))
    idle_frames_flow()
    assert window.stream_log.started() == [(t, i) for t in turns for i in range(3)]
    # One stream, one player (one VLC media, with one encoder) from the first frame to the last.
    assert live.stream is stream and live.encoder is encoder and (encoder is None or encoder.alive)
    assert live.media_loads == 1
    assert window.avatar.showing_video
    assert window.notices == []
    assert all(isinstance(e, StreamSpeechFinished) and not e.cancelled for e in window.stream_log.finished())
    window.close()
