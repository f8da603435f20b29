"""The "New conversation" action: in the menu with a shortcut; it stops a reply in flight through the turn-taking
controller, clears the conversation panel and makes the session forget the dialogue history, again once the cut
turn has ended (a cut turn enters the history as it ends), and nothing of the old conversation comes back.
Saying "new conversation" clears the panel the same way (the core forgets the history: tests/unit/test_commands.py).
"""

from __future__ import annotations

import threading

import pytest
from PySide6.QtGui import QKeySequence

from assistant.turn_taking import TurnState
from tests.ui.conftest import REPLY

pytestmark = pytest.mark.ui

WAIT_MS = 20_000  # caps on waits for something that must happen; they do not measure anything


def start(qtbot, window) -> None:
    window.show()
    window.start()
    qtbot.waitUntil(lambda: window.ready and window.live.stream is not None, timeout=WAIT_MS)


def test_the_action_is_in_the_menu_with_a_shortcut(qtbot, window):
    menu_actions = [a for menu in window.menuBar().actions() for a in menu.menu().actions()]
    assert window.new_conversation_action in menu_actions
    assert window.new_conversation_action.text().replace("&", "") == "New conversation"
    assert window.new_conversation_action.shortcut() == QKeySequence(QKeySequence.StandardKey.New)


def test_after_a_reply_it_clears_the_panel_and_the_history(qtbot, window, make_session):
    start(qtbot, window)
    resets = make_session.made[-1].resets  # each reset_conversation: whether on the GUI thread
    with qtbot.waitSignal(window.bridge.turn_done, timeout=WAIT_MS) as done:
        window.ask("why is the sky blue")
    turn_id = done.args[0].turn_id
    qtbot.waitUntil(lambda: len(window.stream_log.finished(turn_id)) == len(REPLY), timeout=WAIT_MS)
    assert REPLY[0] in window.conversation.plain_text()

    window.new_conversation_action.trigger()
    assert resets == [True]  # nothing in flight: forgotten at once, on the GUI thread
    assert [e.role for e in window.conversation.entries] == ["system"]
    assert "New conversation" in window.conversation.plain_text() and REPLY[0] not in window.conversation.plain_text()

    # The next question starts the new conversation's panel.
    with qtbot.waitSignal(window.bridge.turn_done, timeout=WAIT_MS):
        window.ask("and the sunset")
    qtbot.waitUntil(lambda: window.turns.state is TurnState.LISTENING, timeout=WAIT_MS)
    assert [e.role for e in window.conversation.entries] == ["system", "user", "assistant"]
    assert resets == [True]


def test_a_reply_in_flight_is_stopped_and_stays_forgotten(qtbot, window, make_session):
    gate = threading.Event()  # the second sentence is not generated until the test says so
    make_session.options["gates"] = {1: gate}
    start(qtbot, window)
    session = make_session.made[-1]
    resets = session.resets
    stops: list[str] = []
    stop = window.turns.stop
    window.turns.stop = lambda reason="stopped by the user": (stops.append(reason), stop(reason))[1]

    window.ask("why is the sky blue")
    qtbot.waitUntil(lambda: bool(window.stream_log.started()), timeout=WAIT_MS)  # sentence 1 is being said
    turn_id = window.stream_log.started()[0][0]
    assert window.worker_busy and window.turns.state is TurnState.SPEAKING

    with qtbot.waitSignal(window.bridge.turn_done, timeout=WAIT_MS) as done:
        window.new_conversation_action.trigger()
        assert stops == ["new conversation"]  # through the controller, like the Stop button
    assert done.args[0].turn_id == turn_id and done.args[0].cancelled
    # The stream stopped saying it (a fade, reported as a cut), and the window went back to listening.
    qtbot.waitUntil(lambda: any(f.cancelled for f in window.stream_log.finished(turn_id)), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not window.worker_busy, timeout=WAIT_MS)
    assert window.turns.state is TurnState.LISTENING
    # Forgotten on the GUI thread, and on the worker thread once the cut turn had ended (in either order: the
    # turn may end before the click returns), so nothing of it is left in the history.
    assert sorted(resets) == [False, True]
    # No late report of the cut turn (its end, what the avatar said of it) brought it back to the panel.
    assert [e.role for e in window.conversation.entries] == ["system"]
    assert REPLY[0] not in window.conversation.plain_text()
    gate.set()


def test_saying_new_conversation_clears_the_panel_like_the_menu_action(
    qtbot, window, make_session, fake_listener_factory
):
    from assistant.commands import NEW_CONVERSATION

    start(qtbot, window)
    session = make_session.made[-1]
    listener = fake_listener_factory.instances[-1]
    with qtbot.waitSignal(window.bridge.turn_done, timeout=WAIT_MS) as done:
        listener.say()
    qtbot.waitUntil(lambda: len(window.stream_log.finished(done.args[0].turn_id)) == len(REPLY), timeout=WAIT_MS)
    assert REPLY[0] in window.conversation.plain_text()

    session.stages.asr.text = "New conversation."  # what Whisper hears next
    with qtbot.waitSignal(window.bridge.turn_done, timeout=WAIT_MS) as done:
        listener.say()
    turn_id = done.args[0].turn_id
    qtbot.waitUntil(lambda: len(window.stream_log.finished(turn_id)) == 1, timeout=WAIT_MS)  # the answer is said
    qtbot.waitUntil(lambda: window.turns.state is TurnState.LISTENING, timeout=WAIT_MS)
    assert [(e.role, e.text) for e in window.conversation.entries] == [
        ("system", "New conversation: the assistant forgot what was said."),
        ("assistant", NEW_CONVERSATION.reply),
    ]


def test_first_start_offers_the_profiles_better_model_when_it_is_not_downloaded(qtbot, window, make_session):
    import dataclasses

    gate = threading.Event()
    make_session.options["load_gate"] = gate
    window.show()
    window.start()
    qtbot.waitUntil(lambda: bool(make_session.made), timeout=WAIT_MS)
    session = make_session.made[-1]
    # The profile of a machine with a GPU picks a bigger model; this machine's models folder does not have it.
    session.resolved = dataclasses.replace(session.resolved, dialogue_model="llama-3.2-1b")
    gate.set()
    qtbot.waitUntil(lambda: window.ready, timeout=WAIT_MS)
    assert window.offered_model == "llama-3.2-1b"
    text = window.conversation.plain_text()
    assert "A better language model is available" in text and "Assistant → Settings" in text


def test_nothing_is_offered_when_the_profiles_model_is_the_bundled_one(qtbot, window):
    start(qtbot, window)
    assert window.offered_model is None  # profile low (no GPU): the bundled SmolLM2 is the profile's model
    assert "A better language model" not in window.conversation.plain_text()
