"""The Wav2Lip network, mel front end and checkpoint loader, held against golden data from the original.

Golden data lives in `tests/data/wav2lip/` (its README says where it came from); the weights are the
spec's formula weights, saved as a DataParallel-style checkpoint and read back through `load_wav2lip` (the
real loading path).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from assistant.errors import CheckpointError
from assistant.talking_head.formula_weights import formula_state_dict, save_formula_checkpoint
from assistant.talking_head.wav2lip_engine import feather_mask
from assistant.talking_head.wav2lip_fast import (
    BF16_MAX_ERROR_255,
    BF16_MAX_P999_255,
    BF16_MIN_PSNR_DB,
    MOUTH_ROW,
    FastWav2Lip,
    cpu_precision,
    precision_error,
)
from assistant.talking_head.wav2lip_net import (
    MEL,
    Wav2Lip,
    face_input,
    load_wav2lip,
    mel_chunks,
    melspectrogram,
)

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "wav2lip"


def golden(name: str) -> np.ndarray:
    path = GOLDEN / name
    if not path.is_file():
        pytest.fail(f"Golden data {path} is missing from the repository (see tests/data/wav2lip/README.md)")
    return np.load(path)


@pytest.fixture(scope="module")
def formula_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_formula_checkpoint(tmp_path_factory.mktemp("w2l") / "wav2lip.pth")


@pytest.fixture(scope="module")
def model(formula_ckpt: Path) -> Wav2Lip:
    return load_wav2lip(formula_ckpt, "cpu")


# ---- network layout ----
def test_state_dict_keys_shapes_and_dtypes_match_the_original() -> None:
    path = GOLDEN / "state_dict_keys.json"
    if not path.is_file():
        pytest.fail(f"Golden key list {path} is missing (see tests/data/wav2lip/README.md)")
    expected = [(key, tuple(shape), dtype) for key, shape, dtype in json.loads(path.read_text())]
    with torch.device("meta"):
        net = Wav2Lip()
    got = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in net.state_dict().items()]
    assert got == expected  # same keys, same order, same shapes and dtypes
    assert sum(p.numel() for p in net.parameters()) == 36_298_035


# ---- audio front end ----
def test_melspectrogram_matches_golden() -> None:
    mel = melspectrogram(golden("wav.npy"))
    ref = golden("mel.npy")
    assert mel.shape == ref.shape == (80, 161)
    assert mel.dtype == np.float32
    np.testing.assert_allclose(mel, ref, atol=1e-4, rtol=0)


def test_mel_chunks_equal_golden() -> None:
    chunks = mel_chunks(golden("mel.npy"), 25.0)
    ref = golden("mel_chunks.npy")
    assert chunks.shape == ref.shape == (47, 80, 16)
    np.testing.assert_array_equal(chunks, ref)


def test_mel_chunks_count_follows_the_original_rule() -> None:
    mel = np.zeros((80, 100), np.float32)
    for fps in (25.0, 30.0, 24.0):
        first_past = next(i for i in range(1000) if int(i * 80 / fps) + 16 > 100)
        chunks = mel_chunks(mel, fps)
        assert len(chunks) == first_past + 1
        np.testing.assert_array_equal(chunks[-1], mel[:, -16:])  # the last window is right-aligned


def test_short_audio_is_padded_to_a_full_window() -> None:
    wav = 0.1 * np.sin(np.arange(1600) * 2 * np.pi * 220 / MEL.SAMPLE_RATE).astype(np.float32)  # 0.1 s
    mel = melspectrogram(wav)
    assert mel.shape == (80, 9)
    chunks = mel_chunks(mel, 25.0)
    assert chunks.shape[1:] == (80, 16)
    np.testing.assert_array_equal(chunks[0][:, :9], mel)
    assert np.all(chunks[0][:, 9:] == -MEL.MAX_ABS_VALUE)  # padded with silence
    assert mel_chunks(melspectrogram(np.zeros(10, np.float32)), 25.0).shape[1:] == (80, 16)


def test_face_input_matches_golden() -> None:
    np.testing.assert_allclose(face_input(golden("faces_u8.npy")), golden("face_in.npy"), atol=1e-7, rtol=0)


# ---- weights and output ----
def test_formula_weights_follow_the_spec() -> None:
    sd = formula_state_dict()
    assert len(sd) == 352
    assert sd["face_encoder_blocks.0.0.conv_block.1.num_batches_tracked"].dtype == torch.int64
    w = sd["audio_encoder.0.conv_block.0.weight"]  # (32, 1, 3, 3), gain 2.5 over fan-in 9
    assert w.dtype == torch.float32
    assert abs(float(w.std()) - (2.5 / 9) ** 0.5) < 0.15
    var = sd["face_decoder_blocks.1.0.conv_block.1.running_var"]
    assert float(var.min()) >= 0.5 and float(var.max()) <= 2.0


def test_output_from_loaded_checkpoint_matches_golden(model: Wav2Lip) -> None:
    assert not model.training
    with torch.no_grad():
        out = model(torch.from_numpy(golden("mel_in.npy")), torch.from_numpy(golden("face_in.npy"))).numpy()
    ref = golden("out.npy")
    assert out.shape == ref.shape == (8, 3, 96, 96)
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)


def test_split_path_equals_full_forward(model: Wav2Lip) -> None:
    mel = torch.from_numpy(golden("mel_in.npy"))  # (8, 1, 80, 16)
    faces = torch.from_numpy(golden("face_in.npy"))  # (8, 6, 96, 96)
    with torch.no_grad():
        split = model.decode(model.encode_audio(mel), model.encode_face(faces))
        np.testing.assert_allclose(split.numpy(), golden("out.npy"), atol=1e-4, rtol=0)
        # A still avatar: the face features of ONE face, computed once, broadcast over the audio batch.
        still = model.decode(model.encode_audio(mel), model.encode_face(faces[:1]))
        full = model(mel, faces[:1].expand(8, -1, -1, -1))
    torch.testing.assert_close(still, full, atol=1e-5, rtol=0)
    assert float((still[0] - still[1]).abs().max()) > 1e-3  # the audio does change the face


# ---- the CPU fast path (wav2lip_fast) ----
def _fast_outputs(model: Wav2Lip, precision: str, mouth_only: bool) -> torch.Tensor:
    """The fast path on the golden inputs, each frame with its own face (the engine's is one face, set once)."""
    fast = FastWav2Lip(model, precision)  # type: ignore[arg-type]
    mel = torch.from_numpy(golden("mel_in.npy"))
    faces = torch.from_numpy(golden("face_in.npy"))
    outs = []
    for i in range(len(mel)):
        with torch.inference_mode():
            fast.set_face(model.encode_face(faces[i : i + 1]))
        outs.append(fast.decode(mel[i : i + 1], mouth_only=mouth_only))
    return torch.cat(outs)


def test_fast_fp32_whole_face_matches_golden(model: Wav2Lip) -> None:
    out = _fast_outputs(model, "fp32", mouth_only=False)  # BatchNorm folded into the convolutions
    np.testing.assert_allclose(out.numpy(), golden("out.npy"), atol=1e-4, rtol=0)


def test_fast_fp32_mouth_half_matches_golden_where_the_blend_looks(model: Wav2Lip) -> None:
    out = _fast_outputs(model, "fp32", mouth_only=True).numpy()
    ref = golden("out.npy")
    np.testing.assert_allclose(out[:, :, MOUTH_ROW:], ref[:, :, MOUTH_ROW:], atol=1e-4, rtol=0)
    # the rows above were left out (they would differ), so the test would see a slicing error that reached them
    assert np.abs(out[:, :, : MOUTH_ROW - 2] - ref[:, :, : MOUTH_ROW - 2]).max() > 1e-2


def test_fast_path_batches_frames_against_one_still_face(model: Wav2Lip) -> None:
    mel = torch.from_numpy(golden("mel_in.npy"))
    faces = torch.from_numpy(golden("face_in.npy"))
    fast = FastWav2Lip(model, "fp32")
    with torch.inference_mode():
        fast.set_face(model.encode_face(faces[:1]))
        full = model(mel, faces[:1].expand(8, -1, -1, -1))
    batched = fast.decode(mel)
    torch.testing.assert_close(batched[:, :, MOUTH_ROW:], full[:, :, MOUTH_ROW:], atol=1e-4, rtol=0)


def test_bf16_error_against_fp32_on_golden_data_is_within_its_bound(model: Wav2Lip) -> None:
    ref = torch.from_numpy(golden("out.npy"))
    err = precision_error(ref, _fast_outputs(model, "bf16", mouth_only=True))
    assert err.max_diff_255 <= BF16_MAX_ERROR_255, err
    assert err.p999_diff_255 <= BF16_MAX_P999_255, err
    assert err.psnr_db >= BF16_MIN_PSNR_DB, err
    assert err.max_diff_255 > 0.05  # it did run in bf16: fp32 is within 0.001 levels (test above)


def test_precision_error_measures_levels_of_255() -> None:
    a = torch.full((2, 3, 96, 96), 0.5)
    b = a.clone()
    b[0, 0, 60, 10] += 10 / 255  # one pixel channel of the mouth half, 10 levels off
    b[0, 0, 10, 10] += 0.5  # above the mouth half: not counted
    err = precision_error(a, b)
    assert err.max_diff_255 == pytest.approx(10, abs=1e-4) and err.p999_diff_255 == pytest.approx(0, abs=1e-4)
    assert err.psnr_db == pytest.approx(10 * np.log10(255**2 / (100 / (2 * 3 * 49 * 96))), abs=1e-3)
    assert precision_error(a, a).psnr_db == float("inf")


@pytest.mark.parametrize("height", [*range(16, 130), 171, 196, 250, 333, 480, 719])
def test_the_feathered_blend_never_shows_rows_the_mouth_decoder_left_out(height: int) -> None:
    shown = np.flatnonzero(feather_mask(height, 64)[:, :, 0].max(axis=1) > 0)
    # cv2.resize INTER_LINEAR from 96 rows to `height`: output row y reads source rows floor(src) and floor(src) + 1
    src = (shown[0] + 0.5) * 96 / height - 0.5
    assert int(np.floor(src)) >= MOUTH_ROW


def test_reduced_precision_only_when_asked() -> None:
    assert cpu_precision(False) == "fp32"
    assert cpu_precision(True) in ("fp32", "bf16")


def test_fast_path_refuses_an_unknown_precision(model: Wav2Lip) -> None:
    with pytest.raises(ValueError, match="precision"):
        FastWav2Lip(model, "fp16")  # type: ignore[arg-type]


# ---- checkpoint errors ----
def _skeleton(drop: str | None = None, extra: str | None = None, reshape: str | None = None) -> dict:
    """A checkpoint dict with the right keys but 1-element storages (expanded), so files stay tiny."""
    with torch.device("meta"):
        ref = Wav2Lip().state_dict()
    state = {}
    for k, v in ref.items():
        if k == drop:
            continue
        shape = (7,) if k == reshape else tuple(v.shape)
        state[f"module.{k}"] = (
            torch.zeros(1, dtype=v.dtype).expand(shape) if shape else torch.zeros((), dtype=v.dtype)
        )
    if extra:
        state[f"module.{extra}"] = torch.zeros(1)
    return {"state_dict": state, "optimizer": {}, "global_step": 0, "global_epoch": 0}


@pytest.mark.parametrize(
    ("kwargs", "key", "words"),
    [
        (
            {"drop": "audio_encoder.3.conv_block.1.running_var"},
            "audio_encoder.3.conv_block.1.running_var",
            "missing",
        ),
        ({"extra": "disc.conv.weight"}, "disc.conv.weight", "unexpected"),
        ({"reshape": "output_block.1.bias"}, "output_block.1.bias", "shape (7,)"),
    ],
)
def test_mismatched_checkpoint_names_the_key(tmp_path: Path, kwargs: dict, key: str, words: str) -> None:
    path = tmp_path / "wav2lip.pth"
    torch.save(_skeleton(**kwargs), path)
    with pytest.raises(CheckpointError) as info:
        load_wav2lip(path, "cpu")
    assert f"'{key}'" in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize("name", ["wav2lip", "wav2lip_gan"])
def test_missing_checkpoint_says_how_to_download(tmp_path: Path, name: str) -> None:
    with pytest.raises(CheckpointError, match=rf"run `assistant models download {name}`"):
        load_wav2lip(tmp_path / f"{name}.pth", "cpu")


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_loading_refuses_a_pickle_with_code(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "wav2lip.pth"
    ckpt = _skeleton()
    ckpt["hook"] = _Payload(marker)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="Refusing to load"):
        load_wav2lip(path, "cpu")
    assert not marker.exists()

    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    with pytest.raises(CheckpointError):
        load_wav2lip(plain, "cpu")
    assert not marker.exists()


def test_corrupt_or_foreign_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "wav2lip.pth"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="Cannot read checkpoint"):
        load_wav2lip(corrupt, "cpu")
    foreign = tmp_path / "other.pth"
    torch.save({"epoch": 3, "weights": [1, 2, 3]}, foreign)
    with pytest.raises(CheckpointError, match="no 'state_dict'"):
        load_wav2lip(foreign, "cpu")
