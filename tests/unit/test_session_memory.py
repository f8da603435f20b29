"""What a long session must not accumulate: the C heaps are trimmed after every turn, and the map of questions kept
for cutting a reply short holds only the newest turns, while a cut of a recent turn still reaches the history."""

from __future__ import annotations

from pathlib import Path

import assistant.session as session_module
from assistant.session import AMENDABLE_TURNS, Session
from tests.unit.test_pipeline import FakeASR, FakeLLM, FakeTTS
from tests.unit.test_profile import settings_for


class AmendableLLM(FakeLLM):
    def __init__(self) -> None:
        super().__init__(["Paris is the capital.", "It is in France."])
        self.amended: list[tuple[str, str]] = []

    def amend_reply(self, user_text: str, spoken_text: str) -> bool:
        self.amended.append((user_text, spoken_text))
        return True


def _session(tmp_path: Path) -> tuple[Session, AmendableLLM]:
    session = Session(settings_for(tmp_path), probe=lambda: None, llm_gpu_probe=lambda: False)
    llm = AmendableLLM()
    session.asr, session.dialogue, session.tts = FakeASR(), llm, FakeTTS()
    session._make_runner()
    return session, llm


def test_the_heaps_are_trimmed_after_every_turn(tmp_path: Path, monkeypatch) -> None:
    trims: list[int] = []
    monkeypatch.setattr(session_module, "release_free_memory", lambda: trims.append(1) or True)
    session, _ = _session(tmp_path)
    for i in range(5):
        session.run_turn(text=f"question {i}")
    assert len(trims) == 5


def test_only_the_newest_turns_can_be_amended_and_older_ones_are_forgotten(tmp_path: Path) -> None:
    session, llm = _session(tmp_path)
    ids = [session.run_turn(text=f"question {i}").turn_id for i in range(3 * AMENDABLE_TURNS)]
    assert len(session._user_text_of_turn) <= AMENDABLE_TURNS  # not one entry per turn ever asked
    session.amend_spoken_reply(ids[-1], "Paris is")
    assert llm.amended == [(f"question {3 * AMENDABLE_TURNS - 1}", "Paris is")]
    session.amend_spoken_reply(ids[0], "too late")  # a reply that finished playing long ago: nothing to cut
    assert len(llm.amended) == 1 and len(session._amendments) <= 1
