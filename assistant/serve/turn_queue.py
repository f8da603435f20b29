"""The turn queue: browsers share the loaded models fairly, one call at a time per model, first come first served.

Each model (speech recognition, the language model, the voice) has a `FairLock`: a FIFO lock, so a session that
asks while another one holds the model is served next, before anyone who asks later (a plain lock lets one busy
session take it again and again). The sessions' turns still overlap across models: one browser's reply is being
spoken (TTS) while another's is being written (LLM). On a few-core machine that is what keeps every session moving
without running two generations at once, which would only make both slower.

`SharedModels` holds the loaded engines; `for_session()` gives one browser its `Stages`: the shared recogniser and
voice behind their locks, and a conversation of its own (its history) over the shared language model.

Needs nothing beyond the engines it wraps.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from assistant.cancel import CancelToken
from assistant.errors import Cancelled
from assistant.events import ReplySentence, SpeechAudio, Transcript, Utterance
from assistant.pipeline import Stages

POLL_S = 0.05  # a waiter checks its cancel token this often


@dataclass
class LockStats:
    acquired: int = 0
    waited_s_total: float = 0.0
    waited_s_max: float = 0.0


class FairLock:
    """A FIFO lock: waiters get it in the order they asked. `acquire(cancel)` gives up when the token is cancelled."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._held = False
        self.stats = LockStats()

    @property
    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def acquire(self, cancel: CancelToken | None = None) -> bool:
        """Wait for the lock in turn; False when `cancel` was cancelled first (then nothing is held)."""
        me = object()
        asked = time.monotonic()
        with self._cond:
            self._waiting.append(me)
            while self._held or self._waiting[0] is not me:
                if cancel is not None and cancel.cancelled:
                    self._waiting.remove(me)
                    self._cond.notify_all()  # the next in line may be free to go now
                    return False
                self._cond.wait(POLL_S if cancel is not None else None)
            self._waiting.popleft()
            self._held = True
            waited = time.monotonic() - asked
            self.stats.acquired += 1
            self.stats.waited_s_total += waited
            self.stats.waited_s_max = max(self.stats.waited_s_max, waited)
        return True

    def release(self) -> None:
        with self._cond:
            if not self._held:
                raise RuntimeError(f"{self.name}: release() without acquire()")
            self._held = False
            self._cond.notify_all()

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class QueuedRecognizer:
    """The shared speech recogniser, one utterance at a time."""

    def __init__(self, asr: Any, lock: FairLock) -> None:
        self._asr, self._lock = asr, lock
        self.name = getattr(asr, "name", "asr")

    def transcribe(self, utterance: Utterance) -> Transcript | None:
        with self._lock:
            return self._asr.transcribe(utterance)


class QueuedSpeaker:
    """The shared voice, one sentence at a time (the sessions' sentences interleave in the order they come)."""

    def __init__(self, tts: Any, lock: FairLock) -> None:
        self._tts, self._lock = tts, lock
        self.name = getattr(tts, "name", "tts")

    def synthesize(self, text: str, out_path: Path) -> SpeechAudio:
        with self._lock:
            return self._tts.synthesize(text, out_path)


class QueuedConversation:
    """One browser's conversation (its own history) over the shared language model, one reply at a time.

    The model is held from the reply's first token until the generator closes; a reply cancelled while waiting
    for its turn never takes it."""

    def __init__(self, dialogue: Any, lock: FairLock) -> None:
        self._dialogue, self._lock = dialogue, lock
        self.name = getattr(dialogue, "name", "llm")

    def stream_reply(self, user_text: str, cancel: CancelToken) -> Iterator[ReplySentence]:
        if not self._lock.acquire(cancel):
            raise Cancelled(cancel.reason or "cancelled while waiting for the language model")
        try:
            replies = self._dialogue.stream_reply(user_text, cancel)
            try:
                yield from replies
            finally:
                replies.close()
        finally:
            self._lock.release()

    @property
    def history(self) -> tuple[Any, ...]:
        return tuple(getattr(self._dialogue, "history", ()))

    def reset(self) -> None:
        self._dialogue.reset()

    def forget_last_turn(self, user_text: str) -> bool:
        return bool(self._dialogue.forget_last_turn(user_text))

    def amend_reply(self, user_text: str, spoken_text: str) -> bool:
        return bool(self._dialogue.amend_reply(user_text, spoken_text))


@dataclass
class SharedModels:
    """The engines loaded once for every browser, and the lock in front of each."""

    asr: Any
    dialogue: Any  # a loaded DialogueManager: each session gets `new_conversation()` of it
    tts: Any
    locks: dict[str, FairLock] = field(
        default_factory=lambda: {name: FairLock(name) for name in ("asr", "llm", "tts")}
    )

    def for_session(self) -> Stages:
        """A browser's stages: shared models behind their locks, a history of its own. No talking head: the
        session's live stream animates the speech."""
        return Stages(
            QueuedRecognizer(self.asr, self.locks["asr"]),
            QueuedConversation(self.dialogue.new_conversation(), self.locks["llm"]),
            QueuedSpeaker(self.tts, self.locks["tts"]),
            None,
        )
