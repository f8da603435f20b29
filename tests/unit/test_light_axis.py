"""The light engine's mouth on the detector's test faces (tests/data/face_set, made by scripts/make_face_set.py):
on a rolled head the jaw drops along the head's own axis, and the inside of the mouth takes its colour from the
photo. The face boxes come from the real detector (YuNet), with landmarks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from assistant.talking_head.base import RenderSettings, load_avatar
from assistant.talking_head.face import FaceBox, detect_faces, pick_face
from assistant.talking_head.light import LightTalkingHead
from tests.unit.light_probes import interior_mask, render

FACE_SET = Path(__file__).resolve().parents[1] / "data" / "face_set"
ROLLED = ("avatar_roll_cw30.jpg", "avatar_mirrored_roll_ccw30.jpg", "hopper_roll_ccw25_dim.jpg")
SETTINGS = RenderSettings(1280, 720, 25.0)


def _head(photo: np.ndarray, box: FaceBox | None = None) -> LightTalkingHead:
    return LightTalkingHead(photo, SETTINGS, face_box=box, blinks=False, sway=False)


@pytest.mark.parametrize("name", ROLLED)
def test_the_mouth_opens_along_a_rolled_heads_axis(name: str) -> None:
    """The centroid of what changes between the closed and the open mouth lies from the mouth along the head's
    down vector (-sin, cos of its roll), within 10 degrees; straight down the picture is 25-40 degrees off."""
    head = _head(load_avatar(FACE_SET / name))
    roll = head.face_box.roll_deg
    assert abs(roll) >= 20, roll  # the detector sees the roll (the set's faces are turned 25-39 degrees)
    shut, wide_open = render(head, 0.0), render(head, 1.0)
    changed = np.abs(wide_open.astype(int) - shut.astype(int)).max(2) > 20
    ys, xs = np.nonzero(changed)
    assert len(xs) > 0.05 * head.rig.fw * head.rig.fh * 0.12  # a real opening, not a few pixels
    mouth_x, mouth_y = head.face_box.mouth_xy
    dx, dy = xs.mean() - mouth_x, ys.mean() - mouth_y
    down = (-math.sin(math.radians(roll)), math.cos(math.radians(roll)))
    angle = math.degrees(math.atan2(dx * down[1] - dy * down[0], dx * down[0] + dy * down[1]))
    assert abs(angle) <= 10, (angle, roll)
    assert math.hypot(dx, dy) >= 0.02 * head.rig.fh  # the change lies below the mouth, not around it


def _tinted(photo: np.ndarray, gain_bgr: tuple[float, float, float]) -> np.ndarray:
    return np.clip(photo.astype(np.float32) * np.array(gain_bgr, np.float32), 0, 255).astype(np.uint8)


def test_the_inside_of_the_mouth_takes_its_colour_from_the_photo() -> None:
    """The same face, once with bluish and once with reddish skin and lips: the inside of the open mouth
    follows (the fixed colour this engine drew before stayed the same dark red on both)."""
    photo = load_avatar(FACE_SET / "hopper_upright.jpg")
    box = pick_face(detect_faces(photo))

    def blue_over_red(image: np.ndarray) -> float:
        head = _head(image, box)
        inside = interior_mask(head, 1.0)
        assert inside.sum() > 200
        bgr = render(head, 1.0)[inside].astype(np.float64).mean(0)
        return math.log(bgr[0] / bgr[2])

    bluish, reddish = _tinted(photo, (1.3, 1.0, 0.75)), _tinted(photo, (0.75, 1.0, 1.3))
    photo_shift = math.log(1.3 / 0.75) * 2  # the photos' log(B / R) apart
    inside_shift = blue_over_red(bluish) - blue_over_red(reddish)
    assert inside_shift >= 0.8 * photo_shift, (inside_shift, photo_shift)


def _motion(before: np.ndarray, after: np.ndarray, x: float, y: float, r: int) -> tuple[float, float]:
    """The mean optical flow (px) of the picture from `before` to `after` around (x, y), where it moves."""
    import cv2

    y1, y2, x1, x2 = int(y - r), int(y + r), int(x - r), int(x + r)
    a, b = (cv2.cvtColor(f[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY) for f in (before, after))
    flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 2, 9, 3, 5, 1.1, 0)  # (h, w, 2)
    moving = np.hypot(flow[..., 0], flow[..., 1]) > 0.3
    assert moving.sum() > 20, "nothing moved around the eye"
    return float(flow[..., 0][moving].mean()), float(flow[..., 1][moving].mean())


def _angle_to(v: tuple[float, float], axis: tuple[float, float]) -> float:
    return abs(math.degrees(math.atan2(v[0] * axis[1] - v[1] * axis[0], v[0] * axis[0] + v[1] * axis[1])))


@pytest.mark.parametrize("name", ROLLED)
def test_blinks_and_glances_follow_a_rolled_heads_axes(name: str) -> None:
    """On a head rolled 25-39 degrees the upper lids close down the head's own axis and the irises glance along
    its eye line and down its face: the mean optical flow around each eye runs along that axis."""
    head = _head(load_avatar(FACE_SET / name))
    rig = head.rig
    roll = math.radians(head.face_box.roll_deg)
    down, across = (-math.sin(roll), math.cos(roll)), (math.cos(roll), math.sin(roll))

    def frame(blink: float = 0.0, gaze: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        out = head.frame.copy()
        y1, y2, x1, x2 = rig.roi
        out[y1:y2, x1:x2] = rig.render(0.0, 0.0, blink, (0.0, 0.0, 0.0), gaze)
        return out

    still = frame()
    angles = []
    for eye in rig.eyes:
        r = int(2.5 * eye.half_width)
        angles += [
            _angle_to(_motion(still, frame(blink=0.6), eye.x, eye.y, r), down),
            _angle_to(_motion(still, frame(gaze=(0.0, 1.0)), eye.x, eye.y, r), down),
            _angle_to(_motion(still, frame(gaze=(1.0, 0.0)), eye.x, eye.y, r), across),
        ]
    # Measured 0-16 degrees, 6 on average; along the picture's own axes (before) 11-75, 36 on average.
    assert max(angles) <= 20 and np.mean(angles) <= 10, np.round(angles)
