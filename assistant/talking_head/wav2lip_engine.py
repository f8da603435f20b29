"""Wav2Lip talking head: a still avatar photo + speech audio -> a lip-synced H.264/AAC MP4.

Per avatar (once): find the face (cached), fit the photo into the output frame without distortion (blurred
fill around it), crop the face to 96 x 96 and run the face encoder; its skip features are kept. Per utterance:
mel spectrogram -> one 16-frame mel chunk per video frame -> audio encoder + decoder in batches -> the
generated lower face is blended into the frame with a feathered mask (or the whole box replaced, as the
original does) -> frames are piped to ffmpeg by `assistant.video.FrameWriter`, which muxes the audio.
On a CPU the network runs through `wav2lip_fast` (BatchNorm folded, only the mouth half the feathered blend shows,
bf16 where the CPU has it natively) on one core fewer than torch would take, leaving a core to the encoder.

Needs torch (CUDA optional), OpenCV, ffmpeg (via assistant.video) and a Wav2Lip checkpoint
(`assistant models download wav2lip` / `wav2lip_gan`). GFPGAN face enhancement only if `gfpgan` is installed.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import math
import re
import statistics
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch

from assistant.audio.io import load_audio, write_wav
from assistant.cancel import CancelToken
from assistant.errors import TalkingHeadError, VideoOutOfMemoryError
from assistant.events import AvatarVideo
from assistant.talking_head.base import fit_frame
from assistant.talking_head.face import FaceBox, FaceCache
from assistant.talking_head.wav2lip_fast import (
    MOUTH_ROW,
    FastWav2Lip,
    PrecisionError,
    cpu_precision,
    precision_error,
)
from assistant.talking_head.wav2lip_net import (
    FACE_SIZE,
    MEL,
    Wav2Lip,
    face_input,
    load_wav2lip,
    mel_chunks,
    melspectrogram,
)
from assistant.video import FrameWriter

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_AUDIO_S = 300.0  # 5 minutes
CPU_MAX_BATCH = 32  # frames per network call on CPU
PRECISION_CHECK_FRAMES = 48  # 1.9 s at 25 fps; the check runs the exact fp32 network (~0.1 s a frame)


@dataclass(frozen=True)
class QualityPreset:
    model_name: str  # "wav2lip" or "wav2lip_gan"
    width: int
    height: int
    fps: float


QUALITY_PRESETS = {
    "standard": QualityPreset("wav2lip", 1280, 720, 25.0),
    "high": QualityPreset("wav2lip_gan", 1920, 1080, 30.0),
}


class CudaUnavailableError(TalkingHeadError, RuntimeError):
    """A CUDA device was asked for, but torch cannot use one."""


@dataclass(frozen=True)
class _RunStats:
    frames: int
    setup_s: float  # audio decode, mel, ffmpeg start: before the first batch
    per_frame_s: float  # network + compositing + encoding, per frame
    total_s: float


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse a torch device string; CudaUnavailableError (a RuntimeError) when CUDA is asked for, absent."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"Unknown torch device {device!r}; use 'cpu', 'cuda' or 'cuda:N'") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CudaUnavailableError(
                f"Device {device!r} was requested but CUDA is not available (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda or 'none'}). Set talking_head.device to 'cpu', or install "
                "the CUDA build of torch and an NVIDIA driver."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CudaUnavailableError(
                f"Device {device!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    return dev


def _model_name(model_path: str | Path | None, default: str) -> str:
    """The model name from a checkpoint's file name (wav2lip_gan / wav2lip); the quality mode's otherwise."""
    words = re.split(r"[^a-z0-9]+", Path(model_path).stem.lower()) if model_path else []
    if "wav2lip" in words:
        return "wav2lip_gan" if "gan" in words else "wav2lip"
    return default


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, VideoOutOfMemoryError):
        return False  # already handled
    if isinstance(e, torch.cuda.OutOfMemoryError):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in text or "not enough memory" in text)


def feather_mask(height: int, width: int) -> np.ndarray:
    """(height, width, 1) float32 generated-face weight: 0 at the box edge and upper half, 1 at the mouth."""
    feather = max(2.0, 0.12 * min(height, width))  # px of soft edge

    def ramp(n: int, start: float) -> np.ndarray:
        pos = np.arange(n, dtype=np.float32)
        t = np.clip((pos - start) / feather, 0, 1) * np.clip((n - 1 - pos) / feather, 0, 1)
        return t * t * (3 - 2 * t)  # smoothstep: no visible crease where the ramp starts

    rows = ramp(height, start=0.5 * height)  # the network only generates the lower half of the crop
    cols = ramp(width, start=0.0)
    return (rows[:, None] * cols[None, :])[:, :, None]


class Wav2LipTalkingHead:
    """Lip-synced talking-head videos of one avatar photo, with the Wav2Lip (or Wav2Lip-GAN) network."""

    def __init__(
        self,
        avatar_image_path: str | Path,
        device: str = "cuda",
        quality_mode: Literal["standard", "high"] = "standard",
        model_path: str | Path | None = None,
        face_det_batch_size: int = 4,
        wav2lip_batch_size: int = 128,
        *,
        resolution: tuple[int, int] | None = None,  # (width, height); None = the quality mode's
        fps: float | None = None,  # None = the quality mode's (25 standard, 30 high)
        use_half_precision: bool = True,
        blend: Literal["feather", "box"] = "feather",
        enhance_face: bool = False,
        cache_dir: str | Path | None = None,
        audio_bitrate: str = "192k",
        gfpgan_model_path: str | Path | None = None,
        cpu_fast_path: bool = True,
        cpu_threads: int | None = None,
    ) -> None:
        if quality_mode not in QUALITY_PRESETS:
            raise ValueError(f"quality_mode must be one of {sorted(QUALITY_PRESETS)}, got {quality_mode!r}")
        if blend not in ("feather", "box"):
            raise ValueError(f"blend must be 'feather' or 'box', got {blend!r}")
        if wav2lip_batch_size < 1:
            raise ValueError(f"wav2lip_batch_size must be >= 1, got {wav2lip_batch_size}")
        preset = QUALITY_PRESETS[quality_mode]
        width, height = resolution if resolution is not None else (preset.width, preset.height)
        if width < 16 or height < 16:
            raise ValueError(f"resolution must be at least 16x16, got {width}x{height}")
        self.avatar_image_path = Path(avatar_image_path)
        if not self.avatar_image_path.is_file():
            raise FileNotFoundError(f"Avatar image not found: {self.avatar_image_path}")
        self.quality_mode = quality_mode
        self.model_name = _model_name(model_path, preset.model_name)
        self.name = self.model_name  # TalkingHeadEngine protocol: the engine reported in AvatarVideo
        self.model_path = (
            Path(model_path) if model_path else REPO_ROOT / "models" / "wav2lip" / f"{self.model_name}.pth"
        )
        self.device = resolve_device(device)
        self.width, self.height = int(width), int(height)
        self.fps = float(fps or preset.fps)
        self.face_det_batch_size = face_det_batch_size  # kept for the API: a still image is one detection
        # On CPU a batch past ~32 frames only costs memory (measured: 16 -> 21 frames/s, 53 -> 16 frames/s).
        self.batch_size = (
            wav2lip_batch_size if self.device.type == "cuda" else min(wav2lip_batch_size, CPU_MAX_BATCH)
        )
        # fp16 on a CUDA GPU; on a CPU, bf16 where it is native (avx512_bf16 / AMX), within wav2lip_fast's bounds
        self.use_half_precision = use_half_precision
        # On a CPU: BatchNorm folded, the decoder only for the mouth half the blend shows (wav2lip_fast)
        self.cpu_fast_path = cpu_fast_path
        self._fast: FastWav2Lip | None = None
        # Threads for the network on a CPU: one core fewer than torch would take, so the encoder (ffmpeg), the
        # blend and the rest of the app keep a core. On 2 cores 2 threads spin on each other whenever ffmpeg runs:
        # single 5 s renders at 720p on a shared 2-core machine gave 7-20 frames/s with 2 threads, 31-51 with 1.
        if cpu_threads is not None and cpu_threads < 1:
            raise ValueError(f"cpu_threads must be >= 1, got {cpu_threads}")
        self.cpu_threads = cpu_threads or max(1, torch.get_num_threads() - 1)
        self.blend = blend
        self.audio_bitrate = audio_bitrate
        self._face_cache = FaceCache(cache_dir)
        self._lock = threading.RLock()
        self._model: Wav2Lip | None = None
        self._dtype = torch.float32
        self._feats: list[torch.Tensor] | None = None  # face-encoder skip features of the avatar, batch 1
        self._runs: deque[_RunStats] = deque(maxlen=5)
        self._last_frames = 0
        self._enhancer = self._make_enhancer(gfpgan_model_path) if enhance_face else None

        self.preprocess_avatar()
        self._ensure_ready()
        log.info(
            "Wav2Lip ready: %s on %s (%s), %dx%d @ %g fps, face box %s",
            self.model_name, self.device, str(self._dtype).removeprefix("torch."), self.width, self.height,
            self.fps, self.face_box,
        )  # fmt: skip

    # ---- avatar ----
    def preprocess_avatar(self) -> None:
        """Detect (or recall) the face, lay the photo into the output frame, and encode the face once."""
        with self._lock:
            image, box = self._face_cache.load(self.avatar_image_path)
            canvas, placed = fit_frame(image, self.width, self.height)  # the framing every engine uses
            b = box.scaled(placed.scale, placed.offset_x, placed.offset_y)
            b = FaceBox(max(0, b.x1), max(0, b.y1), min(self.width, b.x2), min(self.height, b.y2))
            self.canvas = canvas  # (H, W, 3) uint8 BGR, the frame every video starts from
            self.face_box = b  # in canvas pixels
            region = canvas[b.y1 : b.y2, b.x1 : b.x2]
            self._region_u8 = region.copy()
            self._region_f = region.astype(np.float32)
            self._mask = feather_mask(b.height, b.width)
            # the rows of the box the generated face shows: the rest of the box stays the photo
            self._mask_row = int(np.argmax(self._mask[:, :, 0].max(axis=1) > 0))
            crop = cv2.resize(region, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_LINEAR)
            self._face_in = face_input(crop[None])  # (1, 6, 96, 96) float32 in [0, 1]
            self._feats = None
            if self._model is not None:
                self._encode_face()

    def _encode_face(self) -> None:
        assert self._model is not None
        face = torch.from_numpy(self._face_in).to(self.device, self._dtype)
        with torch.inference_mode():
            self._feats = self._model.encode_face(face)
        if self._fast is not None:
            self._fast.set_face(self._feats)

    # ---- model ----
    @property
    def model(self) -> Wav2Lip | None:
        """The loaded network (None after cleanup() until the next generate)."""
        return self._model

    def _ensure_ready(self) -> None:
        with self._lock, self._oom_guard("loading the Wav2Lip model"):
            if self._model is None:
                self._model = load_wav2lip(self.model_path, self.device)
                self._dtype = torch.float32
                if self.use_half_precision and self.device.type == "cuda":
                    self._try_half()
                if self.device.type == "cpu" and self.cpu_fast_path:
                    self._fast = FastWav2Lip(self._model, cpu_precision(self.use_half_precision))
            if self._feats is None:
                self._encode_face()

    def _try_half(self) -> None:
        assert self._model is not None
        major, minor = torch.cuda.get_device_capability(self.device)
        if (major, minor) < (5, 3):  # no native fp16 arithmetic before Maxwell GM20B/Pascal
            log.info("GPU compute capability %d.%d lacks fast fp16; using fp32", major, minor)
            return
        try:
            self._model.half()
            self._dtype = torch.float16
            self._encode_face()
        except RuntimeError as e:
            if _is_oom(e):
                raise
            log.warning("fp16 inference failed on %s (%s); falling back to fp32", self.device, e)
            self._model.float()
            self._dtype = torch.float32
            self._feats = None

    @contextmanager
    def _oom_guard(self, what: str) -> Iterator[None]:
        """Turn a device out-of-memory error into VideoOutOfMemoryError, after freeing what it held."""
        try:
            yield
        except RuntimeError as e:
            if not _is_oom(e):
                raise
            e.__traceback__ = None  # its frames pin the batch's device tensors
            self._free_memory()
            raise VideoOutOfMemoryError(
                f"Out of {'GPU ' if self.device.type == 'cuda' else ''}memory while {what} on {self.device} "
                f"(batch of {self.batch_size} frames, {self.width}x{self.height}): {str(e).splitlines()[0]}. "
                "Memory was freed; use quality_mode 'standard', a smaller wav2lip_batch_size, "
                "or device 'cpu'."
            ) from e

    def _free_memory(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ---- generation ----
    @contextmanager
    def _threads(self) -> Iterator[None]:
        """torch's intra-op threads set to `cpu_threads` for one network call on a CPU (restored after)."""
        before = torch.get_num_threads()
        if self.device.type != "cpu" or before == self.cpu_threads:
            yield
            return
        torch.set_num_threads(self.cpu_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _infer(self, mel_batch: np.ndarray) -> np.ndarray:
        """(B, 80, 16) mel chunks -> (B, 96, 96, 3) float32 BGR in [0, 255]."""
        assert self._model is not None and self._feats is not None
        mel = torch.from_numpy(mel_batch[:, None]).to(self.device, self._dtype)  # (B, 1, 80, 16)
        with self._threads():
            # the feathered blend shows only the mouth half: the fast path leaves the rest out
            if self._fast is not None:
                pred = self._fast.decode(mel, mouth_only=self.blend == "feather")
                return pred.numpy().transpose(0, 2, 3, 1) * 255.0
            with torch.inference_mode():
                pred = self._model.decode(self._model.encode_audio(mel), self._feats)  # (B, 3, 96, 96)
        return pred.float().cpu().numpy().transpose(0, 2, 3, 1) * 255.0

    def compose_frame(self, face: np.ndarray) -> np.ndarray:
        """One generated face, (96, 96, 3) BGR float in [0, 255], -> a full (H, W, 3) uint8 output frame.

        "feather": only the lower face changes, fading to the photo at the box edges; "box": the whole
        face box is replaced, as the original Wav2Lip does.
        """
        b = self.face_box
        frame = self.canvas.copy()
        frame[b.y1 : b.y2, b.x1 : b.x2] = self.face_patch(face)
        if self._enhancer is not None:
            frame = self._enhance(frame)
        return frame

    def face_patch(self, face: np.ndarray) -> np.ndarray:
        """One generated face, (96, 96, 3) BGR float in [0, 255], -> the face box's (h, w, 3) uint8 BGR pixels."""
        b = self.face_box
        resized = cv2.resize(face, (b.width, b.height), interpolation=cv2.INTER_LINEAR)
        if self.blend == "box":  # the original: replace the whole box, truncating to uint8
            return np.clip(resized, 0, 255).astype(np.uint8)
        # above row r the mask is 0: the photo's own pixels (the mouth-only decoder left those rows out)
        r = self._mask_row
        patch = self._region_u8.copy()
        region = self._region_f[r:]
        mixed = region + self._mask[r:] * (resized[r:] - region)
        patch[r:] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
        return patch

    def face_patches(
        self,
        wav_16k: np.ndarray,
        fps: float | None = None,
        cancel: CancelToken | None = None,
        sizes: Sequence[int] = (),
    ) -> Iterator[list[np.ndarray]]:
        """Lip-synced face-box patches for speech already in memory, a batch at a time (for a live stream).

        `wav_16k`: (n,) float32 mono at 16 kHz. Yields lists of (box height, box width, 3) uint8 BGR patches, one
        per video frame of the audio at `fps`, blended into the photo's face box as `compose_frame` does (paste
        one at `face_box` over `canvas`). `sizes`: frames per network call, in order (a live clip starts small so
        its sound can start early); then `batch_size` each. Raises VideoOutOfMemoryError, Cancelled."""
        fps = float(fps or self.fps)
        chunks = mel_chunks(melspectrogram(np.asarray(wav_16k, np.float32)), fps)
        n_frames = max(1, math.ceil(len(wav_16k) / MEL.SAMPLE_RATE * fps - 1e-6))
        chunks = chunks[:n_frames]
        last: np.ndarray | None = None
        with self._lock:
            self._ensure_ready()
            start, planned = 0, iter(sizes)
            while start < len(chunks):
                size = max(1, min(next(planned, self.batch_size), self.batch_size))
                if cancel is not None:
                    cancel.raise_if_cancelled()
                with self._oom_guard("generating live frames"):
                    faces = self._infer(chunks[start : start + size])
                start += size
                batch = [self.face_patch(face) for face in faces]
                last = batch[-1]
                yield batch
        if last is not None and n_frames > len(chunks):
            yield [last] * (n_frames - len(chunks))

    def generate(
        self,
        audio_path: str | Path,
        output_path: str | Path,
        fps: float | None = None,
        include_audio: bool = True,
        *,
        cancel: CancelToken | None = None,
    ) -> str:
        """Render `audio_path` (any format load_audio reads, <= 5 min) as a lip-synced MP4 at `output_path`.

        `fps` None = the engine's (quality mode's) fps. Raises FileNotFoundError, AudioFormatError,
        AudioTooLongError, CheckpointError, VideoOutOfMemoryError, VideoEncodeError, Cancelled.
        """
        t0 = time.perf_counter()
        fps = float(fps or self.fps)
        audio_path = Path(audio_path)
        wav = load_audio(audio_path, MEL.SAMPLE_RATE, max_duration_s=MAX_AUDIO_S)  # (n,) float32, 16 kHz
        chunks = mel_chunks(melspectrogram(wav), fps)  # (n_chunks, 80, 16)
        n_frames = max(1, math.ceil(len(wav) / MEL.SAMPLE_RATE * fps - 1e-6))  # cover the audio
        # Frames past the last window reuse it (the original stops ~0.1 s early); short audio: spare windows.
        chunks = chunks[:n_frames]
        with self._lock:
            self._ensure_ready()
            with FrameWriter(
                output_path, self.width, self.height, fps,
                audio_path=audio_path if include_audio else None, audio_bitrate=self.audio_bitrate,
            ) as writer:  # fmt: skip
                t_setup = time.perf_counter() - t0
                frame = self.canvas
                for start in range(0, len(chunks), self.batch_size):
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                    with self._oom_guard("generating video frames"):
                        faces = self._infer(chunks[start : start + self.batch_size])
                    for face in faces:
                        frame = self.compose_frame(face)
                        writer.write(frame)
                for _ in range(n_frames - len(chunks)):
                    writer.write(frame)
            total = time.perf_counter() - t0
            self._last_frames = writer.frames_written
            self._runs.append(_RunStats(n_frames, t_setup, (total - t_setup) / n_frames, total))
        log.debug("Wav2Lip: %d frames in %.2f s (%.1f frames/s)", n_frames, total, n_frames / total)
        return str(writer.output_path)

    def render(
        self, audio_path: str | Path, output_path: str | Path, *, cancel: CancelToken | None = None
    ) -> AvatarVideo:
        """generate() at the engine's fps with audio, and describe the result."""
        t0 = time.perf_counter()
        path = self.generate(audio_path, output_path, cancel=cancel)
        return AvatarVideo(
            mp4_path=Path(path),
            engine=self.model_name,
            frames=self._last_frames,
            fps=self.fps,
            width=self.width - self.width % 2,  # yuv420p: the encoder drops an odd last column/row
            height=self.height - self.height % 2,
            duration_s=self._last_frames / self.fps,
            elapsed_s=time.perf_counter() - t0,
            quality_mode=self.quality_mode,
            device=str(self.device),
        )

    # ---- information ----
    def get_model_info(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "quality_mode": self.quality_mode,
            "device": str(self.device),
            "output_resolution": (self.width, self.height),
            "model_loaded": self._model is not None,
            "model_path": str(self.model_path),
            "fps": self.fps,
            "precision": self._fast.precision if self._fast else str(self._dtype).removeprefix("torch."),
            "mouth_only": self._fast is not None and self.blend == "feather",
            "blend": self.blend,
            "face_box": self.face_box,
            "enhance_face": self._enhancer is not None,
            "batch_size": self.batch_size,
            "cpu_threads": self.cpu_threads,
        }

    def estimate_generation_time(self, audio_duration: float) -> float:
        """Seconds to render `audio_duration` s of speech, from the last runs (a short warm-up if none)."""
        if audio_duration < 0:
            raise ValueError(f"audio_duration must be >= 0, got {audio_duration}")
        if not self._runs:
            self._warm_up()
        setup = statistics.median(r.setup_s for r in self._runs)
        per_frame = statistics.median(r.per_frame_s for r in self._runs)
        return setup + max(1, math.ceil(audio_duration * self.fps)) * per_frame

    def precision_error(self, wav_16k: np.ndarray) -> PrecisionError | None:
        """How far this engine's faces are from the exact fp32 network for the first PRECISION_CHECK_FRAMES frames
        of this speech, over the rows the blend shows; None when it runs in fp32 already."""
        if self._fast is None or self._fast.precision == "fp32":
            return None
        assert self._model is not None and self._feats is not None
        chunks = mel_chunks(melspectrogram(np.asarray(wav_16k, np.float32)), self.fps)
        mel = torch.from_numpy(chunks[:PRECISION_CHECK_FRAMES, None])
        with torch.inference_mode(), self._threads():
            exact = self._model.decode(self._model.encode_audio(mel), self._feats)
            reduced = self._fast.decode(mel, mouth_only=self.blend == "feather")
        return precision_error(exact, reduced, first_row=MOUTH_ROW if self.blend == "feather" else 0)

    def measure_realtime(self, seconds: float = 2.0) -> float:
        """Seconds of video made per second of work on this machine, end to end (mel, network, blend, H.264
        encode), from a render of `seconds` of noise after a short warm-up render (oneDNN builds its kernels
        on the first call). >= 1 keeps up with speech."""
        if seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        rng = np.random.default_rng(0)
        with tempfile.TemporaryDirectory(prefix="wav2lip-speed-") as tmp:
            self._warm_up()
            noise = (0.05 * rng.standard_normal(int(seconds * MEL.SAMPLE_RATE))).astype(np.float32)
            wav = write_wav(Path(tmp) / "noise.wav", noise, MEL.SAMPLE_RATE)
            start = time.perf_counter()
            self.generate(wav, Path(tmp) / "speed.mp4")
            return seconds / (time.perf_counter() - start)

    def _warm_up(self) -> None:
        """Render half a second of silence to a temporary file: measures this machine, at this resolution."""
        with tempfile.TemporaryDirectory(prefix="wav2lip-warmup-") as tmp:
            wav = write_wav(
                Path(tmp) / "silence.wav", np.zeros(MEL.SAMPLE_RATE // 2, np.float32), MEL.SAMPLE_RATE
            )
            self.generate(wav, Path(tmp) / "warmup.mp4")

    def close(self) -> None:
        """TalkingHeadEngine protocol: same as cleanup()."""
        self.cleanup()

    def cleanup(self) -> None:
        """Release the network and its cached features (and GPU memory); the next generate() reloads them."""
        with self._lock:
            self._model = None
            self._feats = None
            self._fast = None
            self._free_memory()

    # ---- optional GFPGAN ----
    def _make_enhancer(self, model_path: str | Path | None) -> Any:
        if importlib.util.find_spec("gfpgan") is None:
            log.warning(
                "enhance_face is on but the gfpgan package is not installed (pip install gfpgan); skipping"
            )
            return None
        path = Path(model_path) if model_path else REPO_ROOT / "models" / "gfpgan" / "GFPGANv1.3.pth"
        if not path.is_file():
            log.warning("enhance_face is on but the GFPGAN weights %s are missing; skipping", path)
            return None
        from gfpgan import GFPGANer  # type: ignore[import-not-found]

        return GFPGANer(
            model_path=str(path), upscale=1, arch="clean", channel_multiplier=2, device=self.device
        )

    def _enhance(self, frame: np.ndarray) -> np.ndarray:
        b = self.face_box
        m = max(b.width, b.height) // 4  # context around the box helps GFPGAN's own face alignment
        y1, y2, x1, x2 = (
            max(0, b.y1 - m),
            min(self.height, b.y2 + m),
            max(0, b.x1 - m),
            min(self.width, b.x2 + m),
        )
        try:
            _, _, restored = self._enhancer.enhance(
                frame[y1:y2, x1:x2], has_aligned=False, only_center_face=True, paste_back=True
            )
        except Exception as e:  # an optional extra must not cost the video
            log.warning("GFPGAN enhancement failed (%s); continuing without it", e)
            self._enhancer = None
            return frame
        if restored is not None:
            frame[y1:y2, x1:x2] = restored
        return frame
