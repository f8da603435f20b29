"""What every talking-head engine is: the `TalkingHeadEngine` protocol, the render settings per quality mode, and the
shared helpers to load the avatar photo and fit it into the output frame without distorting it.

Needs numpy, OpenCV and Pillow (for the EXIF orientation only; no torch, no models), so the chain and the light
engines import it cheaply.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import cv2
import numpy as np

from assistant.errors import TalkingHeadError
from assistant.events import AvatarVideo
from assistant.inputs import check_input_file

if TYPE_CHECKING:
    from assistant.video import FrameWriter

QualityMode = Literal["standard", "high"]
ENGINE_NAMES = (
    "wav2lip_gan",
    "wav2lip",
    "light",
    "static",
)  # best first: the order the chain falls back along


@runtime_checkable
class TalkingHeadEngine(Protocol):
    """Turns one speech audio file into an MP4 of the avatar saying it (audio muxed in)."""

    name: str  # "wav2lip_gan", "wav2lip", "light" or "static"

    def render(self, audio_path: Path, output_path: Path) -> AvatarVideo: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RenderSettings:
    """Output frame size and rate; what a quality mode means for the engines that draw the whole frame."""

    width: int = 1280
    height: int = 720
    fps: float = 25.0
    quality_mode: str = "standard"
    crf: int = (
        23  # x264 constant rate factor: 23 is its default, visually clean for a face on a still background
    )
    # x264 preset: "superfast" encodes 720p about 1.7x faster than "veryfast" on 2 cores, for files about 2.5x
    # larger (~0.6 Mbit/s for a talking head): the right trade for local playback of a CPU-rendered face.
    preset: str = "superfast"
    audio_bitrate: str = "192k"

    @classmethod
    def for_quality(cls, quality_mode: str, fps: float | None = None) -> RenderSettings:
        """The shipped defaults: standard = 1280x720 at 25 fps, high = 1920x1080 at 30 fps."""
        if quality_mode == "standard":
            return cls(1280, 720, fps or 25.0, "standard")
        if quality_mode == "high":
            return cls(1920, 1080, fps or 30.0, "high", crf=20)
        raise ValueError(f"Unknown quality mode {quality_mode!r}; use 'standard' or 'high'")


@dataclass(frozen=True)
class Placement:
    """Where the photo landed in the frame: frame = photo * scale + offset."""

    scale: float
    offset_x: int
    offset_y: int
    width: int  # of the scaled photo, in frame pixels
    height: int

    def to_frame(self, x: float, y: float) -> tuple[float, float]:
        return x * self.scale + self.offset_x, y * self.scale + self.offset_y


# EXIF orientation (tag 0x0112) -> what turns the stored pixels upright, as every photo viewer does.
_EXIF_ORIENTATION = 0x0112
_UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # upside down
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),  # mirrored along the main diagonal
    6: lambda a: a.swapaxes(0, 1)[:, ::-1],  # a phone held upright: the pixels lie turned 90 degrees left
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],  # mirrored along the other diagonal
    8: lambda a: a.swapaxes(0, 1)[::-1],  # turned 90 degrees right
}


def exif_orientation(path: Path) -> int:
    """The photo's EXIF orientation (1 = upright as stored; 2-8 = mirrored/turned); 1 when it has none."""
    from PIL import Image

    try:
        with Image.open(path) as im:  # reads the header only
            value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - no EXIF is "as stored"; OpenCV says whether the pixels decode
        return 1
    return value if isinstance(value, int) and value in _UPRIGHT else 1


def load_avatar(path: str | Path) -> np.ndarray:
    """Read the avatar photo as (H, W, 3) uint8 BGR, upright (EXIF orientation applied, as viewers show it),
    alpha composited on white, grey expanded."""
    path = check_input_file(
        path, "Avatar image", TalkingHeadError, missing=FileNotFoundError,
        hint="; set talking_head.avatar_image to a photo of a face",
    )  # fmt: skip
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise TalkingHeadError(f"Cannot read the avatar image {path}; use a JPEG or PNG photo")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        image = (image[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    if image.dtype != np.uint8:  # 16-bit PNG
        image = (image / 257).astype(np.uint8)
    upright = _UPRIGHT.get(exif_orientation(path))  # IMREAD_UNCHANGED leaves the orientation to us
    if upright is not None:
        image = upright(image)
    return np.ascontiguousarray(image)


def fit_frame(
    image_bgr: np.ndarray,
    width: int,
    height: int,
    background: Literal["blur", "black"] = "blur",
) -> tuple[np.ndarray, Placement]:
    """Fit the whole photo into a width x height frame keeping its aspect ratio (no crop, no stretch).

    The bars left over are filled with a blurred, darkened, zoomed copy of the photo ("blur", what phones do
    for a portrait shown landscape), or black. Returns the (height, width, 3) uint8 frame and where the photo is.
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"Expected an (H, W, 3) BGR image, got shape {image_bgr.shape}")
    ih, iw = image_bgr.shape[:2]
    scale = min(width / iw, height / ih)
    sw, sh = max(1, round(iw * scale)), max(1, round(ih * scale))
    ox, oy = (width - sw) // 2, (height - sh) // 2
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    scaled = cv2.resize(image_bgr, (sw, sh), interpolation=interp)
    if background == "blur" and (sw, sh) != (width, height):
        cover = max(width / iw, height / ih)
        # Blur at low resolution: a 1/8-size copy blurred then upscaled looks the same and costs ~60x less.
        small = cv2.resize(image_bgr, (max(1, round(iw * cover / 8)), max(1, round(ih * cover / 8))))
        small = cv2.GaussianBlur(small, (0, 0), 3)
        big = cv2.resize(small, (max(width, small.shape[1] * 8), max(height, small.shape[0] * 8)))
        bx, by = (big.shape[1] - width) // 2, (big.shape[0] - height) // 2
        frame = (big[by : by + height, bx : bx + width].astype(np.float32) * 0.55).astype(np.uint8)
    else:
        frame = np.zeros((height, width, 3), np.uint8)
    frame[oy : oy + sh, ox : ox + sw] = scaled
    return np.ascontiguousarray(frame), Placement(scale, ox, oy, sw, sh)


def video_from_writer(
    writer: FrameWriter, output_path: Path, engine: str, settings: RenderSettings, start: float
) -> AvatarVideo:
    """The AvatarVideo a CPU engine made with a closed FrameWriter (frames, size and duration as encoded)."""
    return AvatarVideo(
        mp4_path=Path(output_path),
        engine=engine,
        frames=writer.frames_written,
        fps=settings.fps,
        width=writer.encoded_width,
        height=writer.encoded_height,
        duration_s=writer.duration_s,
        elapsed_s=time.monotonic() - start,
        quality_mode=settings.quality_mode,
        device="cpu",
    )
