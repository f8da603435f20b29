"""The detector over the face set (tests/data/face_set, made by scripts/make_face_set.py): turned +-30 degrees,
mirrored, 80 px on a big canvas, dim, half lit, noisy, glasses, a beard, turned aside. Each face's box must
overlap the expected one (IoU >= 0.5); the photo with no face and the one with two get their messages."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import yaml

from assistant.errors import NoFaceError
from assistant.talking_head.face import FaceBox, FaceCache, detect_faces

SET = Path(__file__).resolve().parents[2] / "tests" / "data" / "face_set"
EXPECTED: dict[str, dict] = yaml.safe_load((SET / "expected.yaml").read_text())
ONE_FACE = [name for name, e in EXPECTED.items() if len(e["faces"]) == 1]


def iou(box: FaceBox, expected: list[int]) -> float:
    x1, y1, x2, y2 = expected
    w = max(0, min(box.x2, x2) - max(box.x1, x1))
    h = max(0, min(box.y2, y2) - max(box.y1, y1))
    inter = w * h
    return inter / (box.area + (x2 - x1) * (y2 - y1) - inter)


def test_the_set_is_big_enough_and_small_on_disk() -> None:
    assert len(ONE_FACE) >= 12
    assert all((SET / name).stat().st_size < 100_000 for name in EXPECTED)


@pytest.mark.parametrize("name", ONE_FACE)
def test_each_face_is_found_where_it_is(name: str) -> None:
    faces = detect_faces(cv2.imread(str(SET / name)))
    assert len(faces) == 1, faces
    assert iou(faces[0], EXPECTED[name]["faces"][0]) >= 0.5, (faces[0], EXPECTED[name])
    marks = faces[0].landmarks
    assert marks is not None
    mx, my = faces[0].mouth_xy
    assert faces[0].x1 < mx < faces[0].x2 and faces[0].y1 + 0.5 * faces[0].height < my < faces[0].y2


def test_a_photo_without_a_face_says_so(tmp_path: Path) -> None:
    with pytest.raises(
        NoFaceError, match="No face found in avatar image .*no_face.jpg; pick a photo with one"
    ):
        FaceCache(tmp_path).load(SET / "no_face.jpg")


def test_a_photo_with_two_faces_says_so(tmp_path: Path) -> None:
    faces = detect_faces(cv2.imread(str(SET / "two_faces.jpg")))
    expected = sorted(EXPECTED["two_faces.jpg"]["faces"], key=lambda b: b[0])
    assert [iou(f, e) >= 0.5 for f, e in zip(sorted(faces, key=lambda f: f.x1), expected)] == [True, True]
    with pytest.raises(NoFaceError, match="Found 2 faces of similar size in avatar image .*two_faces.jpg"):
        FaceCache(tmp_path).load(SET / "two_faces.jpg")
