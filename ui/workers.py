"""QThread workers: the session thread that loads models and runs turns, and a one-shot call thread.

`SessionWorker` owns the core `Session`: it builds it, loads the models (reporting progress), then runs jobs
(turns, reconfigurations) one at a time, in the order they were submitted, on its own thread. The turn itself
fans out into the pipeline's TTS and talking-head threads. Results come back as Qt signals, queued to the GUI
thread; cancelling the turn in flight is a direct, thread-safe call. `CallWorker` runs one blocking function
(face detection for the settings preview, listing audio devices) off the GUI thread.

Needs PySide6; the Session is passed in as a factory so tests can give a fake one.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QThread, Signal

from assistant.config import Settings
from assistant.events import TurnEvent, Utterance
from assistant.pipeline import Hold

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, float], None]

# CPython hands the GIL over every 5 ms by default; with three pipeline threads running Python glue code,
# the GUI thread can then wait 100+ ms for its turn (measured in tests/ui/test_stalls.py, loaded 2-core box).
# 1 ms keeps its waits to a few handovers; the models themselves run in native code without the GIL.
GUI_SWITCH_INTERVAL_S = 0.001


WORKER_NICENESS = (
    5  # Linux: the session thread and the pipeline threads it starts (they inherit it) yield to the GUI
)


def lower_this_thread_priority(increment: int = WORKER_NICENESS) -> None:
    """Raise the nice value of the calling thread only (Linux keeps one per thread); a no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except OSError as e:  # not allowed in some sandboxes: only responsiveness suffers
        log.debug("cannot lower the worker thread priority: %s", e)


def favour_gui_thread() -> None:
    """Shorten the GIL switch interval (process-wide): the event loop gets the GIL soon while workers run."""
    if sys.getswitchinterval() > GUI_SWITCH_INTERVAL_S:
        sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)


class SessionLike(Protocol):
    """The part of assistant.session.Session the desktop app uses."""

    resolved: Any  # assistant.profile.ResolvedSettings

    def load(self, progress: ProgressCallback | None = None) -> None: ...

    def run_turn(
        self,
        utterance: Utterance | None = None,
        text: str | None = None,
        end_of_speech_at: float | None = None,
    ) -> Any: ...

    def cancel_current(self, reason: str = "new user speech") -> bool: ...

    def reset_conversation(self) -> None:
        """Forget the dialogue history (a new conversation)."""
        ...

    def amend_spoken_reply(self, turn_id: int, spoken_text: str) -> None:
        """The user cut reply `turn_id`: the history keeps only `spoken_text`, what was really said."""
        ...

    def engines_summary(self) -> dict[str, str]: ...

    def reconfigure(self, settings: Settings, progress: ProgressCallback | None = None) -> list[str]: ...

    def avatar_face_preview(self, image_path: str | Path) -> Any: ...

    def close(self) -> None: ...


SessionFactory = Callable[[Settings, Callable[[TurnEvent], None]], SessionLike]


@dataclass(frozen=True)
class _TurnJob:
    number: int
    utterance: Utterance | None
    text: str | None
    end_of_speech_at: float | None
    hold: Hold | None = None  # a speculative turn (started at a pause): shown once the hold is released


@dataclass(frozen=True)
class _ReconfigureJob:
    settings: Settings


_STOP = object()


class SessionWorker(QThread):
    """Builds and loads the Session, then runs submitted jobs in order. Signals arrive on the GUI thread."""

    progress = Signal(str, float)  # what is loading, fraction 0..1
    loaded = Signal(object)  # engines_summary() dict
    load_failed = Signal(str)
    turn_started = Signal(int, object)  # job number, the typed text (str) or the Utterance
    turn_finished = Signal(object)  # assistant.pipeline.TurnResult
    turn_failed = Signal(str)
    reconfigured = Signal(list, object)  # what was reloaded, engines_summary() dict
    reconfigure_failed = Signal(str)
    busy_changed = Signal(bool)

    def __init__(
        self, factory: SessionFactory, settings: Settings, on_event: Callable[[TurnEvent], None]
    ) -> None:
        super().__init__()
        self.setObjectName("session-worker")
        self._factory = factory
        self._settings = settings
        self._on_event = on_event
        self._jobs: queue.Queue[object] = queue.Queue()
        self.session: SessionLike | None = None
        self.ready = False
        self.load_error: str | None = None
        self._stopping = False
        self.next_job_number = 1  # turn jobs are numbered in submission order

    # ---- GUI thread ----
    def submit_turn(
        self,
        utterance: Utterance | None = None,
        text: str | None = None,
        end_of_speech_at: float | None = None,
        hold: Hold | None = None,
    ) -> int:
        """Queue a turn; returns its job number (turn_started reports it when the turn begins)."""
        number = self.next_job_number
        self.next_job_number += 1
        if not self._stopping:
            self._jobs.put(_TurnJob(number, utterance, text, end_of_speech_at, hold))
        return number

    def submit_reconfigure(self, settings: Settings) -> None:
        if not self._stopping:
            self._jobs.put(_ReconfigureJob(settings))

    @property
    def pending_jobs(self) -> int:
        return self._jobs.qsize()

    def cancel_current(self, reason: str = "new user speech") -> bool:
        """Cancel the turn in flight (thread-safe: it sets the turn's cancel token)."""
        session = self.session
        return bool(session is not None and session.cancel_current(reason))

    def drop_pending_turns(self) -> int:
        """Forget turns waiting behind the current job (the user spoke again, or stopped the reply)."""
        kept, dropped = [], 0
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if isinstance(job, _TurnJob):
                dropped += 1
            else:
                kept.append(job)
        for job in kept:
            self._jobs.put(job)
        return dropped

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Cancel the turn in flight, drop waiting jobs, close the Session on its thread, wait for it."""
        self._stopping = True
        self.drop_pending_turns()
        self.cancel_current("the window is closing")
        self._jobs.put(_STOP)
        if not self.isRunning():
            return True
        finished = self.wait(timeout_ms)
        if not finished:
            log.error("the session worker did not stop within %d ms", timeout_ms)
        return finished

    # ---- the worker thread ----
    def _report_progress(self, what: str, fraction: float) -> None:
        self.progress.emit(str(what), float(fraction))

    def run(self) -> None:  # noqa: C901 - one loop, one branch per job type
        lower_this_thread_priority()
        try:
            self.progress.emit("Loading models", 0.0)
            self.session = self._factory(self._settings, self._on_event)
            self.session.load(self._report_progress)
            self.ready = True
            self.loaded.emit(self.session.engines_summary())
        except Exception as e:  # noqa: BLE001 - shown to the user, the window stays usable
            log.exception("loading the session failed")
            self.load_error = str(e)
            self.load_failed.emit(str(e))
        while True:
            job = self._jobs.get()
            if job is _STOP:
                break
            self.busy_changed.emit(True)
            try:
                if isinstance(job, _TurnJob):
                    self._run_turn(job)
                elif isinstance(job, _ReconfigureJob):
                    self._run_reconfigure(job)
            finally:
                self.busy_changed.emit(False)
        self._close_session()

    def _run_turn(self, job: _TurnJob) -> None:
        if job.hold is not None and job.hold.state == "discarded":
            return  # a speculative turn the speaker talked over before it started: nothing to do
        if self.session is None or not self.ready:
            self.turn_failed.emit(
                f"The models are not loaded ({self.load_error or 'still loading'}); "
                "fix the settings and apply them to load again"
            )
            return
        # Emitted on this thread before the turn's first event, so the window sees them in this order.
        self.turn_started.emit(job.number, job.text if job.text is not None else job.utterance)
        try:
            extra = {"hold": job.hold} if job.hold is not None else {}
            result = self.session.run_turn(
                utterance=job.utterance, text=job.text, end_of_speech_at=job.end_of_speech_at, **extra
            )
        except Exception as e:  # noqa: BLE001 - a failed turn is shown, the next one may work
            log.exception("turn failed")
            self.turn_failed.emit(str(e))
            return
        self.turn_finished.emit(result)

    def _run_reconfigure(self, job: _ReconfigureJob) -> None:
        try:
            if self.session is None:
                self.session = self._factory(job.settings, self._on_event)
                self.session.load(self._report_progress)
                reloaded = ["all"]
            elif not self.ready:
                # The first load failed: the new settings may fix it. Load everything again.
                self.session.close()
                self.session = self._factory(job.settings, self._on_event)
                self.session.load(self._report_progress)
                reloaded = ["all"]
            else:
                reloaded = list(self.session.reconfigure(job.settings, self._report_progress))
            self.ready = True
            self.load_error = None
            self.reconfigured.emit(reloaded, self.session.engines_summary())
        except Exception as e:  # noqa: BLE001
            log.exception("applying settings failed")
            self.reconfigure_failed.emit(str(e))

    def _close_session(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        start = time.monotonic()
        try:
            session.close()
        except Exception:  # noqa: BLE001 - closing must go on
            log.exception("closing the session failed")
        log.info("session closed in %.2f s", time.monotonic() - start)


class CallWorker(QThread):
    """Run `fn(*args)` once on its own thread; `done(result)` or `failed(message)` on the GUI thread."""

    done = Signal(object)
    failed = Signal(str)

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        super().__init__()
        self._fn = fn
        self._args = args

    def run(self) -> None:
        try:
            result = self._fn(*self._args)
        except Exception as e:  # noqa: BLE001 - the caller shows the message
            self.failed.emit(str(e))
            return
        self.done.emit(result)
