"""Smart Turn v3.2 with the real model, real webrtcvad and synthesised speech: its features are pipecat's, a
complete question ends at the pause, a question with a long pause after an unfinished phrase stays whole."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.smart_turn import INPUT, bundled_model_path, load_smart_turn
from assistant.audio.vad import SpeechPaused, VadSegmenter, VadSettings, to_int16
from assistant.bench.asr import LEAD_SILENCE_S, Question, Voice, speak_questions
from assistant.config import load_settings
from assistant.events import Utterance

pytestmark = pytest.mark.integration
RATE = 16000


@pytest.fixture(scope="module")
def vad() -> VadSettings:
    settings = load_settings()
    return replace(
        VadSettings.from_config(settings.audio), early_start_ms=120, silence_ms=500, end_of_turn="smart_turn"
    )


def _speak(tmp_path: Path, voice: Voice, question: Question) -> np.ndarray:
    ((_, _, samples),) = speak_questions([question], [voice], load_settings().models_dir, RATE, tmp_path)
    lead, trail = np.zeros(int(LEAD_SILENCE_S * RATE), np.float32), np.zeros(2 * RATE, np.float32)
    return to_int16(np.concatenate([lead, samples, trail]))


def _events(vad: VadSettings, audio: np.ndarray, model) -> list[tuple[float, object]]:
    """(stream time when emitted, event), one 30 ms frame pushed at a time as from the microphone."""
    seg = VadSegmenter.from_settings(vad, end_of_turn_model=model)
    out = []
    for i in range(0, len(audio), vad.frame_samples):
        out += [(seg.position_s, e) for e in seg.push(audio[i : i + vad.frame_samples])]
    return out + [(seg.position_s, e) for e in seg.flush()]


def test_features_and_verdict_match_pipecats_reference(tmp_path: Path) -> None:
    """Our features (faster-whisper's extractor) against pipecat's own numpy Whisper front end, shipped in the same
    wheel next to the model (loaded by path: importing pipecat needs its dependencies), on two spoken clips."""
    model = load_smart_turn()
    reference_file = bundled_model_path().parents[1] / "_whisper_features.py"
    spec = importlib.util.spec_from_file_location("pipecat_whisper_features", reference_file)
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    voice = Voice("espeak-en-us", "espeak", "en-us")
    for text in ("What is the capital of France?", "I would like to know, um, the capital of"):
        pcm = _speak(tmp_path, voice, Question(text))[: 4 * RATE]
        x = pcm.astype(np.float32) / 32768.0
        # pipecat pads in front
        padded = np.concatenate([np.zeros(INPUT.window_samples - len(x), np.float32), x])
        theirs = reference.compute_whisper_log_mel_features(padded, do_normalize=True)
        ours = model.features(pcm)
        assert ours.shape == theirs.shape == (80, 800)
        assert np.abs(ours - theirs).max() < 1e-4
        (out,) = model._session.run(None, {"input_features": theirs[np.newaxis]})
        assert model(pcm) == pytest.approx(float(out[0, 0]), abs=1e-4)


@pytest.mark.parametrize("text", ["What is the capital of France?", "Set a timer for ten minutes."])
def test_a_complete_question_ends_at_the_pause(tmp_path: Path, vad: VadSettings, text: str) -> None:
    audio = _speak(tmp_path, Voice("piper-joe", "piper", "piper-joe"), Question(text))
    events = _events(vad, audio, load_smart_turn())
    paused = [(t, e) for t, e in events if isinstance(e, SpeechPaused)]
    ended = [(t, e) for t, e in events if isinstance(e, Utterance)]
    assert len(ended) == 1 and paused
    (end_at, utterance), (pause_at, pause) = ended[0], paused[-1]
    assert utterance is pause.utterance and end_at == pause_at  # ended by the model at the 120 ms pause ...
    assert end_at < pause.voice_end_s + vad.silence_ms / 1000  # ... before silence alone would have ended it
    plain = [t for t, e in _events(vad, audio, None) if isinstance(e, Utterance)]
    assert plain[0] > end_at  # the same audio without the model ends later (stream time, not a clock)


def test_a_long_pause_after_an_unfinished_phrase_does_not_end_the_turn(
    tmp_path: Path, vad: VadSettings
) -> None:
    # 700 ms of silence after "the best way to,": longer than end_silence_ms, so silence alone cuts the question.
    question = Question("What is the best way to | learn a new language?", 700)
    audio = _speak(tmp_path, Voice("espeak-en-us", "espeak", "en-us"), question)
    assert len([e for _, e in _events(vad, audio, None) if isinstance(e, Utterance)]) == 2
    utterances = [e for _, e in _events(vad, audio, load_smart_turn()) if isinstance(e, Utterance)]
    assert len(utterances) == 1 and utterances[0].duration_s > 3.0  # both phrases, one turn
