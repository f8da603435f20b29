"""Make the default avatar and the app icon from the NASA astronaut portrait that scikit-image ships.

Run once by a developer; the PNGs it writes are committed, so neither scikit-image nor this script is
needed at run time:

    .venv/bin/pip install scikit-image      # only for this script
    .venv/bin/python scripts/make_avatar.py

Needs: scikit-image (the picture: `skimage.data.astronaut()`, Eileen Collins, NASA, public domain), OpenCV
(its bundled Haar cascade finds the face) and numpy.

Writes:
- `assets/avatars/astronaut.png`: a head-and-shoulders portrait, 600x720 RGB, the face centred horizontally
  in the upper half, which is what the talking-head engines expect of an avatar.
- `assets/icon.png`: 256x256 RGBA, a round crop of the face on a transparent background.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
AVATAR_PATH = REPO_ROOT / "assets" / "avatars" / "astronaut.png"
ICON_PATH = REPO_ROOT / "assets" / "icon.png"

AVATAR_WIDTH_PX = 600
AVATAR_HEIGHT_PX = 720  # 5:6 portrait
# Head and shoulders: the crop is this many face widths wide, and starts this many face heights above
# the top of the face box (the Haar box starts at the eyebrows, so the hair needs about half a face).
CROP_WIDTH_FACES = 3.3
CROP_ABOVE_FACES = 0.7
ICON_SIZE_PX = 256
ICON_DIAMETER_FACES = 1.6  # the circle holds the face plus the hair around it


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels: left, top, width, height."""

    x_px: int
    y_px: int
    width_px: int
    height_px: int


def load_astronaut() -> np.ndarray:
    """The 512x512 RGB uint8 astronaut portrait bundled with scikit-image."""
    try:
        from skimage import data
    except ImportError as e:
        raise SystemExit(
            "scikit-image is needed to make the avatar (it is not a runtime dependency): "
            ".venv/bin/pip install scikit-image"
        ) from e
    return data.astronaut()  # (512, 512, 3) uint8 RGB


def find_face(rgb: np.ndarray) -> Box:
    """The largest frontal face that OpenCV's bundled Haar cascade finds."""
    cascade_path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(cascade_path))
    if cascade.empty():
        raise SystemExit(f"could not load the Haar cascade {cascade_path}: reinstall opencv-python-headless")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    faces = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(48, 48))
    if len(faces) == 0:
        raise SystemExit("no face found in the astronaut picture; has scikit-image changed it?")
    x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
    return Box(int(x), int(y), int(w), int(h))


def clamp_box(box: Box, image_width_px: int, image_height_px: int) -> Box:
    """Shift (never shrink unless it cannot fit) a box so that it lies inside the image."""
    width = min(box.width_px, image_width_px)
    height = min(box.height_px, image_height_px)
    x = min(max(box.x_px, 0), image_width_px - width)
    y = min(max(box.y_px, 0), image_height_px - height)
    return Box(x, y, width, height)


def portrait_box(face: Box, image_width_px: int, image_height_px: int) -> Box:
    """A 5:6 head-and-shoulders box around a face box, kept inside the image."""
    width = round(face.width_px * CROP_WIDTH_FACES)
    height = round(width * AVATAR_HEIGHT_PX / AVATAR_WIDTH_PX)
    centre_x = face.x_px + face.width_px / 2
    top = face.y_px - face.height_px * CROP_ABOVE_FACES
    box = Box(round(centre_x - width / 2), round(top), width, height)
    return clamp_box(box, image_width_px, image_height_px)


def crop(rgb: np.ndarray, box: Box) -> np.ndarray:
    return rgb[box.y_px : box.y_px + box.height_px, box.x_px : box.x_px + box.width_px]


def make_avatar(rgb: np.ndarray, face: Box) -> np.ndarray:
    """(720, 600, 3) uint8 RGB head-and-shoulders portrait."""
    height_px, width_px = rgb.shape[:2]
    box = portrait_box(face, width_px, height_px)
    # The source is only 512 px, so this upscales ~1.9x; Lanczos keeps edges sharper than bilinear.
    return cv2.resize(crop(rgb, box), (AVATAR_WIDTH_PX, AVATAR_HEIGHT_PX), interpolation=cv2.INTER_LANCZOS4)


def make_icon(rgb: np.ndarray, face: Box) -> np.ndarray:
    """(256, 256, 4) uint8 RGBA: the face in a circle, transparent outside it."""
    height_px, width_px = rgb.shape[:2]
    side = round(max(face.width_px, face.height_px) * ICON_DIAMETER_FACES)
    centre_x = face.x_px + face.width_px / 2
    centre_y = face.y_px + face.height_px * 0.4  # a little above the box centre, to take in the hair
    box = clamp_box(Box(round(centre_x - side / 2), round(centre_y - side / 2), side, side), width_px, height_px)
    square = cv2.resize(crop(rgb, box), (ICON_SIZE_PX, ICON_SIZE_PX), interpolation=cv2.INTER_AREA)
    # Anti-aliased disc: draw it 4x larger and shrink, so the rim is not jagged.
    big = np.zeros((ICON_SIZE_PX * 4, ICON_SIZE_PX * 4), np.uint8)
    cv2.circle(big, (ICON_SIZE_PX * 2, ICON_SIZE_PX * 2), ICON_SIZE_PX * 2 - 4, 255, -1, cv2.LINE_AA)
    alpha = cv2.resize(big, (ICON_SIZE_PX, ICON_SIZE_PX), interpolation=cv2.INTER_AREA)
    return np.dstack([square, alpha])


def write_png(path: Path, image: np.ndarray) -> None:
    """Write an RGB or RGBA uint8 array as PNG (OpenCV wants BGR/BGRA)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    code = cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR
    if not cv2.imwrite(str(path), cv2.cvtColor(image, code), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise SystemExit(f"could not write {path}: check that the folder is writable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--avatar", type=Path, default=AVATAR_PATH, help="where to write the portrait PNG")
    parser.add_argument("--icon", type=Path, default=ICON_PATH, help="where to write the icon PNG")
    args = parser.parse_args(argv)

    rgb = load_astronaut()
    face = find_face(rgb)
    write_png(args.avatar, make_avatar(rgb, face))
    write_png(args.icon, make_icon(rgb, face))
    print(f"face at {face}; wrote {args.avatar} ({AVATAR_WIDTH_PX}x{AVATAR_HEIGHT_PX}) "
          f"and {args.icon} ({ICON_SIZE_PX}x{ICON_SIZE_PX})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
