"""`assistant lipsync`, `assistant video info` and `assistant bench lipsync` driven through the real CLI entry."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from assistant.bench.lipsync import speech_like_wav
from assistant.cli.main import main
from assistant.video import probe

pytestmark = pytest.mark.integration


def _avatar() -> Path:
    shipped = Path(__file__).resolve().parents[2] / "assets" / "avatars" / "astronaut.png"
    if shipped.is_file():
        return shipped
    spec = importlib.util.find_spec("skimage")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "data" / "astronaut.png"


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_like_wav(tmp_path_factory.mktemp("cli") / "speech.wav", seconds=1.5)


def _json(capsys: pytest.CaptureFixture[str]) -> dict | list:
    return json.loads(capsys.readouterr().out)


def test_lipsync_light_json(speech: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "light.mp4"
    rc = main(["lipsync", str(_avatar()), str(speech), "-o", str(out), "--engine", "light",
               "--quality", "standard", "--device", "cpu", "--json"])  # fmt: skip
    data = _json(capsys)
    assert rc == 0
    assert data["output"] == str(out) and out.is_file()
    assert data["engine"] == "light" and data["fallback_reasons"] == []
    assert data["resolution"] == "1280x720" and data["fps"] == 25.0
    assert data["frames"] == 38  # ceil(1.5 s * 25)
    assert data["duration_s"] == pytest.approx(1.52)
    assert data["elapsed_s"] > 0
    assert probe(out).frames == 38


def test_lipsync_fps_and_quality_flags(
    speech: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "static.mp4"
    rc = main(["lipsync", str(_avatar()), str(speech), "-o", str(out), "--engine", "static",
               "--quality", "high", "--fps", "10", "--device", "cpu", "--json"])  # fmt: skip
    data = _json(capsys)
    assert rc == 0
    assert (data["engine"], data["resolution"], data["fps"], data["frames"]) == (
        "static",
        "1920x1080",
        10.0,
        15,
    )
    assert data["quality_mode"] == "high"


def test_lipsync_wav2lip_without_weights_falls_back(
    speech: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "wav2lip.pth"
    rc = main(["lipsync", str(_avatar()), str(speech), "-o", str(tmp_path / "o.mp4"), "--engine", "wav2lip",
               "--checkpoint", str(missing), "--quality", "standard", "--device", "cpu", "--json"])  # fmt: skip
    data = _json(capsys)
    assert rc == 0
    assert data["requested_engine"] == "wav2lip" and data["engine"] == "light"
    assert len(data["fallback_reasons"]) == 1
    assert data["fallback_reasons"][0].startswith("wav2lip -> light:")
    assert str(missing) in data["fallback_reasons"][0]


def test_lipsync_no_fallback_reports_the_error(
    speech: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "wav2lip_gan.pth"
    rc = main(["lipsync", str(_avatar()), str(speech), "-o", str(tmp_path / "o.mp4"), "--engine", "wav2lip_gan",
               "--checkpoint", str(missing), "--quality", "standard", "--device", "cpu", "--no-fallback"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2
    assert "No talking-head engine could render" in err and "CheckpointError" in err and str(missing) in err
    assert not (tmp_path / "o.mp4").exists()


def test_lipsync_wav2lip_with_formula_weights(
    speech: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from assistant.talking_head.formula_weights import save_formula_checkpoint

    ckpt = save_formula_checkpoint(tmp_path / "formula.pth")
    out = tmp_path / "w2l.mp4"
    rc = main(["lipsync", str(_avatar()), str(speech), "-o", str(out), "--engine", "wav2lip", "--checkpoint",
               str(ckpt), "--quality", "standard", "--fps", "10", "--device", "cpu", "--json"])  # fmt: skip
    data = _json(capsys)
    assert rc == 0
    assert data["engine"] == "wav2lip" and data["fallback_reasons"] == []
    assert (data["resolution"], data["frames"], data["device"]) == ("1280x720", 15, "cpu")
    assert probe(out).has_audio


def test_lipsync_missing_inputs(tmp_path: Path, speech: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lipsync", str(tmp_path / "nope.jpg"), str(speech), "-o", str(tmp_path / "o.mp4")]) == 2
    assert "Image not found" in capsys.readouterr().err
    assert main(["lipsync", str(_avatar()), str(tmp_path / "nope.wav"), "-o", str(tmp_path / "o.mp4")]) == 2
    assert "Audio file not found" in capsys.readouterr().err


def test_video_info(speech: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "v.mp4"
    assert main(["lipsync", str(_avatar()), str(speech), "-o", str(out), "--engine", "static",
                 "--quality", "standard", "--device", "cpu"]) == 0  # fmt: skip
    assert "Wrote" in capsys.readouterr().out
    assert main(["video", "info", str(out), "--json"]) == 0
    info = _json(capsys)
    assert (info["width"], info["height"], info["fps"]) == (1280, 720, 25.0)
    assert (info["video_codec"], info["audio_codec"], info["audio_sample_rate_hz"]) == ("h264", "aac", 22050)
    assert info["duration_s"] == pytest.approx(1.52, abs=0.05)
    assert main(["video", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "h264 1280x720 @ 25 fps" in text and "aac 22050 Hz" in text
    assert main(["video", "info", str(tmp_path / "missing.mp4")]) == 2
    assert "not found" in capsys.readouterr().err


def test_bench_lipsync_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "lipsync", "--engines", "light", "static", "--quality", "standard", "--seconds", "1",
               "--avatar", str(_avatar()), "--json"])  # fmt: skip
    rows = _json(capsys)
    assert rc == 0
    assert [(r["engine"], r["quality_mode"]) for r in rows] == [("light", "standard"), ("static", "standard")]
    for row in rows:
        assert row["error"] is None
        assert row["frames"] == 25 and row["frames_per_s"] > 0 and row["realtime_factor"] > 0
        assert (row["width"], row["height"]) == (1280, 720)
