"""The default avatar speaks a Piper sentence through every talking-head engine, via `assistant lipsync`, to a valid
MP4 as long as the speech with both streams (checked with ffprobe). Wav2Lip runs the real network with the spec's
formula weights saved as a checkpoint (no published weights can be had here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from assistant.cli.main import main
from assistant.models import locate
from assistant.talking_head.formula_weights import save_formula_checkpoint
from assistant.tts.piper import PiperEngine
from assistant.video import probe

pytestmark = pytest.mark.integration

AVATAR = Path(__file__).resolve().parents[2] / "assets" / "avatars" / "astronaut.png"


@pytest.fixture(scope="module")
def sentence(tmp_path_factory) -> Path:
    engine = PiperEngine(locate("piper-joe", Path("models")))
    engine.load()
    return engine.synthesize("Hello, I am your assistant.", tmp_path_factory.mktemp("piper") / "s.wav").wav_path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_formula_checkpoint(tmp_path_factory.mktemp("w2l") / "wav2lip-formula.pth")


@pytest.mark.parametrize("engine", ["wav2lip_gan", "wav2lip", "light", "static"])
def test_avatar_speaks_through_engine(engine, sentence, checkpoint, tmp_path, capsys):
    out = tmp_path / f"{engine}.mp4"
    args = ["lipsync", str(AVATAR), str(sentence), "-o", str(out), "--engine", engine, "--no-fallback", "--json"]
    if engine.startswith("wav2lip"):
        args += ["--checkpoint", str(checkpoint), "--device", "cpu"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["engine"] == engine
    info = probe(out)
    speech_s = sf.info(str(sentence)).duration
    assert info.has_video and info.has_audio
    assert (info.video_codec, info.audio_codec, info.width, info.height) == ("h264", "aac", 1280, 720)
    assert abs(info.video_duration_s - speech_s) <= 1 / info.fps + 1e-3
