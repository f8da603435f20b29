"""The turn queue: a FIFO lock per shared model, and one conversation (history) per browser over one model."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from assistant.cancel import CancelToken
from assistant.dialogue import DialogueManager
from assistant.errors import Cancelled
from assistant.events import SpeechAudio
from assistant.serve.turn_queue import FairLock, QueuedConversation, SharedModels
from tests.unit.test_dialogue_history import SYSTEM, FakeLLM, tokens_of


def wait_until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_waiters_get_the_lock_in_the_order_they_asked() -> None:
    lock = FairLock("llm")
    order: list[int] = []
    lock.acquire()
    threads = []
    for i in range(5):
        t = threading.Thread(target=lambda i=i: (lock.acquire(), order.append(i), lock.release()))
        t.start()
        wait_until(lambda i=i: lock.waiting == i + 1)  # each asks after the one before
        threads.append(t)
    lock.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]
    assert lock.stats.acquired == 6


def test_a_cancelled_waiter_gives_up_and_the_next_one_goes() -> None:
    lock = FairLock("tts")
    lock.acquire()
    token = CancelToken()
    results: dict[str, bool] = {}
    first = threading.Thread(target=lambda: results.update(first=lock.acquire(token)))
    first.start()
    wait_until(lambda: lock.waiting == 1)
    second = threading.Thread(target=lambda: results.update(second=lock.acquire()) or lock.release())
    second.start()
    wait_until(lambda: lock.waiting == 2)
    token.cancel("new user speech")
    first.join(5)
    assert results == {"first": False}
    lock.release()
    second.join(5)
    assert results["second"] is True and lock.waiting == 0
    with pytest.raises(RuntimeError, match="without acquire"):
        lock.release()


def shared(script: str) -> tuple[SharedModels, FakeLLM]:
    llm = FakeLLM(tokens_of(script))
    return SharedModels(
        asr=object(), dialogue=DialogueManager("unused.gguf", SYSTEM, llm=llm), tts=object()
    ), llm


def reply(conversation, text: str) -> str:
    return " ".join(s.text for s in conversation.stream_reply(text, CancelToken()))


def test_each_session_has_its_own_history_over_the_one_model() -> None:
    models, llm = shared("Hello there.")
    a, b = models.for_session(), models.for_session()
    assert reply(a.dialogue, "I am Ann.") == "Hello there."
    assert reply(b.dialogue, "I am Bob.") == "Hello there."
    assert reply(a.dialogue, "Who am I?") == "Hello there."
    assert [t.user_text for t in a.dialogue.history] == ["I am Ann.", "Who am I?"]
    assert [t.user_text for t in b.dialogue.history] == ["I am Bob."]
    asked = [[m["content"] for m in call if m["role"] == "user"] for call in llm.calls]
    assert asked == [
        ["I am Ann."],
        ["I am Bob."],
        ["I am Ann.", "Who am I?"],
    ]  # Bob's words never in Ann's prompt
    a.dialogue.reset()
    assert a.dialogue.history == () and len(b.dialogue.history) == 1


def test_a_reply_waits_for_the_model_and_a_cancel_while_waiting_never_takes_it() -> None:
    models, llm = shared("Hello there.")
    conversation = models.for_session().dialogue
    assert isinstance(conversation, QueuedConversation)
    models.locks["llm"].acquire()  # another session is generating
    token = CancelToken()
    outcome: list[BaseException] = []

    def ask() -> None:
        try:
            list(conversation.stream_reply("Hi", token))
        except Cancelled as e:
            outcome.append(e)

    t = threading.Thread(target=ask)
    t.start()
    wait_until(lambda: models.locks["llm"].waiting == 1)
    token.cancel("the user stopped it")
    t.join(5)
    assert outcome and "stopped" in str(outcome[0])
    assert llm.calls == []
    models.locks["llm"].release()
    assert reply(conversation, "Hi") == "Hello there."


def test_the_voice_and_the_recogniser_are_used_one_call_at_a_time(tmp_path: Path) -> None:
    inside, most = [0], [0]

    class SlowVoice:
        name = "fake"

        def synthesize(self, text: str, out_path: Path) -> SpeechAudio:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            time.sleep(0.02)
            inside[0] -= 1
            return SpeechAudio(out_path, 16000, 0.1, "fake", text)

    models = SharedModels(
        asr=object(), dialogue=DialogueManager("x.gguf", SYSTEM, llm=FakeLLM([])), tts=SlowVoice()
    )
    voices = [models.for_session().tts for _ in range(4)]
    threads = [
        threading.Thread(target=v.synthesize, args=("hi", tmp_path / f"{i}.wav"))
        for i, v in enumerate(voices)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert most[0] == 1 and models.locks["tts"].stats.acquired == 4
