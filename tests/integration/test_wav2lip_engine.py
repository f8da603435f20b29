"""The Wav2Lip engine end to end: real network (formula weights as a checkpoint), real face detection, real
speech from espeak-ng, real ffmpeg; and its failures (no face or checkpoint, bad audio, no CUDA or memory)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import soundfile as sf
import torch

from assistant.audio.io import audio_duration_s, load_audio
from assistant.cancel import CancelToken
from assistant.errors import (
    AudioFormatError,
    AudioTooLongError,
    Cancelled,
    CheckpointError,
    NoFaceError,
    VideoOutOfMemoryError,
)
from assistant.talking_head.base import TalkingHeadEngine, fit_frame, load_avatar
from assistant.talking_head.formula_weights import save_formula_checkpoint
from assistant.talking_head.wav2lip_engine import Wav2LipTalkingHead
from assistant.talking_head.wav2lip_fast import BF16_MAX_ERROR_255, BF16_MIN_PSNR_DB, cpu_precision
from assistant.video import probe, read_frames

pytestmark = pytest.mark.integration

SIZE = (320, 240)  # (width, height): reduced from 1280x720 to keep the test fast on CPU


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wav2lip")


@pytest.fixture(scope="module")
def checkpoint(work: Path) -> Path:
    return save_formula_checkpoint(work / "wav2lip.pth")


@pytest.fixture(scope="module")
def avatar(work: Path) -> Path:
    path = work / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="module")
def speech(work: Path) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is needed for this test: sudo apt-get install espeak-ng")
    path = work / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(path), "Hello, nice to meet you."], check=True, capture_output=True
    )
    return path


@pytest.fixture(scope="module")
def engine(avatar: Path, checkpoint: Path, work: Path) -> Wav2LipTalkingHead:
    return Wav2LipTalkingHead(
        avatar, device="cpu", quality_mode="standard", model_path=checkpoint, resolution=SIZE,
        wav2lip_batch_size=16, cache_dir=work / "faces",
    )  # fmt: skip


def test_renders_lip_synced_speech(engine: Wav2LipTalkingHead, speech: Path, work: Path) -> None:
    out = work / "out" / "reply.mp4"
    video = engine.render(speech, out)
    audio_s = audio_duration_s(speech)
    assert 0.8 < audio_s < 3.0  # about a second of real speech
    info = probe(out)
    assert video.mp4_path == out and info.has_video and info.has_audio
    assert (info.video_codec, info.audio_codec, info.pixel_format) == ("h264", "aac", "yuv420p")
    assert (info.width, info.height) == SIZE == (video.width, video.height)
    assert info.fps == pytest.approx(25.0)
    assert abs(info.duration_s - audio_s) <= 1 / 25 + 1e-3
    assert abs(info.video_duration_s - audio_s) <= 1 / 25 + 1e-3
    assert video.frames == info.frames
    assert (video.engine, video.quality_mode, video.device) == ("wav2lip", "standard", "cpu")
    assert isinstance(engine, TalkingHeadEngine) and engine.name == "wav2lip"
    photo_frame, _ = fit_frame(load_avatar(engine.avatar_image_path), *SIZE)
    np.testing.assert_array_equal(engine.canvas, photo_frame)  # framed like every other engine

    frames = np.stack(list(read_frames(out))).astype(np.float32)  # (n, 240, 320, 3)
    b = engine.face_box
    mouth = frames[:, b.y1 + b.height * 5 // 8 : b.y2 - 4, b.x1 + 6 : b.x2 - 6]
    upper_face = frames[:, b.y1 + 2 : b.y1 + b.height // 2 - 2, b.x1 + 2 : b.x2 - 2]
    # The mouth moves with the audio; the upper face stays the photo's (codec noise only).
    assert mouth.std(axis=0).mean() > 3.0
    assert mouth.std(axis=0).mean() > 10 * upper_face.std(axis=0).mean()
    left = (slice(None), slice(None), slice(0, b.x1 - 8))
    assert np.abs(frames[left] - engine.canvas[left[1:]]).mean() < 6  # the rest is the photo (+ H.264 noise)


def test_feathered_blend_has_no_box_edge_while_box_mode_replaces_the_box(
    avatar: Path, checkpoint: Path, work: Path
) -> None:
    black_face = np.zeros((96, 96, 3), np.float32)
    for blend in ("feather", "box"):
        eng = Wav2LipTalkingHead(
            avatar,
            device="cpu",
            model_path=checkpoint,
            resolution=SIZE,
            blend=blend,
            cache_dir=work / "faces",
        )
        frame = eng.compose_frame(black_face)
        canvas, b = eng.canvas, eng.face_box
        assert frame.shape == canvas.shape and frame.dtype == np.uint8
        outside = np.ones(canvas.shape[:2], bool)
        outside[b.y1 : b.y2, b.x1 : b.x2] = False
        np.testing.assert_array_equal(frame[outside], canvas[outside])
        box, photo = frame[b.y1 : b.y2, b.x1 : b.x2], canvas[b.y1 : b.y2, b.x1 : b.x2]
        if blend == "box":
            assert box.max() == 0  # the whole box replaced
        else:
            for edge in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
                np.testing.assert_array_equal(box[edge], photo[edge])  # no hard edge: the border is the photo
            np.testing.assert_array_equal(box[: b.height // 2], photo[: b.height // 2])  # upper face kept
            mouth = box[b.height * 3 // 4, b.width // 2]
            assert mouth.max() <= 2  # fully the generated face around the mouth


def test_estimate_comes_from_measured_runs(avatar: Path, checkpoint: Path, work: Path) -> None:
    eng = Wav2LipTalkingHead(
        avatar, device="cpu", model_path=checkpoint, resolution=SIZE, cache_dir=work / "faces"
    )
    short, long = eng.estimate_generation_time(1.0), eng.estimate_generation_time(10.0)  # after a warm-up
    assert 0 < short < long
    assert eng.get_model_info()["model_loaded"]


def test_cleanup_frees_the_model_and_generate_reloads_it(
    engine: Wav2LipTalkingHead, speech: Path, work: Path
) -> None:
    engine.close()  # the protocol's name for cleanup()
    info = engine.get_model_info()
    assert info["model_loaded"] is False
    assert info["output_resolution"] == SIZE and info["model_name"] == "wav2lip"
    assert Path(engine.generate(speech, work / "after-cleanup.mp4")).is_file()
    assert engine.get_model_info()["model_loaded"] is True


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: out of memory"),
    ],
)
def test_out_of_memory_becomes_a_dedicated_error_and_the_engine_survives(
    engine: Wav2LipTalkingHead, speech: Path, work: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def explode(*args: object, **kwargs: object) -> torch.Tensor:
        raise error

    out = work / f"oom-{type(error).__name__}.mp4"
    monkeypatch.setattr(engine, "_infer", explode)  # the network call, CPU fast path or not
    with pytest.raises(VideoOutOfMemoryError, match="smaller wav2lip_batch_size") as info:
        engine.generate(speech, out)
    assert isinstance(info.value, RuntimeError) and info.value.__cause__ is error
    assert not out.exists() and not list(work.glob(f".{out.name}*"))  # no partial file left behind
    monkeypatch.undo()
    assert probe(engine.generate(speech, out)).has_video  # still usable


def test_other_runtime_errors_are_not_disguised_as_oom(
    engine: Wav2LipTalkingHead, speech: Path, work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(engine, "_infer", broken)
    with pytest.raises(RuntimeError, match="shape mismatch") as info:
        engine.generate(speech, work / "broken.mp4")
    assert not isinstance(info.value, VideoOutOfMemoryError)


def test_cancel_stops_generation(engine: Wav2LipTalkingHead, speech: Path, work: Path) -> None:
    token = CancelToken()
    token.cancel("new user speech")
    with pytest.raises(Cancelled, match="new user speech"):
        engine.generate(speech, work / "cancelled.mp4", cancel=token)
    assert not (work / "cancelled.mp4").exists()


def test_no_face_image(tmp_path: Path, checkpoint: Path) -> None:
    yy, xx = np.mgrid[0:360, 0:480]
    blank = tmp_path / "landscape.png"
    cv2.imwrite(str(blank), np.dstack([(xx / 2) % 256, (yy / 2) % 256, (xx + yy) % 256]).astype(np.uint8))
    with pytest.raises(NoFaceError, match="front-facing face") as info:
        Wav2LipTalkingHead(
            blank, device="cpu", model_path=checkpoint, resolution=SIZE, cache_dir=tmp_path / "faces"
        )
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("mode", "name"), [("standard", "wav2lip"), ("high", "wav2lip_gan")])
def test_missing_checkpoint_says_how_to_get_it(avatar: Path, tmp_path: Path, mode: str, name: str) -> None:
    with pytest.raises(CheckpointError, match=rf"assistant models download {name}`"):
        Wav2LipTalkingHead(
            avatar, device="cpu", quality_mode=mode, model_path=tmp_path / "models" / f"{name}.pth",
            resolution=SIZE, cache_dir=tmp_path / "faces",
        )  # fmt: skip


def test_missing_avatar(tmp_path: Path, checkpoint: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Avatar image not found"):
        Wav2LipTalkingHead(tmp_path / "nobody.jpg", device="cpu", model_path=checkpoint)


def test_cuda_requested_without_cuda(avatar: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available.*'cpu'"):
        Wav2LipTalkingHead(avatar, device="cuda", model_path=checkpoint, resolution=SIZE)


def test_bad_audio_inputs(engine: Wav2LipTalkingHead, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        engine.generate(tmp_path / "missing.wav", tmp_path / "a.mp4")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(AudioFormatError) as info:
        engine.generate(corrupt, tmp_path / "b.mp4")
    assert isinstance(info.value, ValueError)
    long_wav = tmp_path / "long.wav"
    sf.write(str(long_wav), np.zeros(8000 * 301, np.int16), 8000, subtype="PCM_16")  # 5 min 1 s of silence
    with pytest.raises(AudioTooLongError, match="300") as info2:
        engine.generate(long_wav, tmp_path / "c.mp4")
    assert isinstance(info2.value, ValueError)
    assert not any(tmp_path.glob("*.mp4"))


def _patches(engine: Wav2LipTalkingHead, speech: Path) -> np.ndarray:
    wav = load_audio(speech, 16000)
    return np.stack([p for batch in engine.face_patches(wav) for p in batch]).astype(np.float64)


@pytest.mark.parametrize("blend", ["feather", "box"])
def test_cpu_fast_path_draws_the_original_networks_frames(
    avatar: Path, checkpoint: Path, work: Path, speech: Path, blend: str
) -> None:
    def make(**kwargs: object) -> Wav2LipTalkingHead:
        return Wav2LipTalkingHead(
            avatar, device="cpu", model_path=checkpoint, resolution=SIZE, blend=blend,  # type: ignore[arg-type]
            cache_dir=work / "faces", **kwargs,  # type: ignore[arg-type]
        )  # fmt: skip

    original = _patches(make(cpu_fast_path=False), speech)
    fast_fp32 = make(use_half_precision=False)
    info = fast_fp32.get_model_info()
    assert info["precision"] == "fp32" and info["mouth_only"] == (blend == "feather")
    # Folded BatchNorm and the mouth-only decoder change only float rounding: at most 1 level after uint8 rounding.
    assert np.abs(_patches(fast_fp32, speech) - original).max() <= 1.0
    reduced = make(use_half_precision=True)
    assert reduced.get_model_info()["precision"] == cpu_precision(True)
    diff = _patches(reduced, speech) - original
    psnr = 10 * np.log10(255**2 / max(1e-12, float((diff**2).mean())))
    assert psnr >= BF16_MIN_PSNR_DB, f"{reduced.get_model_info()['precision']} patches at {psnr:.1f} dB"
    # what bench lipsync reports: the network's own distance from fp32 (None when it runs fp32)
    err = reduced.precision_error(load_audio(speech, 16000))
    assert fast_fp32.precision_error(load_audio(speech, 16000)) is None
    if cpu_precision(True) == "bf16":
        assert err is not None and err.psnr_db >= BF16_MIN_PSNR_DB and err.max_diff_255 <= BF16_MAX_ERROR_255


def test_network_threads_leave_a_core_and_are_restored(engine: Wav2LipTalkingHead, speech: Path) -> None:
    before = torch.get_num_threads()
    assert engine.cpu_threads == max(1, before - 1)
    seen: list[int] = []
    original = engine._fast.decode  # type: ignore[union-attr]

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)  # type: ignore[arg-type]

    engine._fast.decode = spy  # type: ignore[union-attr,method-assign]
    try:
        _patches(engine, speech)
    finally:
        del engine._fast.decode  # type: ignore[union-attr]
    assert seen and set(seen) == {engine.cpu_threads}
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="cpu_threads"):
        Wav2LipTalkingHead(
            engine.avatar_image_path, device="cpu", model_path=engine.model_path, cpu_threads=0
        )


def test_speed_is_measured_end_to_end(engine: Wav2LipTalkingHead) -> None:
    rate = engine.measure_realtime(0.5)  # seconds of video per second of work: a figure, not a goal, here
    assert rate > 0 and np.isfinite(rate)
    with pytest.raises(ValueError, match="seconds"):
        engine.measure_realtime(0)


def test_the_profile_times_wav2lip_with_the_configs_options(
    avatar: Path, checkpoint: Path, tmp_path: Path
) -> None:
    from assistant.config import load_settings, settings_to_dict, validate_dict
    from assistant.talking_head.speed import measure_cpu_lipsync

    data = settings_to_dict(load_settings(user_path=tmp_path / "none.yaml", env={}))
    data["paths"].update(
        data_dir=str(tmp_path / "data"), models_dir=str(tmp_path / "models"), cache_dir=str(tmp_path)
    )
    data["talking_head"].update(avatar_image=str(avatar))
    data["talking_head"]["models"].update(wav2lip=str(checkpoint))
    rate = measure_cpu_lipsync(validate_dict(data), "wav2lip")  # a figure: whether it keeps up is the bench's
    assert rate is not None and rate > 0
