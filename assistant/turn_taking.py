"""Turn-taking: who speaks when. One Qt-free state machine, driven by events in, acting through `Actions`.

The desktop window, the benchmarks and the tests drive the same `TurnTaking`: the microphone's segmenter
reports speech (started, paused, resumed, ended), the session worker reports turns (started, their events,
done), the avatar stream reports playback (a turn's first audio playing, everything queued played). The
controller decides what that means (start a speculative turn at a pause, release or discard it, interrupt the
reply in flight, ignore the late events of an interrupted turn, close the microphone while the avatar speaks
unless barge-in is on)
and says so through `Actions`: submit or cancel a turn, queue or stop speech, open or close the microphone,
show a state.

It holds no Qt and starts no thread. Every public method takes one lock, so it may be called from any thread,
one call at a time; actions run inside that lock (keep them short, and do not wait in them for another thread
that calls back into the controller).

States and transitions ("idle" is LOADING until the models are ready, LISTENING after):

| from                 | event                           | to          | actions                           |
|----------------------|---------------------------------|-------------|-----------------------------------|
| LOADING              | models_ready                    | LISTENING   |                                   |
| idle                 | speech_started                  | HEARING     |                                   |
| THINKING, SPEAKING   | speech_started (barge-in)       | HEARING     | interrupt                         |
| any                  | talk_pressed (push-to-talk key) | HEARING     | [discard hold], interrupt         |
| idle, HEARING        | speech_paused                   | EARLY_START | submit_turn(hold=Hold())          |
| EARLY_START          | speech_paused (again)           | EARLY_START | discard hold, submit_turn(hold)   |
| EARLY_START          | speech_resumed                  | HEARING     | discard hold (cancels its turn)   |
| EARLY_START          | utterance_ended, same utterance | THINKING    | release hold                      |
| any other            | utterance_ended                 | THINKING    | [discard hold], interrupt, submit |
| HEARING, EARLY_START | speech_discarded, mute, mode    | idle        | [discard hold]                    |
| any                  | typed                           | THINKING    | [discard hold], interrupt, submit |
| THINKING             | playback_started (live turn)    | SPEAKING    | close mic if half-duplex          |
| THINKING             | turn over, no speech queued     | idle        |                                   |
| THINKING, SPEAKING   | turn over and stream drained    | idle        | open mic if half-duplex           |
| any                  | stop                            | idle        | [discard hold], interrupt         |

interrupt = cancel_turn + stop_speech, and the events of every job submitted so far become stale.

Half-duplex is hands-free without barge-in (`barge_in=False`, the default: no echo canceller, or the user
turned it off): the microphone would hear the avatar, so it is closed while SPEAKING. With barge-in the host
cancels the avatar's echo before the VAD and the microphone stays open: speech heard while SPEAKING interrupts
the reply like any other `speech_started` (the host's guard decides what counts as speech: the VAD on the
cancelled signal, a minimum duration and a level above the residual echo). Push-to-talk never closes it.

"Turn over" is the live turn's `TurnDone`, or the worker finishing it with no words heard (`dropped`), or
its failure. SPEAKING lasts from the live turn's first audio until the stream has drained AND the turn is
over, so the microphone never reopens in the middle of a reply because one segment ended before the next.
Muting is a flag, not a state: the user may mute while the avatar thinks or speaks, and a typed question runs
its whole turn while muted; a MUTED state would have to remember, and duplicate, every state beneath it.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from functools import wraps
from typing import Any, Protocol, TypeVar

from assistant.events import SegmentReady, TranscriptReady, TurnDone, TurnEvent, Utterance
from assistant.pipeline import Hold

HANDS_FREE, PUSH_TO_TALK = "hands_free", "push_to_talk"  # the values of config `audio.mode`


class TurnState(enum.Enum):
    LOADING = "loading"  # the models are loading; the microphone is open, turns wait in the worker's queue
    LISTENING = "listening"  # idle, ready
    HEARING = "hearing"  # the user is speaking
    EARLY_START = "early_start"  # a pause in speech: a speculative reply is being made under a Hold, unseen
    THINKING = "thinking"  # a turn is running (or queued); nothing of it audible yet
    SPEAKING = "speaking"  # the reply's audio is playing, until the stream drained and the turn is over


class Actions(Protocol):
    """What the controller asks of its host (the window, a benchmark, a test's recorder)."""

    def submit_turn(
        self,
        utterance: Utterance | None = None,
        text: str | None = None,
        end_of_speech_at: float | None = None,
        hold: Hold | None = None,
    ) -> int:
        """Queue a turn; return its job number (increasing; `turn_started(job)` reports it running)."""
        ...

    def cancel_turn(self, reason: str) -> None:
        """Cancel the turn in flight and drop queued turns."""
        ...

    def speak(self, segment: SegmentReady) -> None:
        """Queue a reply segment's speech into the avatar stream."""
        ...

    def stop_speech(self, reason: str) -> None:
        """The stream fades out what is playing and drops what is queued, then idles."""
        ...

    def set_listening(self, listening: bool) -> None:
        """Open (True) or close the microphone."""
        ...

    def state_changed(self, state: TurnState, text: str) -> None:
        """Show the state; `text` is a short label for a status bar."""
        ...


_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    @wraps(method)
    def call(self: TurnTaking, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return call  # type: ignore[return-value]


class TurnTaking:
    """The conversation's turn-taking state machine. See the module docstring for states and transitions."""

    def __init__(
        self, actions: Actions, mode: str = HANDS_FREE, *, loaded: bool = False, barge_in: bool = False
    ) -> None:
        _check_mode(mode)
        self._actions = actions
        self._lock = threading.RLock()
        self.mode = mode
        self.barge_in = barge_in  # hands-free keeps listening while the avatar speaks (its echo is cancelled)
        self.muted = False
        self.loaded = loaded
        self._load_failed = False
        self._state = TurnState.LISTENING if loaded else TurnState.LOADING
        self._text = self._idle_text()
        self._listening = True  # the microphone starts open (the host opens it before the first event)
        # Jobs: numbered by the host in submission order. The live job is the one whose reply is wanted; jobs
        # numbered below _stale_before_job were interrupted and their late events are ignored.
        self._last_job = 0
        self._live_job: int | None = None
        self._live_from_speech = False  # the live turn answers an utterance (ASR runs first)
        self._heard = False  # the live turn's transcript arrived
        self._live_over = False  # TurnDone seen, or the worker ended it without one (no words, failure)
        self._over_text: str | None = None  # what idle says after it ("Ready (heard no words)")
        self._stale_before_job = 0
        self._running_job = 0  # the job the worker last reported started
        self._running_open = False  # ... and it has not finished yet
        self._job_of_turn: dict[int, int] = {}  # core turn_id -> job
        # The speculative turn started at the last pause, and the utterance it answers.
        self._hold: Hold | None = None
        self._held_utterance: Utterance | None = None
        # Speech handed to the stream and not yet reported played.
        self._queued = False
        self._last_spoken: tuple[int, int] | None = None  # (turn_id, index) of the last segment queued

    # ---- what it shows ----
    @property
    def state(self) -> TurnState:
        return self._state

    @property
    def text(self) -> str:
        return self._text

    @property
    def listening(self) -> bool:
        """Whether the controller wants the microphone open."""
        return self._listening

    @property
    def live_job(self) -> int | None:
        """The job whose reply is wanted, None when none is."""
        return self._live_job

    # ---- models ----
    @_locked
    def models_ready(self) -> None:
        self.loaded, self._load_failed = True, False
        if self._state is TurnState.LOADING:
            self._go(TurnState.LISTENING)
        else:
            self._go(self._state)  # "queued until the models load" becomes "Thinking…"

    @_locked
    def models_loading(self) -> None:
        """The models are (re)loading: turns submitted now wait for them."""
        self.loaded, self._load_failed = False, False
        if self._state in (TurnState.LOADING, TurnState.LISTENING):
            self._go(TurnState.LOADING)

    @_locked
    def models_failed(self) -> None:
        self.loaded, self._load_failed = False, True
        if self._state in (TurnState.LOADING, TurnState.LISTENING):
            self._go(TurnState.LOADING)

    # ---- the microphone ----
    @_locked
    def speech_started(self) -> None:
        """The user started speaking: a reply being made or spoken is interrupted."""
        if self._state in (TurnState.HEARING, TurnState.EARLY_START):
            return
        if self._state in (TurnState.THINKING, TurnState.SPEAKING):
            self._interrupt("new user speech")
        self._go(TurnState.HEARING)

    @_locked
    def talk_pressed(self) -> None:
        """The push-to-talk key or button went down: interrupt the reply; the user is about to speak."""
        self._discard_hold("push-to-talk")
        self._interrupt("push-to-talk")
        self._go(TurnState.HEARING)

    @_locked
    def speech_paused(self, utterance: Utterance, at_s: float) -> int:
        """A pause in speech: start the reply now under a Hold, shown only if the end of speech is confirmed.

        `at_s` (time.monotonic) is taken as the end of speech the turn's timings count from. Returns the job.
        """
        if self._state not in (TurnState.HEARING, TurnState.EARLY_START):
            self.speech_started()
        self._discard_hold("superseded")
        hold = Hold()
        job = self._submit(utterance=utterance, end_of_speech_at=at_s, hold=hold)
        self._hold, self._held_utterance = hold, utterance
        self._go(TurnState.EARLY_START)
        return job

    @_locked
    def speech_resumed(self) -> None:
        """The speaker went on after a pause: the speculative turn is discarded (it cancels itself)."""
        if self._state is not TurnState.EARLY_START:
            return
        self._discard_hold("the speaker went on")
        self._live_job = None
        self._go(TurnState.HEARING)

    @_locked
    def speech_discarded(self) -> None:
        """The segmenter dropped what it heard (too short, or reset): back to idle."""
        if self._state not in (TurnState.HEARING, TurnState.EARLY_START):
            return
        if self._discard_hold("the speech was discarded"):
            self._live_job = None
        self._go(self._idle_state())

    @_locked
    def utterance_ended(self, utterance: Utterance, at_s: float) -> int | None:
        """The end of speech is confirmed. Returns the job of a new turn, None when a held one was released.

        `at_s` (time.monotonic) is when the speech ended; the turn's timings count from it."""
        hold, held = self._hold, self._held_utterance
        self._hold = self._held_utterance = None
        if hold is not None and held is not None and _same_utterance(held, utterance):
            hold.release()  # the reply prepared since the pause is the answer: let it through
            self._go(TurnState.THINKING)
            self._finish_if_over()
            return None
        if hold is not None:
            hold.discard("a different utterance ended")
        self._interrupt("new user speech")
        job = self._submit(utterance=utterance, end_of_speech_at=at_s)
        self._go(TurnState.THINKING)
        return job

    @_locked
    def set_mode(self, mode: str) -> None:
        """Hands-free or push-to-talk; the host rebuilds its listener, so speech in progress is dropped."""
        _check_mode(mode)
        if mode == self.mode:
            return
        self.mode = mode
        if self._state in (TurnState.HEARING, TurnState.EARLY_START):
            if self._discard_hold("the microphone mode changed"):
                self._live_job = None
            self._go(self._idle_state())
        self._update_listening()  # push-to-talk reopens a microphone closed while the avatar speaks

    @_locked
    def set_barge_in(self, barge_in: bool) -> None:
        """Barge-in on (the microphone stays open while the avatar speaks) or off (half-duplex)."""
        self.barge_in = bool(barge_in)
        self._update_listening()

    @_locked
    def set_muted(self, muted: bool) -> None:
        self.muted = bool(muted)
        if self.muted and self._state in (TurnState.HEARING, TurnState.EARLY_START):
            if self._discard_hold("the microphone was muted"):
                self._live_job = None
            self._go(self._idle_state())
        else:
            self._go(self._state)  # the idle text says whether the microphone is muted

    # ---- the user's other actions ----
    @_locked
    def typed(self, text: str) -> int | None:
        """A typed question: interrupts the reply in flight. Returns its job, None for blank text."""
        text = text.strip()
        if not text:
            return None
        self._discard_hold("a question was typed")
        self._interrupt("new question")
        job = self._submit(text=text)
        self._go(TurnState.THINKING)
        return job

    @_locked
    def stop(self, reason: str = "stopped by the user") -> None:
        """The Stop button: cancel the turn, silence the avatar, back to idle."""
        self._discard_hold(reason)
        self._interrupt(reason)
        self._go(self._idle_state())

    # ---- the session worker ----
    @_locked
    def turn_started(self, job: int) -> None:
        """The worker began running `job` (its events follow, in order)."""
        self._running_job, self._running_open = job, True

    @_locked
    def turn_event(self, event: TurnEvent) -> bool:
        """Any event of a turn; False when it belongs to a turn that is no longer wanted (ignore it)."""
        return self._track(event)

    @_locked
    def segment_ready(self, event: SegmentReady) -> bool:
        """A reply segment is ready: queued into the stream (`speak`) unless its turn was interrupted."""
        if not self._track(event):
            return False
        self._actions.speak(event)
        self._queued = True
        self._last_spoken = (event.turn_id, event.index)
        return True

    @_locked
    def turn_done(self, event: TurnDone) -> bool:
        """The turn's last event. False when it belongs to a turn that is no longer wanted."""
        if not self._track(event):
            return False
        self._end_live(None)
        return True

    @_locked
    def turn_finished(self, result: Any) -> None:
        """The worker returned a `TurnResult`. Only a dropped turn (no words heard: no TurnDone) ends here."""
        self._running_open = False
        job = self._job_of_turn.get(getattr(result, "turn_id", -1), self._running_job)
        if job == self._live_job and getattr(result, "dropped", False):
            self._end_live("Ready (heard no words)")

    @_locked
    def turn_failed(self, message: str = "") -> None:
        """The worker could not run a turn. The report names no job: it is the running one if a job is
        running, else one that failed before it started (models not loaded), which is the live one:
        interrupts drop the queued turns before it, and a discarded speculative turn is skipped unreported."""
        job = self._running_job if self._running_open else self._live_job
        self._running_open = False
        if job is not None and job == self._live_job:
            self._end_live("Turn failed")

    # ---- the avatar stream ----
    @_locked
    def playback_started(self, turn_id: int) -> None:
        """The stream began playing a turn's first audio."""
        if self._job_of_turn.get(turn_id) != self._live_job or self._live_job is None:
            return
        if self._state is TurnState.THINKING:
            self._go(TurnState.SPEAKING)

    @_locked
    def playback_drained(self, turn_id: int | None = None, index: int | None = None) -> None:
        """The stream has played all speech queued into it. If the stream says which segment it played last,
        a report that crossed a newer `speak` (sent before that segment arrived) is recognised and ignored."""
        if turn_id is not None and self._last_spoken is not None and (turn_id, index) != self._last_spoken:
            return
        self._queued = False
        self._finish_if_over()

    # ---- internals ----
    def _submit(self, **turn: Any) -> int:
        job = int(self._actions.submit_turn(**turn))
        self._last_job = max(self._last_job, job)
        self._live_job = job
        self._live_from_speech = turn.get("utterance") is not None
        self._heard = False
        self._live_over, self._over_text = False, None
        return job

    def _interrupt(self, reason: str) -> None:
        """Cancel the turn in flight and the queued ones, silence the stream, ignore the old turns' events."""
        self._stale_before_job = self._last_job + 1
        self._live_job = None
        self._live_over, self._over_text = False, None
        self._actions.cancel_turn(reason)
        self._actions.stop_speech(reason)
        self._queued = False
        self._last_spoken = None

    def _discard_hold(self, reason: str) -> bool:
        hold, self._hold, self._held_utterance = self._hold, None, None
        if hold is None:
            return False
        hold.discard(reason)
        return True

    def _track(self, event: TurnEvent) -> bool:
        """Tie a turn's event to its job; True when that job's reply is the one wanted."""
        job = self._job_of_turn.setdefault(event.turn_id, self._running_job)
        live = job >= self._stale_before_job and job == self._live_job
        if live and isinstance(event, TranscriptReady) and not self._heard:
            self._heard = True
            if self._state is TurnState.THINKING:
                self._go(TurnState.THINKING)
        return live

    def _end_live(self, idle_text: str | None) -> None:
        self._live_over, self._over_text = True, idle_text
        self._finish_if_over()

    def _finish_if_over(self) -> None:
        """Back to idle once the live turn is over and the stream has played all of it. A speculative turn
        may be over while still held (EARLY_START): it ends here once released."""
        if not self._live_over or self._queued:
            return
        if self._state in (TurnState.THINKING, TurnState.SPEAKING):
            self._live_job = None
            self._go(self._idle_state(), self._over_text)

    def _idle_state(self) -> TurnState:
        return TurnState.LISTENING if self.loaded else TurnState.LOADING

    def _idle_text(self) -> str:
        if not self.loaded:
            return "Models not loaded" if self._load_failed else "Loading models…"
        return "Ready (microphone muted)" if self.muted else "Ready"

    def _state_text(self, state: TurnState) -> str:
        if state in (TurnState.LOADING, TurnState.LISTENING):
            return self._idle_text()
        if state in (TurnState.HEARING, TurnState.EARLY_START):
            return "Listening…"  # a speculative reply stays unseen until the end of speech is confirmed
        if state is TurnState.THINKING:
            if not self.loaded:
                return "Queued until the models load"
            return "Recognising speech…" if self._live_from_speech and not self._heard else "Thinking…"
        return "Speaking"

    def _go(self, state: TurnState, text: str | None = None) -> None:
        text = text or self._state_text(state)
        if (state, text) != (self._state, self._text):
            self._state, self._text = state, text
            self._actions.state_changed(state, text)
        self._update_listening()

    def _update_listening(self) -> None:
        """Half-duplex: without echo cancellation the microphone would hear the avatar, so in hands-free mode
        without barge-in it is closed while SPEAKING. Push-to-talk keeps it open (the key says who is talking)."""
        half_duplex = self.mode == HANDS_FREE and not self.barge_in
        listening = not self.muted and not (half_duplex and self._state is TurnState.SPEAKING)
        if listening != self._listening:
            self._listening = listening
            self._actions.set_listening(listening)


def _same_utterance(held: Utterance, ended: Utterance) -> bool:
    """Whether the utterance that ended is the one paused on. The segmenter sends SpeechResumed before any other
    ending, and a reset (mute, mode) is a SpeechDiscarded, so the stretch that ends after a pause is the paused
    one: same start on the capture clock. Its end may lie later: at the pause the segmenter keeps all of the
    early_start_ms of silence, at the end only tail_ms of it, so with early_start_ms < tail_ms the final
    utterance carries up to tail_ms - early_start_ms more silence (and the same words)."""
    return (held.source, held.start_s) == (ended.source, ended.start_s) and ended.end_s >= held.end_s


def _check_mode(mode: str) -> None:
    if mode not in (HANDS_FREE, PUSH_TO_TALK):
        raise ValueError(f"unknown microphone mode {mode!r}: use {HANDS_FREE!r} or {PUSH_TO_TALK!r}")
