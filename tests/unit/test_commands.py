"""Spoken commands: the recogniser (whole utterances, Whisper's case and punctuation, not the words inside a
question), and "new conversation" said aloud through the real Session, TurnRunner and DialogueManager: the
history is forgotten and the confirmation spoken without asking the language model.

Outside the unit: the llama.cpp model (FakeLLM of test_dialogue_history), Whisper and the voice (fakes of
test_pipeline).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.commands import NEW_CONVERSATION, recognise_command
from assistant.dialogue import DialogueManager
from assistant.events import ConversationReset, ReplySentenceReady, TurnEvent, Utterance
from assistant.pipeline import Hold
from assistant.session import Session
from tests.unit.test_dialogue_history import SYSTEM, FakeLLM, tokens_of
from tests.unit.test_pipeline import FakeASR, FakeTTS
from tests.unit.test_profile import settings_for


@pytest.mark.parametrize(
    "transcript",
    [
        "New conversation.",
        " new conversation",
        "NEW CONVERSATION!",
        "Start over.",
        "Start a new conversation.",
        "Let's start a new conversation.",
        "Let\u2019s start again.",
        "Lets start over",
        "Okay, let's start over, please.",
        "Forget everything.",
        "Can we start over?",
        "I'd like a new conversation, please.",
        "Start-over.",
    ],
)
def test_the_new_conversation_command_is_recognised(transcript: str) -> None:
    assert recognise_command(transcript) is NEW_CONVERSATION


@pytest.mark.parametrize(
    "transcript",
    [
        "How do I start over in chess?",
        "What should I do to start over after a divorce?",
        "I had a new conversation with my boss today.",
        "Forget everything I said about the budget.",
        "Let's start again from chapter two.",
        "Could you start again?",  # after a story: tell it again
        "Conversation.",
        "What is the capital of France?",
        "",
    ],
)
def test_questions_containing_the_words_are_not_commands(transcript: str) -> None:
    assert recognise_command(transcript) is None


def utterance() -> Utterance:
    return Utterance(np.zeros(16000, np.float32), 16000, 0.0, 1.0)


def session_with(tmp_path: Path, events: list[TurnEvent]) -> tuple[Session, DialogueManager, FakeLLM, FakeASR]:
    """A Session whose dialogue is the real DialogueManager over a fake llama; speech in is `asr.text`."""
    session = Session(settings_for(tmp_path), events.append, probe=lambda: None, llm_gpu_probe=lambda: False)
    llm = FakeLLM(tokens_of("Paris is the capital of France."))
    dialogue = DialogueManager("unused.gguf", SYSTEM, llm=llm)
    asr = FakeASR("What is the capital of France?")
    session.asr, session.dialogue, session.tts = asr, dialogue, FakeTTS()
    session._make_runner()
    return session, dialogue, llm, asr


def test_saying_new_conversation_forgets_the_history_without_asking_the_model(tmp_path: Path) -> None:
    events: list[TurnEvent] = []
    session, dialogue, llm, asr = session_with(tmp_path, events)
    session.run_turn(utterance=utterance())
    assert len(dialogue.history) == 1 and len(llm.calls) == 1

    asr.text = "New conversation."
    result = session.run_turn(utterance=utterance())
    assert dialogue.history == ()
    assert len(llm.calls) == 1  # the model was not asked
    assert result.reply == NEW_CONVERSATION.reply and len(result.segments) == 1  # and the answer was spoken
    assert session.tts.texts[-1] == NEW_CONVERSATION.reply
    mine = [e for e in events if e.turn_id == result.turn_id]
    assert [type(e).__name__ for e in mine if isinstance(e, (ConversationReset, ReplySentenceReady))] == [
        "ConversationReset",
        "ReplySentenceReady",
    ]

    asr.text = "What is the capital of Japan?"
    session.run_turn(utterance=utterance())
    assert llm.calls[-1] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What is the capital of Japan?"},
    ]


def test_a_question_with_the_words_inside_goes_to_the_model(tmp_path: Path) -> None:
    session, dialogue, llm, asr = session_with(tmp_path, [])
    session.run_turn(utterance=utterance())
    asr.text = "How do I start over in chess?"
    llm.script = tokens_of("Resign the game, then set up the pieces again.")
    result = session.run_turn(utterance=utterance())
    assert len(llm.calls) == 2 and len(dialogue.history) == 2
    assert result.reply == "Resign the game, then set up the pieces again."


def test_a_speculative_command_forgets_only_once_confirmed(tmp_path: Path) -> None:
    events: list[TurnEvent] = []
    session, dialogue, _, asr = session_with(tmp_path, events)
    session.run_turn(utterance=utterance())
    asr.text = "Start over."

    talked_on = Hold()  # "Start over..." and then the speaker went on: the turn is discarded
    session.run_turn(utterance=utterance(), hold=talked_on)
    talked_on.discard()
    assert len(dialogue.history) == 1
    assert not any(isinstance(e, ConversationReset) for e in events)

    confirmed = Hold()
    session.run_turn(utterance=utterance(), hold=confirmed)
    assert len(dialogue.history) == 1  # held: not yet
    confirmed.release()
    assert dialogue.history == ()
    assert any(isinstance(e, ConversationReset) for e in events)
