"""TurnRunner with fake stages: events in order, overlap, cancellation mid-reply, audio-only fallback."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from assistant.cancel import CancelToken
from assistant.errors import ASRError, TTSError, VideoOutOfMemoryError
from assistant.events import (
    AvatarVideo,
    Notice,
    ReplySentence,
    ReplySentenceReady,
    SegmentReady,
    SpeechAudio,
    StageFailed,
    Transcript,
    TranscriptReady,
    TurnDone,
    Utterance,
    VideoReady,
)
from assistant.pipeline import Hold, Stages, TurnRunner


class FakeASR:
    name = "fake-asr"

    def __init__(self, text: str | None = "what is the capital of france", fail: bool = False):
        self.text, self.fail = text, fail

    def transcribe(self, utterance):
        if self.fail:
            raise ASRError("model exploded")
        if self.text is None:
            return None
        return Transcript(self.text, "en", utterance.start_s, utterance.end_s, 0.01, "fake", 0.0)


class FakeLLM:
    name = "fake-llm"

    def __init__(self, sentences, gate: threading.Event | None = None, gate_before: int = 1):
        self.sentences, self.gate, self.gate_before = sentences, gate, gate_before
        self.produced = 0

    def stream_reply(self, user_text, cancel: CancelToken):
        for i, s in enumerate(self.sentences):
            if i == self.gate_before and self.gate is not None:
                self.gate.wait(5)  # hold this sentence (the second by default) until the test says so
            if cancel.cancelled:
                return
            self.produced += 1
            yield ReplySentence(i, s, is_last=i == len(self.sentences) - 1)


class FakeTTS:
    name = "fake-tts"

    def __init__(self, fail_on: set[int] = frozenset(), on_synthesize=None):
        self.fail_on, self.calls = fail_on, 0
        self.texts: list[str] = []  # what was spoken, in order
        self.on_synthesize = on_synthesize  # called with (call number, text) while the synthesis is in flight

    def synthesize(self, text, out_path: Path):
        self.calls += 1
        self.texts.append(text)
        if self.on_synthesize is not None:
            self.on_synthesize(self.calls - 1, text)
        if self.calls - 1 in self.fail_on:
            raise TTSError("voice broke")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(b"RIFF")
        return SpeechAudio(out_path, 22050, 1.0, "fake-tts", text)


class FakeHead:
    name = "fake-head"

    def __init__(self, oom_on: set[int] = frozenset()):
        self.oom_on, self.calls = oom_on, 0
        self.rendered: list[Path] = []  # the audio of every segment rendered, in order

    def render(self, audio_path, output_path):
        self.calls += 1
        self.rendered.append(Path(audio_path))
        if self.calls - 1 in self.oom_on:
            raise VideoOutOfMemoryError("CUDA out of memory (injected)")
        Path(output_path).write_bytes(b"mp4")
        return AvatarVideo(Path(output_path), "light", 25, 25.0, 64, 64, 1.0, 0.0)


def utterance() -> Utterance:
    return Utterance(np.zeros(16000, np.float32), 16000, 0.0, 1.0)


def run(stages, tmp_path, **kw):
    events = []
    runner = TurnRunner(stages, events.append, tmp_path)
    return runner, runner.run(**kw), events


def test_turn_events_in_order_and_segments_have_video(tmp_path):
    stages = Stages(FakeASR(), FakeLLM(["Paris is the capital.", "It is lovely."]), FakeTTS(), FakeHead())
    _, result, events = run(stages, tmp_path, utterance=utterance())
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "UtteranceCaptured" and kinds[1] == "TranscriptReady" and kinds[-1] == "TurnDone"
    assert result.transcript == "what is the capital of france"
    assert result.reply == "Paris is the capital. It is lovely."
    assert [s.index for s in result.segments] == [0, 1]
    assert all(s.video is not None for s in result.segments)
    done = events[-1]
    assert isinstance(done, TurnDone) and done.segments == 2 and not done.cancelled
    assert {"asr", "llm_first_sentence", "tts_first_audio", "first_segment_from_end_of_speech"} <= set(done.timings_s)


def test_first_segment_is_ready_before_the_reply_is_finished(tmp_path):
    gate = threading.Event()
    seen_segment_before_second_sentence = []

    def on_event(e):
        if isinstance(e, SegmentReady) and e.index == 0:
            seen_segment_before_second_sentence.append(not gate.is_set())
            gate.set()

    stages = Stages(FakeASR(), FakeLLM(["One.", "Two."], gate=gate), FakeTTS(), FakeHead())
    TurnRunner(stages, on_event, tmp_path).run(text="hi")
    assert seen_segment_before_second_sentence == [True]


def test_cancel_mid_reply_stops_the_rest(tmp_path):
    gate = threading.Event()
    events = []
    runner = TurnRunner(
        Stages(FakeASR(), llm := FakeLLM(["One.", "Two.", "Three."], gate=gate), FakeTTS(), FakeHead()),
        events.append,
        tmp_path,
    )

    def on_event(e):
        events.append(e)
        if isinstance(e, ReplySentenceReady) and e.sentence.index == 0:
            assert runner.cancel_current("user spoke again")
            gate.set()

    runner.on_event = on_event
    result = runner.run(text="tell me three things")
    assert result.cancelled
    assert llm.produced == 1 and result.reply == "One."
    assert isinstance(events[-1], TurnDone) and events[-1].cancelled
    assert runner.cancel_current() is False  # nothing in flight any more


def test_cancel_while_the_second_sentence_is_being_spoken_stops_everything_after_it(tmp_path):
    """The user talks over the first segment of a four-sentence reply, while sentence 1 is being synthesised
    and the model still has two sentences to go: nothing after the cancel is rendered, spoken or generated."""
    reply = ["Paris is the capital.", "It is on the Seine.", "It has museums.", "Spring is lovely there."]
    tts_1_in_flight, tts_go, llm_go = threading.Event(), threading.Event(), threading.Event()

    def on_synthesize(call: int, text: str) -> None:
        if call == 1:
            tts_1_in_flight.set()
            tts_go.wait(5)  # sentence 1 is still being synthesised when the cancel arrives

    llm = FakeLLM(reply, gate=llm_go, gate_before=2)  # sentences 2 and 3 come only after the cancel
    tts, head = FakeTTS(on_synthesize=on_synthesize), FakeHead()
    events: list = []
    cancelled_at: list[int] = []  # len(events) when the cancel happened
    runner = TurnRunner(Stages(FakeASR(), llm, tts, head), events.append, tmp_path)

    def on_event(e):
        events.append(e)
        if isinstance(e, SegmentReady) and e.index == 0:
            assert tts_1_in_flight.wait(5)
            cancelled_at.append(len(events))
            assert runner.cancel_current("user spoke again")
            tts_go.set()
            llm_go.set()

    runner.on_event = on_event
    result = runner.run(utterance=utterance())

    assert result.cancelled and cancelled_at
    cut = cancelled_at[0]
    # Nothing after the cancel point was generated, rendered or shown; sentence 1's synthesis was already
    # running and finishes, but it never reaches the talking head.
    assert llm.produced == 2
    assert tts.texts == reply[:2]
    assert head.rendered == [result.segments[0].speech.wav_path] and len(result.segments) == 1
    after = events[cut:]
    assert not [e for e in after if isinstance(e, (ReplySentenceReady, VideoReady, SegmentReady))], after
    assert isinstance(events[-1], TurnDone) and events[-1].cancelled and events[-1].segments == 1
    # Event order up to the cancel: captured, transcribed, first sentence, its speech, its video, its segment.
    kinds = [(type(e).__name__, getattr(e, "index", None)) for e in events[:cut]]
    first = [
        ("UtteranceCaptured", None), ("TranscriptReady", None), ("SpeechReady", 0), ("VideoReady", 0),
        ("SegmentReady", 0),
    ]  # fmt: skip
    assert [k for k in kinds if k in first] == first
    first_sentence_at = kinds.index(("ReplySentenceReady", None))
    assert kinds.index(("TranscriptReady", None)) < first_sentence_at < kinds.index(("SpeechReady", 0))
    assert [e.sentence.text for e in events if isinstance(e, ReplySentenceReady)] == reply[:2]
    assert result.reply == " ".join(reply[:2])


def test_out_of_memory_plays_audio_only_and_next_turn_tries_video_again(tmp_path):
    head = FakeHead(oom_on={0})
    stages = Stages(FakeASR(), FakeLLM(["A.", "B."]), FakeTTS(), head)
    events = []
    runner = TurnRunner(stages, events.append, tmp_path)
    first = runner.run(text="q1")
    assert [s.video for s in first.segments] == [None, None]
    assert all(s.speech.wav_path.exists() for s in first.segments)
    assert "out of memory" in first.segments[0].audio_only_reason
    assert any(isinstance(e, Notice) and "audio only" in e.message for e in events)
    assert head.calls == 1  # the rest of that reply did not retry video
    second = runner.run(text="q2")
    assert all(s.video is not None for s in second.segments)


def test_tts_failure_on_one_sentence_reports_and_continues(tmp_path):
    stages = Stages(FakeASR(), FakeLLM(["A.", "B."]), FakeTTS(fail_on={0}), FakeHead())
    _, result, events = run(stages, tmp_path, text="q")
    assert [s.speech.text for s in result.segments] == ["B."] and [s.index for s in result.segments] == [0]
    failed = [e for e in events if isinstance(e, StageFailed)]
    assert failed and failed[0].stage == "tts" and "voice broke" in failed[0].message


def test_no_speech_is_dropped_before_the_model(tmp_path):
    llm = FakeLLM(["never"])
    _, result, events = run(Stages(FakeASR(text=None), llm, FakeTTS()), tmp_path, utterance=utterance())
    assert result.dropped and llm.produced == 0
    assert not any(isinstance(e, (TranscriptReady, TurnDone)) for e in events)


def test_asr_failure_is_an_event_not_a_crash(tmp_path):
    _, result, events = run(Stages(FakeASR(fail=True), FakeLLM(["x"]), FakeTTS()), tmp_path, utterance=utterance())
    assert result.cancelled and any(isinstance(e, StageFailed) and e.stage == "asr" for e in events)


def test_audio_only_when_no_talking_head(tmp_path):
    _, result, _ = run(Stages(FakeASR(), FakeLLM(["A."]), FakeTTS(), None), tmp_path, text="q")
    assert result.segments[0].video is None and result.segments[0].audio_only_reason == "talking head disabled"


def test_exactly_one_input():
    runner = TurnRunner(Stages(FakeASR(), FakeLLM([]), FakeTTS()), lambda e: None, Path("/tmp"))
    with pytest.raises(ValueError):
        runner.run()


# ---- early start: a speculative turn under a Hold ----


class HistoryLLM(FakeLLM):
    def __init__(self, sentences, gate=None):
        super().__init__(sentences, gate)
        self.history: list[str] = []

    def stream_reply(self, user_text, cancel):
        yield from super().stream_reply(user_text, cancel)
        self.history.append(user_text)

    def forget_last_turn(self, user_text):
        self.history.remove(user_text)
        return True


def test_held_turn_shows_nothing_until_released(tmp_path):
    events = []
    runner = TurnRunner(Stages(FakeASR(), FakeLLM(["A.", "B."]), FakeTTS(), FakeHead()), events.append, tmp_path)
    hold = Hold()
    result = runner.run(utterance=utterance(), hold=hold)
    assert events == [] and len(result.segments) == 2  # all the work is done, nothing shown
    hold.release()
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "UtteranceCaptured" and kinds.count("SegmentReady") == 2 and kinds[-1] == "TurnDone"


def test_release_before_the_turn_runs_delivers_live(tmp_path):
    events = []
    runner = TurnRunner(Stages(FakeASR(), FakeLLM(["A."]), FakeTTS(), FakeHead()), events.append, tmp_path)
    hold = Hold()
    hold.release()
    runner.run(utterance=utterance(), hold=hold)
    assert isinstance(events[-1], TurnDone)


def test_discarded_turn_is_cancelled_hidden_and_taken_out_of_history(tmp_path):
    gate = threading.Event()
    events = []
    llm = HistoryLLM(["A.", "B.", "C."], gate=gate)
    runner = TurnRunner(Stages(FakeASR(), llm, FakeTTS(), FakeHead()), events.append, tmp_path)
    hold = Hold()
    worker = threading.Thread(target=lambda: results.append(runner.run(utterance=utterance(), hold=hold)))
    results = []
    worker.start()
    hold.discard("the speaker went on")
    gate.set()
    worker.join(5)
    assert results[0].cancelled and results[0].discarded
    assert events == [] and llm.history == []
    hold.release()  # too late: nothing comes out
    assert events == []


def test_discard_after_the_turn_finished_still_rolls_back(tmp_path):
    llm = HistoryLLM(["A."])
    runner = TurnRunner(Stages(FakeASR(), llm, FakeTTS(), FakeHead()), lambda e: None, tmp_path)
    hold = Hold()
    result = runner.run(utterance=utterance(), hold=hold)
    assert llm.history == ["what is the capital of france"]
    hold.discard()
    assert llm.history == [] and result.discarded


def test_first_long_speech_is_split_into_two_segments(tmp_path):
    import soundfile as sf

    from assistant.pipeline import split_speech

    rate = 22050
    t = np.arange(int(2.5 * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    tone[int(0.8 * rate) : int(0.84 * rate)] = 0.0  # a quiet gap where the cut should land
    wav = tmp_path / "seg-000.wav"
    sf.write(str(wav), tone, rate)
    speech = SpeechAudio(wav, rate, 2.5, "fake", "long sentence")
    a, b = split_speech(speech, 1.0)
    assert 0.79 <= a.duration_s <= 0.85 and abs(a.duration_s + b.duration_s - 2.5) < 1e-3
    joined = np.concatenate([sf.read(str(a.wav_path), dtype="float32")[0], sf.read(str(b.wav_path), dtype="float32")[0]])
    assert np.allclose(joined, sf.read(str(wav), dtype="float32")[0], atol=1e-4)
    # A long sentence: pieces grow (at most 1, 2, 4 ... s) so each renders while the one before it plays.
    long_wav = tmp_path / "seg-long.wav"
    sf.write(str(long_wav), np.tile(tone, 4), rate)
    pieces = split_speech(SpeechAudio(long_wav, rate, 10.0, "fake", "long"), 1.0)
    durations = [p.duration_s for p in pieces]
    assert len(pieces) >= 3 and abs(sum(durations) - 10.0) < 1e-3
    assert all(d <= 2 ** i + 1e-6 for i, d in enumerate(durations[:-1]))
    assert split_speech(dataclasses.replace(speech, duration_s=1.2), 1.0) == [dataclasses.replace(speech, duration_s=1.2)]


def test_the_language_model_waits_for_the_first_sentences_speech(tmp_path):
    # On 2 cores llama.cpp writing the rest of the reply slows the first sentence's synthesis 3-4x: the model is
    # paused after its first sentence until that sentence's speech exists, then goes on.
    llm = FakeLLM(["Paris is the capital.", "It is lovely.", "Go in spring."])
    seen: list[int] = []  # sentences the model had produced while each synthesis ran
    stages = Stages(FakeASR(), llm, FakeTTS(on_synthesize=lambda i, text: (time.sleep(0.2), seen.append(llm.produced))))
    _, result, _ = run(stages, tmp_path, utterance=utterance())
    assert seen[0] == 1  # the first sentence was spoken with nothing else generated meanwhile
    assert llm.produced == 3 and len(result.segments) == 3  # and the rest of the reply followed
