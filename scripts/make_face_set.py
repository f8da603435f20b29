"""Make the face-detection test set: tests/data/face_set/*.jpg and expected.yaml beside them.

Every image is made from two public-domain portraits that ship inside packages, turned, mirrored, shrunk onto
big canvases, dimmed, half lit, made noisy, given drawn-on glasses or a beard: the avatar
(`assets/avatars/astronaut.png`, Eileen Collins' NASA portrait from scikit-image, see its SOURCE.md) and Grace
Hopper (US Navy photo, public domain, matplotlib's `sample_data/grace_hopper.jpg`). Plus a photo with no face
and one with two. The expected box of each face is its box in the source, checked by eye (the engines' square
frame, see `assistant.talking_head.face`), carried through the same transform: its centre mapped, its side
scaled, kept upright.

    .venv/bin/python scripts/make_face_set.py       # needs matplotlib (a dependency of the dev tools)
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "data" / "face_set"
# The faces in their sources, (x1, y1, x2, y2) px, checked by eye against the drawn box: brows to just above
# the chin, as wide as the cheeks.
AVATAR_BOX = (200, 115, 396, 311)  # assets/avatars/astronaut.png, 600x720
HOPPER_BOX = (165, 110, 365, 310)  # grace_hopper.jpg, 512x600


def _sources() -> dict[str, tuple[np.ndarray, tuple[int, int, int, int]]]:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
    avatar = cv2.imread(str(REPO / "assets" / "avatars" / "astronaut.png"), cv2.IMREAD_COLOR)
    return {"avatar": (avatar, AVATAR_BOX), "hopper": (hopper, HOPPER_BOX)}


def place(
    image: np.ndarray,
    box: tuple[int, int, int, int],
    canvas_wh: tuple[int, int],
    face_px: float,
    centre_xy: tuple[float, float],
    roll_deg: float = 0.0,
    mirror: bool = False,
    background: int = 150,
) -> tuple[np.ndarray, list[int]]:
    """The photo scaled so the face is `face_px` wide, turned `roll_deg` clockwise about the face, mirrored,
    with the face centred at `centre_xy` on a canvas; -> (canvas, expected box)."""
    h, w = image.shape[:2]
    if mirror:
        image = image[:, ::-1]
        box = (w - box[2], box[1], w - box[0], box[3])
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    scale = face_px / (box[2] - box[0])
    warp = cv2.getRotationMatrix2D((cx, cy), -roll_deg, scale)  # OpenCV's positive angle is counter-clockwise
    warp[:, 2] += np.asarray(centre_xy) - (cx, cy)
    canvas = cv2.warpAffine(
        np.ascontiguousarray(image), warp, canvas_wh, flags=cv2.INTER_AREA,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(background,) * 3,
    )  # fmt: skip
    half = face_px / 2
    x, y = centre_xy
    return canvas, [round(x - half), round(y - half), round(x + half), round(y + half)]


def yaw(image: np.ndarray, box: list[int], squeeze: float) -> tuple[np.ndarray, list[int]]:
    """A head turned aside, roughly: one side of the face squeezed by a perspective warp about the face's
    centre (squeeze 0.75: the far cheek at 75 %, like ~30 degrees of yaw); -> (image, expected box)."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    cx = (x1 + x2) / 2
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    shrink = (1 - squeeze) * h / 2
    dst = np.float32([[0, 0], [w, shrink], [w, h - shrink], [0, h]])
    warp = cv2.getPerspectiveTransform(src, dst)
    out = cv2.warpPerspective(image, warp, (w, h), borderMode=cv2.BORDER_REPLICATE)
    corners = cv2.perspectiveTransform(np.float32([[[x1, y1], [x2, y1], [x2, y2], [x1, y2]]]), warp)[0]
    mx, my = corners.mean(0)
    side = (x2 - x1) * (1 + squeeze) / 2 if cx > w / 2 else (x2 - x1)
    return out, [round(mx - side / 2), round(my - side / 2), round(mx + side / 2), round(my + side / 2)]


def dim(image: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def half_lit(image: np.ndarray, box: list[int], dark: float = 0.18) -> np.ndarray:
    """Light from the right: the left half of the face falls to `dark` of its brightness over a soft edge."""
    h, w = image.shape[:2]
    cx, fw = (box[0] + box[2]) / 2, box[2] - box[0]
    ramp = np.clip((np.arange(w) - (cx - 0.25 * fw)) / (0.5 * fw), 0, 1)
    gain = dark + (1 - dark) * ramp
    return np.clip(image.astype(np.float32) * gain[None, :, None], 0, 255).astype(np.uint8)


def noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def glasses(image: np.ndarray, box: list[int]) -> np.ndarray:
    """Dark-rimmed glasses drawn where the eyes sit in the frame (29 % and 71 % across, 42 % down)."""
    out = image.copy()
    x1, y1, x2, _ = box
    fw = x2 - x1
    ey = int(y1 + 0.42 * fw)
    r = (int(0.16 * fw), int(0.11 * fw))
    thick = max(2, fw // 40)
    for fx in (0.30, 0.70):
        cv2.ellipse(out, (int(x1 + fx * fw), ey), r, 0, 0, 360, (25, 20, 20), thick, cv2.LINE_AA)
    cv2.line(out, (int(x1 + 0.46 * fw), ey), (int(x1 + 0.54 * fw), ey), (25, 20, 20), thick, cv2.LINE_AA)
    for fx, end in ((0.14, 0.0), (0.86, 1.0)):
        cv2.line(out, (int(x1 + fx * fw), ey), (int(x1 + end * fw), ey - 4), (25, 20, 20), thick, cv2.LINE_AA)
    return out


def beard(image: np.ndarray, box: list[int], seed: int = 1) -> np.ndarray:
    """A full dark beard and moustache: a hair-textured brown mask over jaw, chin and upper lip, the lips left
    showing."""
    x1, y1, x2, y2 = box
    fw = x2 - x1
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.float32)
    cx = (x1 + x2) / 2
    cv2.ellipse(mask, (int(cx), int(y1 + 0.78 * fw)), (int(0.46 * fw), int(0.38 * fw)), 0, 0, 180, 1.0, -1)
    cv2.rectangle(
        mask, (int(cx - 0.46 * fw), int(y1 + 0.62 * fw)), (int(cx + 0.46 * fw), int(y1 + 0.8 * fw)), 1.0, -1
    )
    cv2.ellipse(
        mask, (int(cx), int(y1 + 0.80 * fw)), (int(0.17 * fw), int(0.045 * fw)), 0, 0, 360, 0.0, -1
    )  # lips
    mask[: int(y1 + 0.62 * fw)] = 0
    cv2.ellipse(mask, (int(cx), int(y1 + 0.72 * fw)), (int(0.2 * fw), int(0.05 * fw)), 0, 180, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), fw / 60)
    rng = np.random.default_rng(seed)
    hair = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.0)
    hair = cv2.filter2D(hair, -1, np.ones((5, 1), np.float32) / 5)  # strands run down
    colour = np.float32([30, 42, 60])[None, None, :] * (1 + 0.5 * hair[..., None])
    out = image.astype(np.float32) * (1 - mask[..., None]) + colour * mask[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def make() -> dict[str, dict]:
    src = _sources()
    avatar, abox = src["avatar"]
    hopper, hbox = src["hopper"]
    cases: dict[str, tuple[np.ndarray, list[list[int]], str]] = {}

    def add(name: str, image: np.ndarray, boxes: list[list[int]], how: str) -> None:
        cases[name] = (image, boxes, how)

    im, b = place(avatar, abox, (480, 560), 200, (240, 230))
    add("avatar_upright", im, [b], "the avatar, upright, face 200 px")
    im, b = place(avatar, abox, (480, 560), 180, (240, 250), roll_deg=30)
    add("avatar_roll_cw30", im, [b], "rolled 30 degrees clockwise")
    im, b = place(avatar, abox, (480, 560), 180, (240, 250), roll_deg=-30, mirror=True)
    add("avatar_mirrored_roll_ccw30", im, [b], "mirrored, rolled 30 degrees anticlockwise")
    im, b = place(avatar, abox, (1280, 960), 0.6 * 196, (520, 400), roll_deg=8, mirror=True, background=200)
    add("avatar_issue23_canvas", im, [b], "issue 23's photo: mirrored, turned 8 degrees, 60 % on 1280x960")
    im, b = place(avatar, abox, (1280, 960), 80, (820, 520), background=120)
    add("avatar_80px_canvas", im, [b], "face 80 px wide on a 1280x960 canvas")
    im, b = place(avatar, abox, (480, 560), 190, (240, 240))
    add("avatar_dim", dim(im, 0.28), [b], "dim: 28 % of the light")
    add("avatar_half_lit", half_lit(im, b), [b], "lit from the right: the left half at 18 %")
    add("avatar_glasses", glasses(im, b), [b], "drawn dark-rimmed glasses")
    add("avatar_beard", beard(im, b), [b], "drawn full beard and moustache")
    im, b = place(avatar, abox, (480, 560), 190, (240, 240))
    im, b = yaw(im, b, 0.72)
    add("avatar_yaw", im, [b], "turned aside (perspective squeeze, ~30 degrees of yaw)")
    im, b = place(hopper, hbox, (480, 560), 200, (240, 230))
    add("hopper_upright", im, [b], "Grace Hopper (glasses), upright")
    im, b = place(hopper, hbox, (480, 560), 170, (240, 250), roll_deg=-25)
    add("hopper_roll_ccw25_dim", dim(im, 0.4), [b], "rolled 25 degrees anticlockwise, 40 % light")
    im, b = place(hopper, hbox, (640, 480), 90, (200, 180), roll_deg=12, background=90)
    add("hopper_90px_noisy", noisy(im, 14), [b], "face 90 px, turned 12 degrees, noise sigma 14")
    im, b = place(hopper, hbox, (480, 560), 190, (240, 240), mirror=True)
    im, b = yaw(im, b, 0.72)
    add("hopper_mirrored_yaw_half_lit", half_lit(im, b, 0.3), [b], "mirrored, turned aside, half lit")
    # No face: the avatar's background and suit below the face, and a shaded gradient.
    no_face = avatar[360:720, 0:600].copy()
    add("no_face", no_face, [], "the avatar's suit and background, below the face")
    left, bl = place(avatar, abox, (400, 480), 170, (200, 220))
    right, br = place(hopper, hbox, (400, 480), 165, (200, 220))
    add("two_faces", np.hstack([left, right]), [bl, [br[0] + 400, br[1], br[2] + 400, br[3]]], "two people")

    OUT.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (image, boxes, how) in cases.items():
        cv2.imwrite(str(OUT / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        expected[f"{name}.jpg"] = {"how": how, "faces": boxes}
    header = (
        "# Made by scripts/make_face_set.py (public-domain sources, see its docstring); faces: expected boxes\n"
        "# [x1, y1, x2, y2] in pixels, largest first; [] for a photo with no face.\n"
    )
    (OUT / "expected.yaml").write_text(header + yaml.safe_dump(expected, sort_keys=False, width=120))
    return expected


def main() -> int:
    expected = make()
    print(f"{len(expected)} images in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
