"""One browser's turns, run in order on a thread of their own: what `TurnTaking` submits, through the session's
`TurnRunner` (whose stages queue for the shared models: `turn_queue`). Qt-free twin of the desktop app's session
worker, without the model loading (the server loaded the models once for everybody).

Needs nothing beyond the pipeline.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from assistant.events import Utterance
from assistant.pipeline import Hold, TurnResult, TurnRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnJob:
    number: int
    utterance: Utterance | None
    text: str | None
    end_of_speech_at: float | None
    hold: Hold | None


@dataclass
class WorkerCallbacks:
    started: Callable[[int], None]  # job number
    finished: Callable[[TurnResult], None]
    failed: Callable[[str], None]  # what went wrong, for the person


_STOP = object()


class TurnWorker:
    def __init__(self, runner: TurnRunner, callbacks: WorkerCallbacks, name: str = "serve-turns") -> None:
        self.runner = runner
        self.callbacks = callbacks
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._next = 1
        self._number_lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(
        self,
        utterance: Utterance | None = None,
        text: str | None = None,
        end_of_speech_at: float | None = None,
        hold: Hold | None = None,
    ) -> int:
        with self._number_lock:
            number = self._next
            self._next += 1
        if not self._stopping:
            self._jobs.put(TurnJob(number, utterance, text, end_of_speech_at, hold))
        return number

    def cancel(self, reason: str) -> None:
        """Cancel the turn in flight and drop those waiting (a held one is discarded: its events never show)."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if isinstance(job, TurnJob) and job.hold is not None:
                job.hold.discard(reason)
        self.runner.cancel_current(reason)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            if job.hold is not None and job.hold.state == "discarded":
                continue  # a speculative turn the speaker talked over before it started
            self.callbacks.started(job.number)
            try:
                result = self.runner.run(
                    utterance=job.utterance,
                    text=job.text,
                    end_of_speech_at=job.end_of_speech_at,
                    hold=job.hold,
                )
            except Exception as e:  # one failed turn must not end the conversation
                log.exception("a turn failed")
                self.callbacks.failed(f"{type(e).__name__}: {e}")
                continue
            self.callbacks.finished(result)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping = True
        self.cancel("the session is closing")
        self._jobs.put(_STOP)
        self._thread.join(timeout_s)
