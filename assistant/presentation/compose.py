"""Put a slide and its talking avatar together, frame by frame, into the slide's MP4 (its narration as the sound).

The slide pictures (one per reveal state, from `slides.py`) are converted to BGR once; each frame is the state due
at that time (a new bullet fades in over FADE_S) with the avatar's frame pasted into its rounded box (corner, side)
or under the caption band (full). The avatar frames are decoded from the talking head's MP4 pieces in order.

Needs numpy, OpenCV and ffmpeg (through `assistant.video`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from assistant.presentation.slides import SlidePictures
from assistant.video import FrameWriter, read_frames

FADE_S = 0.4  # a bullet fades in over this long: long enough to see, short enough not to lag the voice


@dataclass(frozen=True)
class ComposedSlide:
    mp4_path: Path
    frames: int
    fps: float
    duration_s: float  # frames / fps


def _rounded_mask(w: int, h: int, radius: int) -> np.ndarray:
    """(h, w, 1) float32 alpha of a rounded rectangle, antialiased (drawn at 4x, then reduced)."""
    if radius <= 0:
        return np.ones((h, w, 1), np.float32)
    big = Image.new("L", (w * 4, h * 4), 0)
    ImageDraw.Draw(big).rounded_rectangle((0, 0, w * 4 - 1, h * 4 - 1), radius * 4, fill=255)
    small = big.resize((w, h), Image.Resampling.LANCZOS)
    return (np.asarray(small, np.float32) / 255.0)[:, :, None]


def _avatar_frames(pieces: list[Path], w: int, h: int) -> Iterator[np.ndarray]:
    for piece in pieces:
        frames = read_frames(piece)
        try:
            for frame in frames:
                if frame.shape[:2] != (h, w):  # an engine that ignored the requested size
                    frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
                yield frame
        finally:
            frames.close()  # stops ffmpeg when the slide ends before the piece (or on an error)


def _state_at(t: float, reveals: list[float]) -> tuple[int, float]:
    """(state index, fade progress 0..1 into that state) at time t."""
    k = sum(1 for r in reveals if r <= t)
    if k == 0:
        return 0, 1.0
    return k, min(1.0, (t - reveals[k - 1]) / FADE_S)


def compose_slide(
    pictures: SlidePictures,
    reveals: list[float],
    avatar_pieces: list[Path],
    sound_path: Path,
    out_path: Path,
    fps: float,
    crf: int = 20,
    preset: str = "veryfast",
    audio_bitrate: str = "192k",
    on_progress: Callable[[float], None] | None = None,
) -> ComposedSlide:
    """Write the slide's MP4 (exactly as long as `sound_path`, in whole frames). `reveals[i]` is when bullet i
    appears (seconds from the slide's start); bullets that did not fit the slide are ignored."""
    geo = pictures.geometry
    W, H = geo.width, geo.height
    box = geo.avatar
    reveals = list(reveals[: len(pictures.states) - 1])
    full = geo.layout == "full"
    if full:
        # Premultiplied caption band over the avatar: out = avatar * (1 - a) + premult
        band = geo.text
        y0, y1 = band.y, band.y + band.h
        alphas = [s[y0:y1, :, 3:4].astype(np.float32) / 255.0 for s in pictures.states]
        premult = [
            cv2.cvtColor(np.ascontiguousarray(s[y0:y1, :, :3]), cv2.COLOR_RGB2BGR).astype(np.float32) * a
            for s, a in zip(pictures.states, alphas, strict=True)
        ]
    else:
        backgrounds = [cv2.cvtColor(np.ascontiguousarray(s[:, :, :3]), cv2.COLOR_RGB2BGR) for s in pictures.states]
        mask = _rounded_mask(box.w, box.h, geo.radius)
        inv = 1.0 - mask
    frame = np.empty((H, W, 3), np.uint8)
    avatar = _avatar_frames(avatar_pieces, box.w, box.h)
    last_avatar: np.ndarray | None = None
    try:
        with FrameWriter(
            out_path, W, H, fps, audio_path=sound_path, audio_bitrate=audio_bitrate, crf=crf, preset=preset
        ) as writer:
            total = writer.target_frames or 1
            for i in range(total):
                face = next(avatar, None)
                if face is not None:
                    last_avatar = face
                elif last_avatar is None:
                    last_avatar = np.zeros((box.h, box.w, 3), np.uint8)  # no avatar video at all: an empty box
                k, f = _state_at(i / fps, reveals)
                if full:
                    frame[:] = last_avatar
                    a, p = alphas[k], premult[k]
                    if f < 1.0 and k > 0:
                        a = alphas[k - 1] * (1 - f) + a * f
                        p = premult[k - 1] * (1 - f) + p * f
                    frame[y0:y1] = (frame[y0:y1] * (1.0 - a) + p).astype(np.uint8)
                else:
                    if f < 1.0 and k > 0:
                        cv2.addWeighted(backgrounds[k - 1], 1.0 - f, backgrounds[k], f, 0.0, dst=frame)
                    else:
                        frame[:] = backgrounds[k]
                    region = frame[box.y : box.y + box.h, box.x : box.x + box.w]
                    region[:] = (last_avatar * mask + region * inv).astype(np.uint8)
                writer.write(frame)
                if on_progress is not None and (i % 25 == 0 or i == total - 1):
                    on_progress((i + 1) / total)
    finally:
        avatar.close()
    return ComposedSlide(Path(out_path), writer.frames_written, fps, writer.frames_written / fps)
