"""Wav2Lip's per-frame work made cheap on a CPU: BatchNorm folded into the convolutions, the decoder run only for
the rows of the face the blend shows (the mouth half), and optionally bfloat16 arithmetic.

The feathered blend only ever shows rows at or below the middle of the 96 x 96 crop (`feather_mask` is 0 above
it), so the decoder's upper half is wasted work. Each 3 x 3 convolution with padding 1 spoils one row at the top
of a slice (it sees zero padding where the full map had data); a stride-2 transposed convolution fed rows [v, h)
gives exact output rows [2v, 2h). Starting from row 1 of the 6 x 6 map, the rows that stay exact are 4.. of 12,
10.. of 24, 22.. of 48 and 47.. of 96: the output is the full network's wherever the blend looks, at about 60 % of
the decoder's multiply-accumulates (2.4 of 3.97 G per frame with the audio encoder).

`precision="bf16"` runs the convolutions in bfloat16 (CPUs with avx512_bf16 or AMX do it natively through oneDNN);
its error against fp32 is measured by `precision_error` and held to the BF16_* bounds below by the tests.

Needs torch only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from assistant.talking_head.wav2lip_net import FACE_SIZE, Conv, ConvT, Wav2Lip

Precision = Literal["fp32", "bf16"]

MOUTH_ROW = 47  # first exact output row of the mouth-half decoder; the feather mask is 0 above row 47.5
SLICE_LEVEL = 3  # the decoder block whose input (the 6 x 6 map) is the first one sliced
SLICE_ROW = 1  # its first row kept; each level below doubles it and adds one row per 3 x 3 conv (see above)
# How far bf16 may be from fp32 over the mouth half (rows MOUTH_ROW..), in levels of 255. Measured on the golden
# data: max 4.5, PSNR 52.9 dB; on 5 s of the bench's speech with the default avatar: max 10-12.7, 99.9 % of pixel
# channels within 5.3, PSNR 48.6 dB (the error is spread over the whole network: keeping the 96 x 96 layers in
# fp32 only reaches 49.5 dB for 25 % more time). H.264 at the engine's crf 23 is at 27-30 dB on the same
# blended patches, so bf16's error is 18+ dB under the encoder's own and cannot be seen in the video.
BF16_MAX_ERROR_255 = 16.0  # any single pixel channel
BF16_MAX_P999_255 = 8.0  # 99.9 % of pixel channels
BF16_MIN_PSNR_DB = 45.0


@dataclass(frozen=True)
class _Layer:
    """One folded Conv/ConvT block: convolution with BatchNorm baked into weight and bias, then ReLU."""

    weight: Tensor
    bias: Tensor
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int] | None  # set for a transposed convolution
    residual: bool
    relu: bool = True


def _fold(block: nn.Module) -> _Layer:
    """A Conv / ConvT block (conv -> BN -> (+x) -> ReLU) -> one convolution with BN folded in (fp32 maths)."""
    conv, bn = block.conv_block[0], block.conv_block[1]
    scale = bn.weight.detach() / torch.sqrt(bn.running_var.detach() + bn.eps)  # (cout,)
    bias = (conv.bias.detach() - bn.running_mean.detach()) * scale + bn.bias.detach()
    w = conv.weight.detach()
    if isinstance(conv, nn.ConvTranspose2d):  # weight (cin, cout, k, k): output channels on dim 1
        weight = w * scale[None, :, None, None]
        return _Layer(weight, bias, conv.stride, conv.padding, conv.output_padding, residual=False)
    weight = w * scale[:, None, None, None]
    return _Layer(weight, bias, conv.stride, conv.padding, None, residual=getattr(block, "residual", False))


def _run(layer: _Layer, x: Tensor) -> Tensor:
    if layer.output_padding is not None:
        out = F.conv_transpose2d(
            x, layer.weight, layer.bias, layer.stride, layer.padding, layer.output_padding
        )
    else:
        out = F.conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding)
    if layer.residual:
        out = out + x
    return F.relu(out) if layer.relu else out


class FastWav2Lip:
    """The audio encoder and decoder of a loaded Wav2Lip, folded, for per-frame inference on a CPU.

    `decode(mouth_only=True)` returns a (B, 3, 96, 96) map exact from row `MOUTH_ROW` down; rows above it are
    zeros or spoiled and must not be shown (the feathered blend never shows them).
    """

    def __init__(self, model: Wav2Lip, precision: Precision = "fp32") -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.precision = precision
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        with torch.no_grad():
            self.audio = [self._cast(_fold(b)) for b in model.audio_encoder]
            self.decoder = [[self._cast(_fold(b)) for b in blk] for blk in model.face_decoder_blocks]
            out_conv, final = model.output_block[0], model.output_block[1]
            assert isinstance(out_conv, Conv) and isinstance(final, nn.Conv2d)
            self.out_conv = self._cast(_fold(out_conv))
            # The last 1 x 1 conv (32 -> 3, 0.1 % of the work) stays fp32: its outputs are logits of about +-4
            # going into the sigmoid, where a bf16 step (1/32 at 4) would be 2 levels of 255 on its own.
            self.final = _Layer(
                final.weight.detach(), final.bias.detach(), (1, 1), (0, 0), None, False, relu=False
            )
        assert all(isinstance(b, (Conv, ConvT)) for blk in model.face_decoder_blocks for b in blk)
        self._feats: list[Tensor] | None = None

    def _cast(self, layer: _Layer) -> _Layer:
        w = layer.weight.to(self.dtype).contiguous()
        return _Layer(w, layer.bias.to(self.dtype), layer.stride, layer.padding, layer.output_padding,
                      layer.residual, layer.relu)  # fmt: skip

    def set_face(self, feats: list[Tensor]) -> None:
        """The avatar's 7 skip features from `Wav2Lip.encode_face` (batch 1), kept in the working precision."""
        self._feats = [f.detach().to(self.dtype) for f in feats]

    @torch.inference_mode()
    def decode(self, mel: Tensor, mouth_only: bool = True) -> Tensor:
        """(B, 1, 80, 16) mel chunks -> (B, 3, 96, 96) float32 BGR in [0, 1]; with `mouth_only`, only rows
        MOUTH_ROW.. are the network's output (and cost about 60 % of the whole face)."""
        if self._feats is None:
            raise RuntimeError("set_face() first: the decoder needs the avatar's face features")
        x = mel.to(self.dtype)
        for layer in self.audio:
            x = _run(layer, x)  # -> (B, 512, 1, 1)
        b = x.shape[0]
        start = 0  # first row of the full map that x holds
        for level, (blk, skip) in enumerate(zip(self.decoder, reversed(self._feats), strict=True)):
            if level == SLICE_LEVEL and mouth_only:
                x, start = x[:, :, SLICE_ROW:], SLICE_ROW
            for layer in blk:
                x = _run(layer, x)
                if layer.output_padding is not None:  # a transposed conv: rows [v, h) -> exact rows [2v, 2h)
                    start *= layer.stride[0]
            # spoiled rows: one per 3 x 3 conv after the transposed conv; drop them before the next up-sampling
            spoiled = sum(1 for layer in blk if layer.output_padding is None and layer.weight.shape[-1] == 3)
            if start > 0 and spoiled:
                x, start = x[:, :, spoiled:], start + spoiled
            x = torch.cat((x, skip[:, :, start:].expand(b, -1, -1, -1)), dim=1)
        x = _run(self.final, _run(self.out_conv, x).float())
        out = torch.sigmoid(x)  # (B, 3, 96 - start, 96) float32
        if start == 0:
            return out
        full = out.new_zeros((b, 3, FACE_SIZE, FACE_SIZE))
        full[:, :, start:] = out
        return full


def cpu_precision(reduced: bool) -> Precision:
    """bf16 when asked for (`reduced`) and this CPU does it natively through oneDNN; fp32 otherwise (emulated
    bf16 is slower than fp32)."""
    if not reduced:
        return "fp32"
    try:
        native = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe: do not guess
        native = False
    return "bf16" if native else "fp32"


@dataclass(frozen=True)
class PrecisionError:
    """A reduced precision's distance from fp32 over the face rows the blend shows, in levels of 255."""

    max_diff_255: float  # the largest difference of any pixel channel
    p999_diff_255: float  # 99.9 % of pixel channels differ by at most this
    psnr_db: float  # over all those pixel channels (inf when identical)


def precision_error(reference: Tensor, other: Tensor, first_row: int = MOUTH_ROW) -> PrecisionError:
    """How far `other` is from `reference`, two (B, 3, 96, 96) faces in [0, 1], over rows first_row..95."""
    diff = (reference[:, :, first_row:].double() - other[:, :, first_row:].double()).abs() * 255.0
    mse = float((diff**2).mean())
    psnr = float("inf") if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
    return PrecisionError(float(diff.max()), float(torch.quantile(diff.flatten().float(), 0.999)), psnr)
