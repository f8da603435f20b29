"""What draws the live stream's frames: a photo rig that takes a pose and a mouth state per frame.

`RigRenderer` animates the avatar photo with the light engine's `FaceRig` (jaw, lips, mouth interior, lids,
irises, head sway) at the stream's size. The `static` engine is the same rig with the mouth kept closed: it still
breathes, blinks and looks around, so even the cheapest setting is never a frozen photo. Everything that depends
only on the avatar is computed once here; a frame costs two `cv2.remap` of the head region.

`measure_rate` times a renderer on this machine, so the stream can decide from a measured rate (not a guess)
whether it keeps up with its frame clock.

Needs numpy, OpenCV and the light engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from assistant.live.motion import Pose
from assistant.talking_head.base import fit_frame, load_avatar
from assistant.talking_head.face import FaceBox, detect_faces, pick_face
from assistant.talking_head.light import FaceRig


class FrameRenderer(Protocol):
    name: str
    width: int
    height: int

    def render(self, pose: Pose, opening: float, wide: float) -> np.ndarray:
        """(height, width, 3) uint8 BGR; may reuse its buffer: copy to keep it."""
        ...


class RigRenderer:
    """The avatar photo animated by a FaceRig. `talking=False` keeps the mouth closed (the static engine)."""

    def __init__(
        self,
        avatar: str | Path | np.ndarray,
        width: int,
        height: int,
        face_box: FaceBox | None = None,
        talking: bool = True,
        detector: Callable[[np.ndarray], list[FaceBox]] = detect_faces,
    ) -> None:
        photo = avatar if isinstance(avatar, np.ndarray) else load_avatar(avatar)
        self.width, self.height = int(width), int(height)
        self.base, placement = fit_frame(photo, self.width, self.height)
        if face_box is None:
            where = "the avatar image" if isinstance(avatar, np.ndarray) else f"avatar image {avatar}"
            face_box = pick_face(detector(photo), where)  # NoFaceError for none, or two of a size
        self.face_box = face_box.scaled(placement.scale, placement.offset_x, placement.offset_y)
        self.rig = FaceRig(self.base, self.face_box)
        self.talking = talking
        self.name = "light" if talking else "static"
        self._out = self.base.copy()

    def render(self, pose: Pose, opening: float, wide: float, source: np.ndarray | None = None) -> np.ndarray:
        """The frame for `pose` with the mouth at `opening`/`wide`; `source`: a photo to warp instead of the
        avatar's own (same size as the stream: Wav2Lip's mouth pasted into it)."""
        y1, y2, x1, x2 = self.rig.roi
        if not self.talking:
            opening, wide = 0.0, 0.0
        self._out[y1:y2, x1:x2] = self.rig.render(opening, wide, pose.blink, pose.sway, pose.gaze, source=source)
        return self._out


@dataclass(frozen=True)
class RenderRate:
    frames: int
    ms_per_frame_median: float
    ms_per_frame_p90: float

    def keeps_up(self, fps: float, budget: float = 0.6) -> bool:
        """True when the p90 frame fits in `budget` of the frame interval (the rest: encode, the other stages)."""
        return self.ms_per_frame_p90 <= budget * 1000.0 / fps


def measure_rate(renderer: FrameRenderer, frames: int = 20) -> RenderRate:
    """Time `frames` renders with a moving mouth, blinking and swaying (a measured rate on this machine)."""
    times = []
    for i in range(frames):
        pose = Pose((0.004 * np.sin(i), 0.003, 0.01 * np.cos(i)), blink=float(i % 5 == 0), gaze=(0.5, 0.0))
        start = time.perf_counter()
        renderer.render(pose, opening=0.5 + 0.5 * np.sin(i / 2), wide=0.3)
        times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    return RenderRate(frames, times[len(times) // 2], times[min(len(times) - 1, int(0.9 * len(times)))])
