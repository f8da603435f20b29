"""Contact sheets of the weightless (light) talking head, and the test faces they are drawn on.

Run by a developer; what it writes is committed:

    .venv/bin/python scripts/contact_sheet.py faces   # tests/data/faces/*.jpg; needs scikit-image, matplotlib
    .venv/bin/python scripts/contact_sheet.py sheet docs/light_engine_contact_sheet.png
    .venv/bin/python scripts/contact_sheet.py mouths  # docs/light_engine_mouths.png: 5 faces x 7 mouths
    # the engine before the mouth rework:
    git show 47a862a:assistant/talking_head/light.py > /tmp/light_before.py
    .venv/bin/python scripts/contact_sheet.py sheet docs/light_engine_before.png \
        --light-module /tmp/light_before.py --title "BEFORE (commit 47a862a): ..."

`sheet` draws, for every test face, the lower face at mouth openings 0, 0.25, 0.5, 0.75 and 1 (neutral shape),
then a rounded ("oo") and a spread ("ee") mouth at 0.6, exactly as `FaceRig.render` draws them into a 1280x720
frame (no sway, no blink). Run it on the code before a change and after it to compare the two.

`mouths` draws five faces, the shipped avatar and four of the detector's test set (tests/data/face_set/, made by
scripts/make_face_set.py: Grace Hopper upright, the avatar rolled 30 degrees, Hopper rolled 25 degrees the
other way and dim, the avatar lit from one side), each closed, opened 0.25 to 1, rounded and spread at 0.7:
the mouth, crop centred on it, as it sits in the frame (a rolled head's jaw drops along its own axis). The PNG
is quantised to 256 colours to stay small (about 300 KB).

The faces (all public domain, all offline):
- `astronaut_open_smile`: the shipped avatar (`assets/avatars/astronaut.png`, skimage.data.astronaut(), Eileen
  Collins, NASA): front lit, a smile with the upper teeth showing.
- `hopper_closed_smile`: Grace Hopper (US Navy photo, shipped with matplotlib as
  sample_data/grace_hopper.jpg), cropped to head and shoulders: a closed-lip smile, glasses, wrinkled skin, a
  larger face in the frame.
- `astronaut_small_tilted_dim`: the astronaut photo shrunk to 55 %, rotated 6 degrees, relit darker from the
  left (a horizontal gain ramp 0.45 -> 1.0, gamma 1.25) and cooled, on a padded canvas: a small, tilted,
  unevenly lit face.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
FACES_DIR = REPO_ROOT / "tests" / "data" / "faces"
AVATAR = REPO_ROOT / "assets" / "avatars" / "astronaut.png"
FACE_NAMES = ("astronaut_open_smile", "hopper_closed_smile", "astronaut_small_tilted_dim")
OPENINGS = (0.0, 0.25, 0.5, 0.75, 1.0)
SHAPES = ((0.6, -1.0, "oo 0.6"), (0.6, 1.0, "ee 0.6"))
TILE_H = 220  # px per tile in the sheet
FACE_SET = REPO_ROOT / "tests" / "data" / "face_set"
MOUTH_FACES = {
    "avatar": AVATAR,
    "Hopper": FACE_SET / "hopper_upright.jpg",
    "avatar, rolled 30": FACE_SET / "avatar_roll_cw30.jpg",
    "Hopper, rolled -25, dim": FACE_SET / "hopper_roll_ccw25_dim.jpg",
    "avatar, half lit": FACE_SET / "avatar_half_lit.jpg",
}
MOUTHS = [(0.0, 0.0, "closed")] + [(o, 0.0, f"open {o:g}") for o in (0.25, 0.5, 0.75, 1.0)]
MOUTHS += [(0.7, -1.0, "oo 0.7"), (0.7, 1.0, "ee 0.7")]
MOUTH_TILE_H = 150  # px: seven tiles across, about 1,100 px wide


def face_paths() -> dict[str, Path]:
    return {
        "astronaut_open_smile": AVATAR,
        "hopper_closed_smile": FACES_DIR / "hopper_closed_smile.jpg",
        "astronaut_small_tilted_dim": FACES_DIR / "astronaut_small_tilted_dim.jpg",
    }


def make_faces() -> None:
    import matplotlib.cbook
    from skimage import data

    FACES_DIR.mkdir(parents=True, exist_ok=True)
    # Grace Hopper: 512x600; head and shoulders, 5:6, the face in the upper half.
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
    hopper = cv2.resize(hopper[20:560, 30:480], (500, 600), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(FACES_DIR / "hopper_closed_smile.jpg"), hopper, [cv2.IMWRITE_JPEG_QUALITY, 92])

    astro = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)  # (512, 512, 3)
    small = cv2.resize(astro, None, fx=0.55, fy=0.55, interpolation=cv2.INTER_AREA)  # (282, 282)
    canvas = cv2.copyMakeBorder(small, 60, 120, 90, 90, cv2.BORDER_REFLECT)  # (462, 462): the face is small
    h, w = canvas.shape[:2]
    rot = cv2.getRotationMatrix2D((w / 2, h / 2), 6.0, 1.0)
    canvas = cv2.warpAffine(canvas, rot, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    gain = np.linspace(0.45, 1.0, w, dtype=np.float32)[None, :, None]  # light from the right, shadow left
    lit = ((canvas.astype(np.float32) / 255.0) ** 1.25) * gain * np.array([1.08, 1.0, 0.9], np.float32)
    out = np.clip(lit * 255.0 + 0.5, 0, 255).astype(np.uint8)
    cv2.imwrite(str(FACES_DIR / "astronaut_small_tilted_dim.jpg"), out, [cv2.IMWRITE_JPEG_QUALITY, 92])


def _label(tile: np.ndarray, text: str) -> None:
    cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


def light_module(path: Path | None) -> ModuleType:
    """The light engine: the installed one, or another version of light.py (to draw the sheet from before)."""
    if path is None:
        from assistant.talking_head import light

        return light
    spec = importlib.util.spec_from_file_location("light_under_test", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def face_row(path: Path, name: str, light: ModuleType) -> np.ndarray:
    from assistant.talking_head.base import RenderSettings

    head = light.LightTalkingHead(path, RenderSettings(1280, 720, 25.0), blinks=False, sway=False)
    rig = head.rig
    y0, _, x0, _ = rig.roi
    # The lower face: from the nose to below the chin, a face width and a bit across.
    box = head.face_box
    top, bottom = int(box.y1 + 0.45 * rig.fh) - y0, int(box.y1 + 1.30 * rig.fh) - y0
    left, right = int(rig.cx - 0.62 * rig.fw) - x0, int(rig.cx + 0.62 * rig.fw) - x0
    tiles = []
    for opening, wide, text in [(o, 0.0, f"open {o:.2f}") for o in OPENINGS] + list(SHAPES):
        roi = rig.render(opening, wide, 0.0, (0.0, 0.0, 0.0)).copy()
        crop = roi[max(0, top) : bottom, max(0, left) : right]
        scale = TILE_H / crop.shape[0]
        tile = cv2.resize(crop, (round(crop.shape[1] * scale), TILE_H), interpolation=cv2.INTER_AREA)
        _label(tile, text if tiles else f"{name}: {text}")
        tiles.append(tile)
    return np.hstack(tiles)


def mouth_row(path: Path, name: str) -> np.ndarray:
    """One face at each of MOUTHS: a crop as wide as the face and 0.8 of it high, centred below the mouth."""
    from assistant.talking_head.base import RenderSettings
    from assistant.talking_head.light import LightTalkingHead

    head = LightTalkingHead(path, RenderSettings(1280, 720, 25.0), blinks=False, sway=False)
    rig = head.rig
    y0, _, x0, _ = rig.roi
    mx, my = rig.head.to_picture(rig.cx, rig.seam + 0.08 * rig.fh)  # a little below the lips: the jaw drops
    half_w, half_h = 0.55 * rig.fw, 0.40 * rig.fh
    top, left = max(0, int(my - half_h) - y0), max(0, int(mx - half_w) - x0)
    bottom, right = int(my + half_h) - y0, int(mx + half_w) - x0
    tiles = []
    for opening, wide, text in MOUTHS:
        crop = rig.render(opening, wide, 0.0, (0.0, 0.0, 0.0))[top:bottom, left:right]
        scale = MOUTH_TILE_H / crop.shape[0]
        tile = cv2.resize(crop, (round(crop.shape[1] * scale), MOUTH_TILE_H), interpolation=cv2.INTER_AREA)
        _label(tile, text if tiles else f"{name}: {text}")
        tiles.append(cv2.copyMakeBorder(tile, 0, 0, 0, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255)))
    return np.hstack(tiles)


def _stack(rows: list[np.ndarray], title: str) -> np.ndarray:
    """Rows one above the other, padded white to the widest, under a title line."""
    width = max(r.shape[1] for r in rows)
    white = (255, 255, 255)
    rows = [
        cv2.copyMakeBorder(r, 0, 4, 0, width - r.shape[1], cv2.BORDER_CONSTANT, value=white) for r in rows
    ]
    header = np.full((30, width, 3), 255, np.uint8)
    cv2.putText(header, title, (8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([header] + rows)


def make_sheet(out: Path, title: str, light: ModuleType) -> None:
    sheet = _stack([face_row(path, name, light) for name, path in face_paths().items()], title)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {out}")


def make_mouths(out: Path, title: str) -> None:
    from PIL import Image

    sheet = _stack([mouth_row(path, name) for name, path in MOUTH_FACES.items()], title)
    rgb = Image.fromarray(np.ascontiguousarray(sheet[..., ::-1]))
    out.parent.mkdir(parents=True, exist_ok=True)
    rgb.quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)  # palette PNG: ~a third
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("faces", help="write the test faces into tests/data/faces")
    sheet = sub.add_parser("sheet", help="draw the contact sheet")
    default_out = REPO_ROOT / "docs" / "light_engine_contact_sheet.png"
    sheet.add_argument("out", type=Path, nargs="?", default=default_out)
    title = "light engine: mouth opening 0 -> 1, then rounded and spread at 0.6"
    sheet.add_argument("--title", default=title)
    sheet.add_argument("--light-module", type=Path, help="draw with this light.py, not the installed one")
    mouths = sub.add_parser("mouths", help="draw the 5 faces x 7 mouth shapes sheet")
    mouths.add_argument("out", type=Path, nargs="?", default=REPO_ROOT / "docs" / "light_engine_mouths.png")
    mouths.add_argument(
        "--title", default="light engine: closed, opening 0.25 -> 1, rounded and spread at 0.7"
    )
    args = parser.parse_args(argv)
    if args.cmd == "faces":
        make_faces()
    elif args.cmd == "mouths":
        make_mouths(args.out, args.title)
    else:
        make_sheet(args.out, args.title, light_module(args.light_module))
    return 0


if __name__ == "__main__":
    sys.exit(main())
