"""assistant.video with the real ffmpeg/ffprobe: encode, mux, pad/trim to the audio, A/V sync, errors, probe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.audio.io import load_audio, write_wav
from assistant.errors import VideoEncodeError
from assistant.video import FrameWriter, extract_audio, probe, read_frames

pytestmark = pytest.mark.integration

W, H, FPS = 320, 240, 25


def _tone_wav(path: Path, duration_s: float, sample_rate_hz: int = 22050) -> Path:
    t = np.arange(int(duration_s * sample_rate_hz)) / sample_rate_hz
    return write_wav(path, 0.3 * np.sin(2 * np.pi * 440 * t), sample_rate_hz)


def _gray(level: int, w: int = W, h: int = H) -> np.ndarray:
    return np.full((h, w, 3), level, np.uint8)


@pytest.mark.parametrize("frames_given", [20, 50, 80])  # short of, exactly at, past the 2 s audio
def test_video_is_as_long_as_the_audio(tmp_path: Path, frames_given: int) -> None:
    wav = _tone_wav(tmp_path / "a.wav", 2.0)
    out = tmp_path / "deep" / "folder" / "out.mp4"  # folders that do not exist yet
    with FrameWriter(out, W, H, FPS, audio_path=wav) as writer:
        for i in range(frames_given):
            writer.write(_gray(i % 200))
    info = probe(out)
    assert out.is_file()
    assert info.has_video and info.has_audio
    assert (info.video_codec, info.audio_codec, info.pixel_format) == ("h264", "aac", "yuv420p")
    assert (info.width, info.height) == (W, H)
    assert info.fps == pytest.approx(FPS)
    assert info.frames == 50
    assert abs(info.video_duration_s - 2.0) <= 1 / FPS
    assert abs(info.video_duration_s - info.audio_duration_s) <= 1 / FPS
    assert info.audio_sample_rate_hz == 22050
    assert not list(out.parent.glob(".*.part"))  # no leftovers


def test_faststart_puts_the_index_before_the_media(tmp_path: Path) -> None:
    wav = _tone_wav(tmp_path / "a.wav", 1.0)
    with FrameWriter(tmp_path / "o.mp4", W, H, FPS, audio_path=wav) as writer:
        for _ in range(25):
            writer.write(_gray(90))
    data = (tmp_path / "o.mp4").read_bytes()
    assert 0 < data.index(b"moov") < data.index(b"mdat")


def test_audio_and_video_stay_in_sync(tmp_path: Path) -> None:
    """A click at 1.20 s and a white flash at frame 30 (1.20 s) must come out within 40 ms of each other."""
    rate = 16000
    audio = np.zeros(3 * rate, np.float32)
    start = int(1.2 * rate)
    audio[start : start + int(0.1 * rate)] = 0.5 * np.sin(
        2 * np.pi * 1000 * np.arange(int(0.1 * rate)) / rate
    )
    wav = write_wav(tmp_path / "click.wav", audio, rate)
    out = tmp_path / "sync.mp4"
    with FrameWriter(out, W, H, FPS, audio_path=wav) as writer:
        for i in range(75):
            writer.write(_gray(255 if 30 <= i < 33 else 0))
    info = probe(out)

    frames_mean = [float(f.mean()) for f in read_frames(out)]
    flash_s = info.video_start_s + next(i for i, m in enumerate(frames_mean) if m > 128) / info.fps

    decoded = load_audio(extract_audio(out, tmp_path / "back.wav", rate), rate)
    click_s = info.audio_start_s + int(np.argmax(np.abs(decoded) > 0.1)) / rate

    assert flash_s == pytest.approx(1.2, abs=0.001)
    assert abs(click_s - flash_s) <= 0.040


def test_frames_round_trip_through_the_encoder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = cv2_like_gradient()
    out = tmp_path / "rt.mp4"
    with FrameWriter(out, W, H, FPS, crf=12) as writer:  # no audio: exactly the frames written
        for _ in range(5):
            writer.write(np.clip(base + rng.integers(-2, 3, base.shape), 0, 255).astype(np.uint8))
    frames = list(read_frames(out))
    assert len(frames) == 5 and probe(out).has_audio is False
    assert frames[0].shape == (H, W, 3)
    assert np.abs(frames[0].astype(int) - base).mean() < 4  # lossy but close


def cv2_like_gradient() -> np.ndarray:
    """A smooth BGR gradient: blue along x, green along y, red constant."""
    x = np.linspace(0, 255, W)[None, :].repeat(H, 0)
    y = np.linspace(0, 255, H)[:, None].repeat(W, 1)
    return np.stack([x, y, np.full_like(x, 128)], axis=-1).astype(np.int64)


def test_odd_frame_size_is_cropped_to_even(tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    with FrameWriter(out, 321, 241, FPS) as writer:
        writer.write(_gray(50, 321, 241))
    info = probe(out)
    assert (info.width, info.height) == (320, 240)


def test_ffmpeg_failure_carries_its_stderr(tmp_path: Path) -> None:
    with (
        pytest.raises(VideoEncodeError, match="(?i)preset"),
        FrameWriter(tmp_path / "bad.mp4", W, H, FPS, preset="no-such-preset") as writer,
    ):
        for _ in range(200):
            writer.write(_gray(10))
    assert not (tmp_path / "bad.mp4").exists()


def test_undecodable_audio_is_reported(tmp_path: Path) -> None:
    bogus = tmp_path / "speech.wav"
    bogus.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(VideoEncodeError, match="Invalid data"):
        FrameWriter(tmp_path / "x.mp4", W, H, FPS, audio_path=bogus)


def test_exception_in_block_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "aborted.mp4"
    with pytest.raises(RuntimeError, match="producer broke"), FrameWriter(out, W, H, FPS) as writer:
        writer.write(_gray(1))
        raise RuntimeError("producer broke")
    assert not out.exists()
    assert not list(tmp_path.glob(".*.part"))


def test_wrong_frame_shape_is_refused(tmp_path: Path) -> None:
    with FrameWriter(tmp_path / "s.mp4", W, H, FPS) as writer:
        with pytest.raises(ValueError, match=r"\(240, 320, 3\) uint8"):
            writer.write(np.zeros((H, W), np.uint8))
        writer.write(_gray(3))


def test_probe_of_missing_file_and_of_a_wav(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        probe(tmp_path / "nope.mp4")
    info = probe(_tone_wav(tmp_path / "t.wav", 1.5, 16000))
    assert info.has_audio and not info.has_video
    assert info.audio_sample_rate_hz == 16000
    assert info.duration_s == pytest.approx(1.5, abs=0.01)
