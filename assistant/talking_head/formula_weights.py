"""Deterministic stand-in Wav2Lip weights "by formula" (spec `shared/spec/wav2lip.md`, section Golden data).

The published checkpoints are large downloads; these weights let tests hold the network against the golden
outputs of the original implementation, and let `assistant bench lipsync` time the real network, with no
download. They are NOT a trained model: the faces they draw are noise-like, but they respond to the audio.

Needs numpy and torch only.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from assistant.talking_head.wav2lip_net import Wav2Lip


def _formula_tensor(key: str, shape: tuple[int, ...]) -> np.ndarray:
    rs = np.random.RandomState(zlib.crc32(key.encode()) & 0xFFFFFFFF)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return np.zeros(shape, dtype=np.int64)
    if leaf == "running_mean":
        values = 0.1 * rs.standard_normal(shape)
    elif leaf == "running_var":
        values = rs.uniform(0.5, 2.0, shape)
    elif leaf == "weight" and len(shape) == 4:  # conv and conv-transpose kernels
        gain = 2.5 if key.startswith("audio_encoder") else 1.2
        values = rs.standard_normal(shape) * math.sqrt(gain / math.prod(shape[1:]))
    elif leaf == "weight":  # BatchNorm gamma
        values = rs.uniform(0.75, 1.25, shape)
    elif leaf == "bias":
        values = 0.1 * rs.standard_normal(shape)
    else:
        raise ValueError(f"No formula for state_dict key {key!r}")
    return np.asarray(values, dtype=np.float32)


def formula_state_dict() -> dict[str, Tensor]:
    """All 352 tensors of the Wav2Lip state_dict (network order, no `module.` prefix), by the formula."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in Wav2Lip().state_dict().items()}
    return {k: torch.from_numpy(_formula_tensor(k, shape)) for k, shape in shapes.items()}


def save_formula_checkpoint(path: str | Path) -> Path:
    """Write the formula weights as a checkpoint shaped like the published ones (`module.` keys)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"module.{k}": v for k, v in formula_state_dict().items()}
    torch.save({"state_dict": state, "optimizer": {}, "global_step": 0, "global_epoch": 0}, path)
    return path
