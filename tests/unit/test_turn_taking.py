"""TurnTaking: events in, states and actions out, through a recording fake of `Actions`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.events import SegmentReady, SpeechAudio, Transcript, TranscriptReady, TurnDone, Utterance
from assistant.pipeline import Hold, TurnResult
from assistant.turn_taking import HANDS_FREE, PUSH_TO_TALK, TurnState, TurnTaking

S = TurnState


class Recorder:
    """Records every action; numbers jobs 1, 2, 3, ... like the session worker."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.holds: dict[int, Hold | None] = {}
        self.states: list[TurnState] = []

    def submit_turn(self, utterance=None, text=None, end_of_speech_at=None, hold=None) -> int:
        job = len(self.holds) + 1
        self.holds[job] = hold
        what = text if text is not None else utterance
        self.calls.append(("submit", job, what, end_of_speech_at, hold is not None))
        return job

    def cancel_turn(self, reason: str) -> None:
        self.calls.append(("cancel_turn", reason))

    def speak(self, segment: SegmentReady) -> None:
        self.calls.append(("speak", segment.turn_id, segment.index))

    def stop_speech(self, reason: str) -> None:
        self.calls.append(("stop_speech", reason))

    def set_listening(self, listening: bool) -> None:
        self.calls.append(("listening", listening))

    def state_changed(self, state: TurnState, text: str) -> None:
        self.states.append(state)
        self.calls.append(("state", state, text))

    def take(self) -> list[tuple]:
        """The calls since the last take, state changes left out (they are checked through `states`)."""
        calls, self.calls = self.calls, []
        return [c for c in calls if c[0] != "state"]

    def names(self) -> list[str]:
        return [c[0] for c in self.take()]


def utterance(start_s: float = 1.0, end_s: float = 2.5) -> Utterance:
    n = int((end_s - start_s) * 16000)
    return Utterance(np.zeros(n, np.float32), 16000, start_s, end_s)


def segment(turn_id: int, index: int) -> SegmentReady:
    speech = SpeechAudio(Path(f"/tmp/seg-{turn_id}-{index}.wav"), 22050, 1.2, "fake")
    return SegmentReady(turn_id, 0.0, index, speech, None)


def transcript(turn_id: int, text: str = "what is the capital of france") -> TranscriptReady:
    return TranscriptReady(turn_id, 0.0, Transcript(text, "en", 0.0, 1.5, 0.01, "fake", 0.2))


def done(turn_id: int, segments: int = 2, cancelled: bool = False) -> TurnDone:
    return TurnDone(turn_id, 0.0, "q", "a", segments, cancelled, {}, {})


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def tt(rec: Recorder) -> TurnTaking:
    t = TurnTaking(rec, HANDS_FREE)
    t.models_ready()
    rec.take()
    rec.states.clear()
    return t


def test_starts_loading_and_becomes_ready(rec: Recorder) -> None:
    t = TurnTaking(rec)
    assert (t.state, t.text) == (S.LOADING, "Loading models…")
    t.models_ready()
    assert (t.state, t.text) == (S.LISTENING, "Ready")
    assert rec.take() == []  # the microphone was open all along


def test_full_spoken_turn(tt: TurnTaking, rec: Recorder) -> None:
    tt.speech_started()
    assert (tt.state, tt.text) == (S.HEARING, "Listening…")
    u = utterance()
    assert tt.utterance_ended(u, 100.0) == 1
    assert rec.take() == [
        ("cancel_turn", "new user speech"), ("stop_speech", "new user speech"), ("submit", 1, u, 100.0, False)
    ]  # fmt: skip
    assert (tt.state, tt.text) == (S.THINKING, "Recognising speech…")
    tt.turn_started(1)
    assert tt.turn_event(transcript(7))  # core turn 7 is job 1
    assert tt.text == "Thinking…"
    assert tt.segment_ready(segment(7, 0))
    assert tt.state is S.THINKING  # queued, not yet audible
    tt.playback_started(7)
    assert (tt.state, tt.text) == (S.SPEAKING, "Speaking")
    assert rec.take() == [("speak", 7, 0), ("listening", False)]  # half-duplex: closed while it speaks
    assert tt.segment_ready(segment(7, 1))
    assert tt.turn_done(done(7))
    assert tt.state is S.SPEAKING  # the last segment is still playing
    tt.playback_drained(7, 1)
    assert (tt.state, tt.text) == (S.LISTENING, "Ready")
    assert rec.take() == [("speak", 7, 1), ("listening", True)]
    assert rec.states == [S.HEARING, S.THINKING, S.THINKING, S.SPEAKING, S.LISTENING]
    assert tt.live_job is None


def test_early_start_released_when_the_same_utterance_ends(tt: TurnTaking, rec: Recorder) -> None:
    tt.speech_started()
    u = utterance()
    assert tt.speech_paused(u, 50.0) == 1
    hold = rec.holds[1]
    assert rec.take() == [("submit", 1, u, 50.0, True)]  # no interrupt: nothing was in flight
    assert (tt.state, tt.text) == (S.EARLY_START, "Listening…")  # the speculative reply stays unseen
    assert hold is not None and hold.state == "held"
    tt.turn_started(1)
    # The utterance that ends is the paused one; with early_start_ms < tail_ms it keeps a little more silence.
    assert tt.utterance_ended(utterance(1.0, 2.56), 50.4) is None
    assert hold.state == "released"
    assert rec.take() == []  # released: no new turn, nothing cancelled
    assert tt.state is S.THINKING
    assert tt.segment_ready(segment(3, 0))  # the held events now arrive
    tt.playback_started(3)
    tt.turn_done(done(3, segments=1))
    tt.playback_drained(3, 0)
    assert tt.state is S.LISTENING
    assert rec.take() == [("speak", 3, 0), ("listening", False), ("listening", True)]


def test_early_start_discarded_when_speech_resumes(tt: TurnTaking, rec: Recorder) -> None:
    tt.speech_started()
    tt.speech_paused(utterance(1.0, 2.0), 50.0)
    hold = rec.holds[1]
    rec.take()
    tt.speech_resumed()
    assert hold is not None and hold.state == "discarded" and hold.cancel.cancelled
    assert tt.state is S.HEARING and tt.live_job is None
    assert rec.take() == []  # the hold cancels its own turn
    longer = utterance(1.0, 4.0)
    assert tt.utterance_ended(longer, 60.0) == 2
    assert rec.take()[-1] == ("submit", 2, longer, 60.0, False)
    assert tt.state is S.THINKING


def test_early_start_discarded_when_a_different_utterance_ends(tt: TurnTaking, rec: Recorder) -> None:
    tt.speech_started()
    tt.speech_paused(utterance(1.0, 2.0), 50.0)
    hold = rec.holds[1]
    rec.take()
    other = utterance(3.0, 4.2)  # another stretch (the segmenter was reset in between)
    assert tt.utterance_ended(other, 51.0) == 2
    assert hold is not None and hold.state == "discarded"
    assert rec.names() == ["cancel_turn", "stop_speech", "submit"]


def test_a_turn_that_heard_no_words_while_held_ends_at_release(tt: TurnTaking, rec: Recorder) -> None:
    tt.speech_started()
    tt.speech_paused(utterance(), 50.0)
    tt.turn_started(1)
    tt.turn_finished(TurnResult(4, "", "", dropped=True))  # finished while held: no TurnDone will come
    assert tt.state is S.EARLY_START
    tt.utterance_ended(utterance(), 50.4)
    assert (tt.state, tt.text) == (S.LISTENING, "Ready (heard no words)")


def test_new_utterance_while_speaking_interrupts(tt: TurnTaking, rec: Recorder) -> None:
    first = tt.typed("tell me a long story")
    tt.turn_started(first)
    tt.segment_ready(segment(1, 0))
    tt.playback_started(1)
    assert tt.state is S.SPEAKING
    rec.take()
    u = utterance(10.0, 11.0)
    second = tt.utterance_ended(u, 200.0)
    assert rec.take() == [
        ("cancel_turn", "new user speech"),
        ("stop_speech", "new user speech"),
        ("submit", second, u, 200.0, False),
        ("listening", True),  # not speaking any more: the microphone reopens
    ]
    assert tt.state is S.THINKING and tt.live_job == second
    # The interrupted turn's late events are not the new turn's.
    assert not tt.segment_ready(segment(1, 1))
    assert not tt.turn_done(done(1, cancelled=True))
    tt.playback_drained()  # the stream faded out the old reply
    assert tt.state is S.THINKING and rec.take() == []


def test_speech_starting_while_thinking_interrupts(tt: TurnTaking, rec: Recorder) -> None:
    tt.typed("hello")
    rec.take()
    tt.speech_started()
    assert rec.names() == ["cancel_turn", "stop_speech"]
    assert tt.state is S.HEARING and tt.live_job is None


def test_mic_not_reopened_when_the_stream_drains_between_segments(tt: TurnTaking, rec: Recorder) -> None:
    job = tt.typed("two sentences please")
    tt.turn_started(job)
    tt.segment_ready(segment(1, 0))
    tt.playback_started(1)
    rec.take()
    tt.playback_drained(1, 0)  # the first segment played out; the second one is still being made
    assert tt.state is S.SPEAKING and not tt.listening
    tt.segment_ready(segment(1, 1))
    # A drain report sent before the second segment arrived, read after it was queued: out of date.
    tt.playback_drained(1, 0)
    tt.turn_done(done(1))
    assert tt.state is S.SPEAKING and not tt.listening
    assert rec.take() == [("speak", 1, 1)]
    tt.playback_drained(1, 1)
    assert tt.state is S.LISTENING and rec.take() == [("listening", True)]


def test_stale_segment_of_an_interrupted_turn_is_not_spoken(tt: TurnTaking, rec: Recorder) -> None:
    first = tt.typed("first question")
    tt.turn_started(first)
    assert tt.turn_event(transcript(1))
    second = tt.typed("second question")
    rec.take()
    # Turn 1 was already running when it was cancelled: it finishes its segment anyway.
    assert not tt.segment_ready(segment(1, 0))
    assert not tt.turn_done(done(1, cancelled=True))
    tt.turn_finished(TurnResult(1, "first question", "", cancelled=True))
    tt.turn_started(second)
    assert tt.segment_ready(segment(2, 0))
    assert rec.take() == [("speak", 2, 0)]
    assert tt.state is S.THINKING


def test_typed_question(tt: TurnTaking, rec: Recorder) -> None:
    assert tt.typed("   ") is None
    assert rec.take() == [] and tt.state is S.LISTENING
    assert tt.typed("  what time is it? ") == 1
    assert rec.take() == [
        ("cancel_turn", "new question"),
        ("stop_speech", "new question"),
        ("submit", 1, "what time is it?", None, False),
    ]
    assert (tt.state, tt.text) == (S.THINKING, "Thinking…")
    tt.turn_started(1)
    tt.segment_ready(segment(1, 0))
    tt.playback_started(1)
    tt.playback_drained(1, 0)
    tt.turn_done(done(1, segments=1))
    assert tt.state is S.LISTENING


def test_typed_question_while_speaking_interrupts_the_reply(tt: TurnTaking, rec: Recorder) -> None:
    tt.typed("first")
    tt.turn_started(1)
    tt.segment_ready(segment(1, 0))
    tt.playback_started(1)
    rec.take()
    tt.typed("second")
    assert rec.names() == ["cancel_turn", "stop_speech", "submit", "listening"]
    assert tt.state is S.THINKING and tt.listening


def test_push_to_talk_keeps_the_mic_open_while_speaking(rec: Recorder) -> None:
    tt = TurnTaking(rec, PUSH_TO_TALK, loaded=True)
    tt.talk_pressed()
    assert tt.state is S.HEARING
    tt.speech_started()
    tt.utterance_ended(utterance(), 10.0)
    tt.turn_started(1)
    tt.segment_ready(segment(1, 0))
    tt.playback_started(1)
    assert tt.state is S.SPEAKING and tt.listening
    tt.turn_done(done(1, segments=1))
    tt.playback_drained(1, 0)
    assert tt.state is S.LISTENING
    assert ("listening", False) not in rec.calls and ("listening", True) not in rec.calls


def test_pressing_talk_while_speaking_interrupts(rec: Recorder) -> None:
    tt = TurnTaking(rec, PUSH_TO_TALK, loaded=True)
    tt.typed("question")
    tt.turn_started(1)
    tt.segment_ready(segment(1, 0))
    tt.playback_started(1)
    rec.take()
    tt.talk_pressed()
    assert rec.names() == ["cancel_turn", "stop_speech"]
    assert tt.state is S.HEARING


def test_switching_to_push_to_talk_while_speaking_reopens_the_mic(tt: TurnTaking, rec: Recorder) -> None:
    tt.typed("question")
    tt.turn_started(1)
    tt.segment_ready(segment(1, 0))
    tt.playback_started(1)
    assert not tt.listening
    rec.take()
    tt.set_mode(PUSH_TO_TALK)
    assert rec.take() == [("listening", True)] and tt.state is S.SPEAKING
    with pytest.raises(ValueError, match="unknown microphone mode"):
        tt.set_mode("telepathy")


def test_stop_button(tt: TurnTaking, rec: Recorder) -> None:
    tt.speech_started()
    tt.utterance_ended(utterance(), 10.0)
    tt.turn_started(1)
    tt.segment_ready(segment(1, 0))
    tt.playback_started(1)
    rec.take()
    tt.stop("stopped by the user")
    assert rec.take() == [
        ("cancel_turn", "stopped by the user"), ("stop_speech", "stopped by the user"), ("listening", True)
    ]  # fmt: skip
    assert (tt.state, tt.text) == (S.LISTENING, "Ready")
    assert not tt.segment_ready(segment(1, 1))  # made before the cancel reached the turn
    assert rec.take() == []


def test_stop_during_early_start_discards_the_hold(tt: TurnTaking, rec: Recorder) -> None:
    tt.speech_started()
    tt.speech_paused(utterance(), 5.0)
    hold = rec.holds[1]
    tt.stop()
    assert hold is not None and hold.state == "discarded"
    assert tt.state is S.LISTENING


def test_muted_closes_the_mic_and_drops_speech_in_progress(tt: TurnTaking, rec: Recorder) -> None:
    tt.speech_started()
    tt.speech_paused(utterance(), 5.0)
    hold = rec.holds[1]
    rec.take()
    tt.set_muted(True)
    assert hold is not None and hold.state == "discarded"
    assert (tt.state, tt.text) == (S.LISTENING, "Ready (microphone muted)")
    assert rec.take() == [("listening", False)]
    # A typed question still runs its whole turn while muted; the mic stays closed after it.
    tt.typed("question")
    tt.turn_started(2)
    tt.segment_ready(segment(1, 0))
    tt.playback_started(1)
    tt.turn_done(done(1, segments=1))
    tt.playback_drained(1, 0)
    assert tt.state is S.LISTENING and not tt.listening
    tt.set_muted(False)
    assert rec.take()[-1] == ("listening", True) and tt.text == "Ready"


def test_short_noise_goes_back_to_idle(tt: TurnTaking) -> None:
    tt.speech_started()
    tt.speech_discarded()
    assert tt.state is S.LISTENING


def test_turns_queue_while_loading(rec: Recorder) -> None:
    tt = TurnTaking(rec)
    tt.typed("hello")
    assert (tt.state, tt.text) == (S.THINKING, "Queued until the models load")
    tt.models_ready()
    assert (tt.state, tt.text) == (S.THINKING, "Thinking…")


def test_a_turn_that_fails_before_it_starts_ends(rec: Recorder) -> None:
    tt = TurnTaking(rec)
    tt.models_failed()
    assert tt.text == "Models not loaded"
    tt.typed("hello")
    tt.turn_failed("The models are not loaded")  # the worker reports it without turn_started
    assert (tt.state, tt.text) == (S.LOADING, "Turn failed")


def test_failure_of_an_interrupted_running_turn_does_not_end_the_live_one(tt: TurnTaking) -> None:
    tt.typed("first")
    tt.turn_started(1)
    tt.typed("second")
    tt.turn_failed("boom")  # turn 1 failed after its cancel
    assert tt.state is S.THINKING and tt.live_job == 2


@pytest.mark.parametrize("early_start_ms", [150, 240])  # shorter and longer than tail_ms
def test_real_segmenter_pause_then_end_releases_the_early_start(
    tt: TurnTaking, rec: Recorder, early_start_ms: int
) -> None:
    from assistant.audio.vad import SpeechPaused, SpeechResumed, SpeechStarted, VadSegmenter

    segmenter = VadSegmenter(
        early_start_ms=early_start_ms, tail_ms=200, silence_ms=500, is_speech=lambda f: np.abs(f).max() > 1000
    )
    tone = (0.3 * np.sin(np.arange(16000) * 2 * np.pi * 220 / 16000)).astype(np.float32)  # 1 s "speech"
    silence = np.zeros(int(0.3 * 16000), np.float32)  # a pause shorter than silence_ms
    audio = np.concatenate([silence, tone, silence, tone, silence, silence, silence])
    for event in segmenter.push(audio):
        if isinstance(event, SpeechStarted):
            tt.speech_started()
        elif isinstance(event, SpeechPaused):
            tt.speech_paused(event.utterance, 0.0)
        elif isinstance(event, SpeechResumed):
            tt.speech_resumed()
        elif isinstance(event, Utterance):
            tt.utterance_ended(event, 0.0)
    held = [h for h in rec.holds.values() if h is not None]
    assert [h.state for h in held] == ["discarded", "released"]  # the mid-sentence pause, then the end
    assert len(rec.holds) == 2 and tt.state is S.THINKING


# ---- barge-in: hands-free with the avatar's echo cancelled keeps listening while it speaks ----


def test_barge_in_keeps_the_mic_open_and_speech_interrupts_the_reply(rec: Recorder) -> None:
    tt = TurnTaking(rec, HANDS_FREE, loaded=True, barge_in=True)
    job = tt.typed("tell me a long story")
    tt.turn_started(job)
    tt.segment_ready(segment(1, 0))
    tt.playback_started(1)
    assert tt.state is S.SPEAKING and tt.listening
    assert rec.take() == [("cancel_turn", "new question"), ("stop_speech", "new question"),
                          ("submit", 1, "tell me a long story", None, False), ("speak", 1, 0)]  # fmt: skip
    tt.speech_started()  # the user talks over the avatar
    assert rec.take() == [("cancel_turn", "new user speech"), ("stop_speech", "new user speech")]
    assert tt.state is S.HEARING and tt.live_job is None
    assert not tt.segment_ready(segment(1, 1))  # the rest of the reply is dropped
    u = utterance(10.0, 11.0)
    second = tt.utterance_ended(u, 200.0)
    assert second == 2 and tt.state is S.THINKING and tt.live_job == 2
    assert ("submit", 2, u, 200.0, False) in rec.take()


def test_barge_in_off_restores_half_duplex(rec: Recorder) -> None:
    tt = TurnTaking(rec, HANDS_FREE, loaded=True, barge_in=True)
    tt.set_barge_in(False)
    job = tt.typed("hello")
    tt.turn_started(job)
    tt.segment_ready(segment(1, 0))
    tt.playback_started(1)
    assert tt.state is S.SPEAKING and not tt.listening
    assert rec.take()[-1] == ("listening", False)
    tt.set_barge_in(True)  # turned on mid-reply: the microphone opens at once
    assert tt.listening and rec.take() == [("listening", True)]
    tt.set_barge_in(False)
    assert not tt.listening and rec.take() == [("listening", False)]
    tt.turn_done(done(1, segments=1))
    tt.playback_drained(1, 0)
    assert tt.state is S.LISTENING and rec.take() == [("listening", True)]


def test_barge_in_does_not_open_a_muted_mic(rec: Recorder) -> None:
    tt = TurnTaking(rec, HANDS_FREE, loaded=True, barge_in=True)
    tt.set_muted(True)
    assert not tt.listening
    job = tt.typed("hello")
    tt.turn_started(job)
    tt.segment_ready(segment(1, 0))
    tt.playback_started(1)
    assert not tt.listening
