"""Silero VAD (the silero-vad package's model): real speech is speech, loud noises are not, and without the package
the guard is told why and goes on without it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.io import load_audio
from assistant.audio.silero import WINDOW, SileroSpeech, SileroUnavailable, load_silero

SPEECH = Path(__file__).parents[1] / "data" / "speech" / "question-en-us.wav"


def _probabilities(x: np.ndarray, frame: int = 480) -> list[float]:
    vad = SileroSpeech()
    pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)
    return [vad.push(pcm[i : i + frame]) for i in range(0, len(pcm) - frame + 1, frame)]


def test_speech_is_heard_and_noises_are_not(tmp_path: Path) -> None:
    from assistant.bench.echo import _noise_bursts

    assert max(_probabilities(load_audio(SPEECH, 16000))) > 0.8
    for burst in _noise_bursts(tmp_path):
        assert max(_probabilities(load_audio(burst, 16000))) < 0.5, burst.name
    assert max(_probabilities(np.zeros(16000, np.float32))) < 0.1


def test_frames_of_any_size_give_the_same_windows() -> None:
    x = load_audio(SPEECH, 16000)
    by_30ms = _probabilities(x, 480)
    by_window = _probabilities(x, WINDOW)
    # the model runs on the same 32 ms windows in both: the last probability of each stream agrees
    assert by_30ms[-1] == pytest.approx(_probabilities(x[: len(by_30ms) * 480], WINDOW)[-1], abs=1e-6)
    assert max(by_30ms) == pytest.approx(max(by_window), abs=0.05)


def test_reset_forgets_the_stream() -> None:
    vad = SileroSpeech()
    pcm = (load_audio(SPEECH, 16000) * 32767).astype(np.int16)
    vad.push(pcm)
    vad.reset()
    assert vad.probability == 0.0
    assert vad.push(np.zeros(WINDOW, np.int16)) < 0.1


def test_without_the_package_the_guard_is_told_why(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "silero_vad", None)  # as if it were not installed
    with pytest.raises(SileroUnavailable, match="pip install silero-vad"):
        SileroSpeech()
    assert load_silero() is None
    assert "webrtcvad alone" in caplog.text
    with pytest.raises(SileroUnavailable, match="16000 Hz"):
        SileroSpeech(48000)
