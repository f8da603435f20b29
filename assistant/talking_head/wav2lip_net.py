"""The Wav2Lip network, its checkpoint loader, and the mel spectrogram and mel chunks it was trained on.

Faithful to the published Wav2Lip so that `wav2lip.pth` / `wav2lip_gan.pth` load unchanged and give the
original's output (spec `shared/spec/wav2lip.md`; golden data checks it). The network is split so that a
still avatar pays for its face encoder once: `encode_face` -> skip features (cached), then per frame
`encode_audio` + `decode`.

Needs torch, numpy, scipy and librosa (only its Slaney mel filterbank). CUDA is used when given, not needed.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy.signal import lfilter
from torch import Tensor, nn

from assistant.errors import CheckpointError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MelConfig:
    """The audio front end the published weights were trained with."""

    SAMPLE_RATE: int = 16000  # Hz
    N_FFT: int = 800  # 50 ms
    HOP: int = 200  # 12.5 ms at 16 kHz -> 80 mel frames per second
    WIN: int = 800  # 50 ms Hann window
    N_MELS: int = 80
    FMIN: float = 55.0  # Hz
    FMAX: float = 7600.0  # Hz
    PREEMPHASIS: float = 0.97
    MIN_LEVEL_DB: float = -100.0
    REF_LEVEL_DB: float = 20.0
    MAX_ABS_VALUE: float = 4.0  # normalised mel lies in [-4, 4]; -4 is silence
    MEL_STEP: int = 16  # mel frames per video frame: 0.2 s of audio
    MEL_FPS: float = 80.0  # SAMPLE_RATE / HOP


MEL = MelConfig()
FACE_SIZE = 96  # the network's face crop is 96 x 96


# ---- audio ----
@lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    import librosa  # imported late: it is slow to import and only the filterbank is needed

    # (80, 401) float32, Slaney mel scale with Slaney area normalisation (librosa's default)
    return librosa.filters.mel(
        sr=MEL.SAMPLE_RATE, n_fft=MEL.N_FFT, n_mels=MEL.N_MELS, fmin=MEL.FMIN, fmax=MEL.FMAX
    ).astype(np.float32)


def _stft_magnitude(y: np.ndarray) -> np.ndarray:
    """|STFT| with a centred, reflect-padded Hann window: (N_FFT // 2 + 1, 1 + len(y) // HOP)."""
    pad = MEL.N_FFT // 2
    # Reflect padding needs more samples than the pad; shorter audio (< 25 ms) falls back to zero padding.
    mode = "reflect" if len(y) > pad else "constant"
    padded = np.pad(y.astype(np.float64), pad, mode=mode)
    n_frames = 1 + (len(padded) - MEL.N_FFT) // MEL.HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, MEL.N_FFT)[:: MEL.HOP][:n_frames]
    window = np.hanning(MEL.WIN + 1)[:-1]  # periodic Hann, as scipy.signal.get_window("hann") gives
    return np.abs(np.fft.rfft(frames * window, axis=1)).T


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """16 kHz mono float audio (n,) -> normalised mel spectrogram (80, 1 + n // 200) float32 in [-4, 4]."""
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    if wav.size == 0:
        raise ValueError("melspectrogram needs at least one audio sample")
    emphasised = lfilter([1.0, -MEL.PREEMPHASIS], [1.0], wav)
    mel = _mel_basis().astype(np.float64) @ _stft_magnitude(emphasised)
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - MEL.REF_LEVEL_DB
    scaled = 2 * MEL.MAX_ABS_VALUE * (db - MEL.MIN_LEVEL_DB) / -MEL.MIN_LEVEL_DB - MEL.MAX_ABS_VALUE
    return np.clip(scaled, -MEL.MAX_ABS_VALUE, MEL.MAX_ABS_VALUE).astype(np.float32)


def mel_chunks(mel: np.ndarray, fps: float) -> np.ndarray:
    """Cut an (80, T) mel into one (80, 16) window per video frame: (n_frames, 80, 16) float32.

    Frame i starts at mel frame int(i * 80 / fps); once a window would run past the end, one last
    right-aligned window is added. Mel shorter than 16 frames (~0.2 s of audio) is padded on the right
    with silence.
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 2 or mel.shape[0] != MEL.N_MELS:
        raise ValueError(f"mel must be ({MEL.N_MELS}, T), got {mel.shape}")
    if mel.shape[1] < MEL.MEL_STEP:
        silence = np.full((MEL.N_MELS, MEL.MEL_STEP - mel.shape[1]), -MEL.MAX_ABS_VALUE, np.float32)
        mel = np.concatenate([mel, silence], axis=1)
    n_mel = mel.shape[1]
    step = MEL.MEL_FPS / fps  # mel frames per video frame
    chunks = []
    i = 0
    while True:
        start = int(i * step)
        if start + MEL.MEL_STEP > n_mel:
            chunks.append(mel[:, n_mel - MEL.MEL_STEP :])
            break
        chunks.append(mel[:, start : start + MEL.MEL_STEP])
        i += 1
    return np.stack(chunks)


def face_input(faces_bgr: np.ndarray) -> np.ndarray:
    """(N, 96, 96, 3) uint8 BGR faces -> (N, 6, 96, 96) float32 in [0, 1]: lower-half-masked, reference."""
    faces = np.asarray(faces_bgr)
    if faces.ndim != 4 or faces.shape[1:] != (FACE_SIZE, FACE_SIZE, 3):
        raise ValueError(f"faces must be (N, {FACE_SIZE}, {FACE_SIZE}, 3), got {faces.shape}")
    masked = faces.copy()
    masked[:, FACE_SIZE // 2 :] = 0  # the lower half is what the network must generate
    both = np.concatenate([masked, faces], axis=3).astype(np.float32) / 255.0  # (N, 96, 96, 6)
    return np.ascontiguousarray(both.transpose(0, 3, 1, 2))


# ---- network ----
class Conv(nn.Module):
    """Conv2d -> BatchNorm2d -> (+ input if residual) -> ReLU."""

    def __init__(self, cin: int, cout: int, k: int, s: int | tuple[int, int], p: int, residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, k, s, p), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class ConvT(nn.Module):
    """ConvTranspose2d -> BatchNorm2d -> ReLU."""

    def __init__(self, cin: int, cout: int, k: int, s: int, p: int, output_padding: int = 0):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, k, s, p, output_padding), nn.BatchNorm2d(cout)
        )
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv_block(x))


def _res(c: int, n: int) -> list[nn.Module]:
    return [Conv(c, c, 3, 1, 1, residual=True) for _ in range(n)]


class Wav2Lip(nn.Module):
    """The Wav2Lip generator: 36,298,035 parameters, about 3.97 G multiply-accumulates per 96 x 96 frame."""

    def __init__(self) -> None:
        super().__init__()
        # Attribute order fixes state_dict() order: face encoder, audio encoder, decoder, output.
        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(Conv(6, 16, 7, 1, 3)),  # 16 x 96 x 96
            nn.Sequential(Conv(16, 32, 3, 2, 1), *_res(32, 2)),  # 32 x 48 x 48
            nn.Sequential(Conv(32, 64, 3, 2, 1), *_res(64, 3)),  # 64 x 24 x 24
            nn.Sequential(Conv(64, 128, 3, 2, 1), *_res(128, 2)),  # 128 x 12 x 12
            nn.Sequential(Conv(128, 256, 3, 2, 1), *_res(256, 2)),  # 256 x 6 x 6
            nn.Sequential(Conv(256, 512, 3, 2, 1), *_res(512, 1)),  # 512 x 3 x 3
            nn.Sequential(Conv(512, 512, 3, 1, 0), Conv(512, 512, 1, 1, 0)),  # 512 x 1 x 1
        ])  # fmt: skip
        self.audio_encoder = nn.Sequential(
            Conv(1, 32, 3, 1, 1), *_res(32, 2),
            Conv(32, 64, 3, (3, 1), 1), *_res(64, 2),
            Conv(64, 128, 3, 3, 1), *_res(128, 2),
            Conv(128, 256, 3, (3, 2), 1), *_res(256, 1),
            Conv(256, 512, 3, 1, 0),
            Conv(512, 512, 1, 1, 0),
        )  # fmt: skip
        self.face_decoder_blocks = nn.ModuleList([
            nn.Sequential(Conv(512, 512, 1, 1, 0)),  # 512 x 1 x 1
            nn.Sequential(ConvT(1024, 512, 3, 1, 0), *_res(512, 1)),  # 512 x 3 x 3
            nn.Sequential(ConvT(1024, 512, 3, 2, 1, 1), *_res(512, 2)),  # 512 x 6 x 6
            nn.Sequential(ConvT(768, 384, 3, 2, 1, 1), *_res(384, 2)),  # 384 x 12 x 12
            nn.Sequential(ConvT(512, 256, 3, 2, 1, 1), *_res(256, 2)),  # 256 x 24 x 24
            nn.Sequential(ConvT(320, 128, 3, 2, 1, 1), *_res(128, 2)),  # 128 x 48 x 48
            nn.Sequential(ConvT(160, 64, 3, 2, 1, 1), *_res(64, 2)),  # 64 x 96 x 96
        ])  # fmt: skip
        self.output_block = nn.Sequential(Conv(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid())

    def encode_face(self, face_in: Tensor) -> list[Tensor]:
        """(B, 6, 96, 96) in [0, 1] -> the 7 skip features, shallowest first (16x96x96 ... 512x1x1)."""
        feats = []
        x = face_in
        for block in self.face_encoder_blocks:
            x = block(x)
            feats.append(x)
        return feats

    def encode_audio(self, mel_in: Tensor) -> Tensor:
        """(B, 1, 80, 16) mel chunks -> (B, 512, 1, 1) audio embedding."""
        return self.audio_encoder(mel_in)

    def decode(self, audio_emb: Tensor, feats: list[Tensor]) -> Tensor:
        """Audio embedding (B, 512, 1, 1) + skip features -> (B, 3, 96, 96) BGR face in [0, 1].

        Features with batch 1 (a still avatar's, computed once) are broadcast to the audio batch.
        """
        b = audio_emb.shape[0]
        x = audio_emb
        for block, skip in zip(self.face_decoder_blocks, reversed(feats), strict=True):
            x = block(x)
            if skip.shape[0] != b:
                skip = skip.expand(b, -1, -1, -1)
            x = torch.cat((x, skip), dim=1)  # decoder output first, then the deepest unused skip
        return self.output_block(x)

    def forward(self, mel_in: Tensor, face_in: Tensor) -> Tensor:
        """The original single pass: (B, 1, 80, 16), (B, 6, 96, 96) -> (B, 3, 96, 96)."""
        return self.decode(self.encode_audio(mel_in), self.encode_face(face_in))


# ---- checkpoint ----
def _download_hint(path: Path) -> str:
    name = "wav2lip_gan" if "gan" in path.stem.lower() else "wav2lip"
    return f"run `assistant models download {name}`"


def _check_keys(expected: dict[str, Tensor], got: dict[str, Tensor], path: Path) -> None:
    """Name the first missing, extra or mis-shaped key (network order) before load_state_dict would."""
    for key in expected:
        if key not in got:
            raise CheckpointError(
                f"Checkpoint {path} does not match the Wav2Lip network: missing key '{key}' "
                f"({len(expected) - len(set(expected) & set(got))} missing in all). "
                f"Is it a Wav2Lip generator checkpoint? Re-download it: {_download_hint(path)}"
            )
    for key in got:
        if key not in expected:
            raise CheckpointError(
                f"Checkpoint {path} does not match the Wav2Lip network: unexpected key '{key}'. "
                f"Is it a Wav2Lip generator (not SyncNet/discriminator) checkpoint? {_download_hint(path)}"
            )
    for key, ref in expected.items():
        value = got[key]
        if not isinstance(value, Tensor) or tuple(value.shape) != tuple(ref.shape):
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise CheckpointError(
                f"Checkpoint {path} does not match the Wav2Lip network: key '{key}' has shape {shape}, "
                f"expected {tuple(ref.shape)}. Re-download it: {_download_hint(path)}"
            )


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a checkpoint safely (weights only) and return its state_dict with any `module.` prefix removed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Wav2Lip checkpoint not found: {path}; {_download_hint(path)}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"Refusing to load {path}: it holds Python objects other than tensors, and unpickling it could "
            f"run arbitrary code. Use the published checkpoint ({_download_hint(path)}). Detail: {e}"
        ) from e
    except Exception as e:  # a truncated or corrupt zip, not a torch file at all, ...
        raise CheckpointError(
            f"Cannot read checkpoint {path}: {e}. Re-download it: {_download_hint(path)}"
        ) from e
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        state = ckpt["state_dict"]
    elif isinstance(ckpt, dict) and ckpt and all(isinstance(v, Tensor) for v in ckpt.values()):
        state = ckpt  # a bare state_dict
    else:
        raise CheckpointError(
            f"Checkpoint {path} has no 'state_dict' of tensors (found {type(ckpt).__name__}"
            f"{' with keys ' + str(sorted(map(str, ckpt))[:6]) if isinstance(ckpt, dict) else ''}); "
            f"{_download_hint(path)}"
        )
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def load_wav2lip(path: str | Path, device: str | torch.device = "cpu") -> Wav2Lip:
    """Load a Wav2Lip checkpoint (`wav2lip.pth` / `wav2lip_gan.pth`) strictly, in eval mode, on `device`.

    Raises CheckpointError for a missing or unreadable file, a pickle holding more than tensors, or a key
    that is missing, extra or of the wrong shape (the message names it).
    """
    path = Path(path)
    state = read_state_dict(path)
    with torch.device("meta"):
        expected = Wav2Lip().state_dict()  # keys and shapes only, no memory
    _check_keys(expected, state, path)
    model = Wav2Lip()
    model.load_state_dict(state, strict=True)
    log.debug("loaded Wav2Lip checkpoint %s (%d tensors)", path, len(state))
    return model.to(device).eval()
