"""The learned end of turn in the segmenter, with an injected decision: asked at the early-start pause with the
provisional utterance's audio; "finished" ends the utterance there (the same one the pause announced), "not yet"
asks again at silence_ms and then waits incomplete_silence_ms; settings and the missing-model path (no model is
loaded here)."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.audio import smart_turn
from assistant.audio.smart_turn import SmartTurn, SmartTurnMissing, end_of_turn_for, load_smart_turn
from assistant.audio.vad import (
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    VadConfigError,
    VadSegmenter,
    VadSettings,
)
from assistant.config import AudioSettings
from assistant.events import Utterance
from assistant.turn_taking import _same_utterance

FRAME = 480  # 30 ms at 16 kHz


def loud(frame: np.ndarray) -> bool:
    return bool(np.abs(frame.astype(np.int32)).mean() > 1000)


def pattern(spec: str) -> np.ndarray:
    """'v' = one voiced 30 ms frame, '.' = one silent frame."""
    return np.concatenate([np.full(FRAME, 6000 if c == "v" else 0, dtype=np.int16) for c in spec])


class Decision:
    """An end-of-turn decision that answers from a script and records what it was asked."""

    def __init__(self, *answers: float) -> None:
        self.answers = list(answers)
        self.asked: list[np.ndarray] = []

    def __call__(self, audio: np.ndarray) -> float:
        self.asked.append(audio)
        return self.answers.pop(0)


def segmenter(decision: Decision | None, **kwargs) -> VadSegmenter:
    # 120 ms early start = 4 frames, 500 ms end = 17 frames, 1000 ms when unfinished = 33 frames
    settings = {"early_start_ms": 120, "silence_ms": 500, "incomplete_silence_ms": 1000}
    return VadSegmenter(**{**settings, **kwargs}, is_speech=loud, end_of_turn_model=decision)


def push_frames(seg: VadSegmenter, audio: np.ndarray) -> list[tuple[int, object]]:
    """(frame index, event) for every event, pushing one frame at a time."""
    out = []
    for i in range(0, len(audio), FRAME):
        out += [(i // FRAME, e) for e in seg.push(audio[i : i + FRAME])]
    return out


def test_finished_ends_the_turn_at_the_pause_with_the_announced_utterance() -> None:
    decision = Decision(0.9)
    events = push_frames(segmenter(decision), pattern("." * 10 + "v" * 30 + "." * 40))
    kinds = [type(e) for _, e in events]
    assert kinds == [SpeechStarted, SpeechPaused, Utterance]
    (_, paused), (at, utterance) = events[1], events[2]
    assert at == events[1][0] == 10 + 30 + 4 - 1  # the 4th silent frame: 120 ms after the speech, not 500
    # the very utterance the pause announced: turn_taking releases the reply held since the pause
    assert utterance is paused.utterance and _same_utterance(paused.utterance, utterance)
    assert len(decision.asked) == 1
    asked = decision.asked[0]
    # asked about exactly what the utterance holds
    assert asked.dtype == np.int16 and len(asked) == len(utterance.samples)
    assert np.array_equal(asked.astype(np.float32) / 32768.0, utterance.samples)


def test_not_finished_waits_the_longer_silence() -> None:
    decision = Decision(0.2, 0.3)
    events = push_frames(segmenter(decision), pattern("." * 10 + "v" * 30 + "." * 60))
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechPaused, Utterance]
    assert events[2][0] == 10 + 30 + 33 - 1  # incomplete_silence_ms, not silence_ms
    assert len(decision.asked) == 2  # at the pause and where silence alone would have ended it


def test_asked_again_at_silence_ms_a_finished_turn_ends_there() -> None:
    decision = Decision(0.2, 0.8)
    events = push_frames(segmenter(decision), pattern("." * 10 + "v" * 30 + "." * 60))
    (paused,) = [e for _, e in events if isinstance(e, SpeechPaused)]
    ((end, utterance),) = [(i, e) for i, e in events if isinstance(e, Utterance)]
    assert end == 10 + 30 + 17 - 1 and _same_utterance(paused.utterance, utterance)
    assert len(decision.asked[1]) > len(decision.asked[0])  # the tail kept grew from 120 ms to tail_ms


def test_a_mid_thought_pause_longer_than_silence_ms_does_not_split_the_question() -> None:
    # 600 ms of silence between two phrases: silence alone cuts there, "not yet" keeps one utterance.
    audio = pattern("." * 10 + "v" * 30 + "." * 20 + "v" * 20 + "." * 60)
    plain = [e for _, e in push_frames(segmenter(None), audio) if isinstance(e, Utterance)]
    assert len(plain) == 2
    # "not yet" at 120 ms and at 510 ms of the pause, "finished" at the end
    decision = Decision(0.1, 0.2, 0.95)
    events = [e for _, e in push_frames(segmenter(decision), audio)]
    assert [type(e) for e in events] == [SpeechStarted, SpeechPaused, SpeechResumed, SpeechPaused, Utterance]
    (utterance,) = [e for e in events if isinstance(e, Utterance)]
    assert utterance.duration_s == pytest.approx((10 + 30 + 20 + 20 + 4) * 0.03)  # both phrases, one turn
    assert len(decision.asked) == 3 and len(decision.asked[2]) > len(decision.asked[1])


def test_speech_resuming_resets_the_wait_to_silence_ms_for_a_pause_not_asked_about() -> None:
    # Asked and "not yet" at the first pause; the speaker goes on; the model is asked again at the next pause.
    decision = Decision(0.1, 0.3, 0.3)
    audio = pattern("." * 10 + "v" * 20 + "." * 8 + "v" * 20 + "." * 60)
    events = push_frames(segmenter(decision), audio)
    ends = [i for i, e in events if isinstance(e, Utterance)]
    assert ends == [10 + 20 + 8 + 20 + 33 - 1] and len(decision.asked) == 3


def test_the_threshold_is_inclusive_and_configurable() -> None:
    for threshold, ended_at_pause in ((0.7, True), (0.71, False)):
        decision = Decision(0.7, 0.0)
        events = push_frames(
            segmenter(decision, end_of_turn_threshold=threshold), pattern("v" * 20 + "." * 40)
        )
        (end,) = [i for i, e in events if isinstance(e, Utterance)]
        assert (end == 20 + 4 - 1) is ended_at_pause


def test_without_an_early_start_or_a_decision_silence_decides() -> None:
    decision = Decision()
    events = push_frames(segmenter(decision, early_start_ms=0), pattern("v" * 20 + "." * 40))
    assert [i for i, e in events if isinstance(e, Utterance)] == [20 + 17 - 1] and not decision.asked
    events = push_frames(segmenter(None), pattern("v" * 20 + "." * 40))
    assert [i for i, e in events if isinstance(e, Utterance)] == [20 + 17 - 1]


def test_a_too_short_burst_is_not_asked_about() -> None:
    decision = Decision()
    events = push_frames(segmenter(decision), pattern("." * 5 + "vvvv" + "." * 40))  # 120 ms < min_speech_ms
    assert not decision.asked and not [e for _, e in events if isinstance(e, Utterance)]


def test_settings_are_validated_and_read_from_the_config() -> None:
    with pytest.raises(VadConfigError, match="end_of_turn"):
        VadSettings(end_of_turn="model")
    with pytest.raises(VadConfigError, match="end_of_turn_threshold"):
        VadSettings(end_of_turn_threshold=1.5)
    with pytest.raises(VadConfigError, match="incomplete_silence_ms"):
        VadSettings(incomplete_silence_ms=0)
    audio = AudioSettings(end_of_turn="silence", end_of_turn_threshold=0.8, incomplete_silence_ms=1500)
    vad = VadSettings.from_config(audio)
    assert (vad.end_of_turn, vad.end_of_turn_threshold, vad.incomplete_silence_ms) == ("silence", 0.8, 1500)
    with pytest.raises(ValueError, match="end_of_turn"):
        AudioSettings(end_of_turn="sometimes")
    with pytest.raises(ValueError, match="incomplete_silence_ms"):
        AudioSettings(incomplete_silence_ms=20)


def test_a_missing_model_file_names_what_to_install(tmp_path) -> None:
    with pytest.raises(SmartTurnMissing, match=r"pip install --no-deps pipecat-ai==") as info:
        SmartTurn(tmp_path / "smart-turn-v3.2-cpu.onnx")
    assert str(tmp_path) in str(info.value) and "audio.end_of_turn: silence" in str(info.value)
    with pytest.raises(SmartTurnMissing):
        load_smart_turn(tmp_path / "nothing.onnx")


def test_without_the_model_smart_turn_falls_back_to_silence_with_a_notice(monkeypatch, caplog) -> None:
    monkeypatch.setattr(smart_turn, "MODEL_FILE", "no-such-model.onnx")  # as if the wheel were not installed
    notices: list[str] = []
    vad = VadSettings(early_start_ms=120, end_of_turn="smart_turn")
    assert end_of_turn_for(vad, on_notice=notices.append) is None
    (notice,) = notices
    assert "pipecat-ai" in notice and "500 ms of silence instead" in notice
    assert "pipecat-ai" in caplog.text
    # silence, or no early start (push-to-talk): nothing is loaded and nothing is said
    assert end_of_turn_for(VadSettings(early_start_ms=120), on_notice=notices.append) is None
    assert end_of_turn_for(VadSettings(end_of_turn="smart_turn"), on_notice=notices.append) is None
    assert len(notices) == 1
