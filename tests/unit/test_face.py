"""Face detection (YuNet through yuface), landmarks, Wav2Lip box padding, the face cache, and the frame geometry on the box."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from assistant.errors import NoFaceError, TalkingHeadError
from assistant.talking_head.face import (
    DETECTOR_ID,
    FaceBox,
    FaceCache,
    detect_face,
    detect_faces,
    pad_box,
)
from assistant.talking_head.wav2lip_engine import feather_mask

# Where the astronaut's face is in skimage.data.astronaut() (512 x 512): checked by eye.
FACE_CENTRE_XY = (223, 113)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture
def astronaut_png(tmp_path: Path, astronaut: np.ndarray) -> Path:
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), astronaut)
    return path


def no_face_image() -> np.ndarray:
    yy, xx = np.mgrid[0:360, 0:480]
    return np.dstack([(xx / 2) % 256, (yy / 2) % 256, (xx + yy) % 256]).astype(np.uint8)


def test_detects_the_astronaut_face_and_pads_the_chin(astronaut: np.ndarray) -> None:
    raw = detect_faces(astronaut)
    assert len(raw) == 1
    box = raw[0]
    cx, cy = FACE_CENTRE_XY
    assert box.x1 < cx < box.x2 and box.y1 < cy < box.y2
    assert 60 <= box.width <= 140 and 60 <= box.height <= 140
    padded = detect_face(astronaut)
    assert padded == FaceBox(box.x1, box.y1, box.x2, box.y2 + 10)  # default pads: bottom 10 px only
    assert padded.landmarks == box.landmarks  # padding keeps the landmarks
    marks = box.landmarks
    assert marks is not None and 0.5 < box.score <= 1.0
    assert marks.eye_left[0] < cx < marks.eye_right[0] and marks.eye_left[1] < cy < marks.mouth_xy[1]
    assert abs(box.roll_deg) < 12


def test_the_largest_of_several_faces_wins(astronaut: np.ndarray) -> None:
    small = cv2.resize(astronaut, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    canvas = np.full((560, 1100, 3), 128, np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small  # the smaller face on the left
    canvas[:512, 560:1072] = astronaut
    faces = detect_faces(canvas)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert detect_face(canvas, pads=(0, 0, 0, 0)) == faces[0]
    assert faces[0].x1 > 560  # the big one, on the right


def test_large_photo_is_detected_in_its_own_pixels(astronaut: np.ndarray) -> None:
    big = cv2.resize(
        astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC
    )  # shrunk for detection internally
    box = detect_faces(big)[0]
    cx, cy = FACE_CENTRE_XY
    assert box.x1 < cx * 4 < box.x2 and box.y1 < cy * 4 < box.y2
    assert box.width > 240


def test_pad_box_clips_to_the_image() -> None:
    box = FaceBox(5, 10, 95, 95)
    assert pad_box(box, (100, 100)) == FaceBox(5, 10, 95, 100)  # bottom 10 clipped at the edge
    assert pad_box(box, (200, 200), (20, 10, 8, 30)) == FaceBox(0, 0, 125, 105)


def test_no_face_is_a_clear_value_error() -> None:
    with pytest.raises(NoFaceError, match="front-facing face") as info:
        detect_face(no_face_image(), source="avatar.png")
    assert isinstance(info.value, ValueError)
    assert "avatar.png" in str(info.value)


class CountingDetector:
    def __init__(self, boxes: list[FaceBox]) -> None:
        self.boxes = boxes
        self.calls = 0

    def __call__(self, image: np.ndarray) -> list[FaceBox]:
        self.calls += 1
        return list(self.boxes)


def test_cache_remembers_in_memory_and_on_disk(tmp_path: Path, astronaut_png: Path) -> None:
    fake = CountingDetector([FaceBox(10, 20, 110, 120), FaceBox(0, 0, 30, 30)])
    cache = FaceCache(tmp_path / "faces", detector=fake)
    image, box = cache.load(astronaut_png)
    assert image.shape == (512, 512, 3)
    assert box == FaceBox(10, 20, 110, 130)  # the first (largest) box, padded
    assert cache.load(astronaut_png)[1] == box
    assert (fake.calls, cache.memory_hits) == (1, 1)

    key = FaceCache.key(astronaut_png.read_bytes())
    entry = json.loads(cache.disk_path(key).read_text())
    assert entry["box"] == {"x1": 10, "y1": 20, "x2": 110, "y2": 120}  # stored unpadded

    second = FaceCache(tmp_path / "faces", pads=(0, 0, 5, 5), detector=fake)  # a new process, other pads
    assert second.load(astronaut_png)[1] == FaceBox(5, 20, 115, 120)
    assert (fake.calls, second.disk_hits) == (1, 1)


def test_changed_image_bytes_are_detected_again(tmp_path: Path, astronaut: np.ndarray) -> None:
    fake = CountingDetector([FaceBox(1, 2, 50, 60)])
    cache = FaceCache(tmp_path / "faces", detector=fake)
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    cv2.imwrite(str(first), astronaut)
    edited = astronaut.copy()
    edited[0, 0] = 255 - edited[0, 0]
    cv2.imwrite(str(second), edited)
    cache.load(first)
    cache.load(second)
    assert fake.calls == 2
    assert len(list((tmp_path / "faces").glob("*.json"))) == 2


def test_corrupt_cache_entry_is_ignored(tmp_path: Path, astronaut_png: Path) -> None:
    fake = CountingDetector([FaceBox(10, 20, 110, 120)])
    key = FaceCache.key(astronaut_png.read_bytes())
    (tmp_path / "faces").mkdir()
    cache = FaceCache(tmp_path / "faces", detector=fake)
    cache.disk_path(key).write_text("{not json")
    assert cache.load(astronaut_png)[1] == FaceBox(10, 20, 110, 130)
    assert fake.calls == 1
    assert json.loads(cache.disk_path(key).read_text())["box"]["x2"] == 110  # rewritten


def test_unwritable_cache_dir_costs_only_a_detection(tmp_path: Path, astronaut_png: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    fake = CountingDetector([FaceBox(10, 20, 110, 120)])
    assert FaceCache(blocker / "faces", detector=fake).load(astronaut_png)[1] == FaceBox(10, 20, 110, 130)


def test_real_detector_through_the_cache(tmp_path: Path, astronaut_png: Path) -> None:
    cache = FaceCache(tmp_path / "faces")
    _, box = cache.load(astronaut_png)
    assert box.x1 < FACE_CENTRE_XY[0] < box.x2
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), no_face_image())
    with pytest.raises(NoFaceError, match="blank.png"):
        cache.load(blank)
    assert len(list((tmp_path / "faces").glob("*.json"))) == 1  # a failure is not cached


def test_missing_and_undecodable_images(tmp_path: Path) -> None:
    cache = FaceCache(tmp_path / "faces")
    with pytest.raises(FileNotFoundError, match="Avatar image not found"):
        cache.load(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(TalkingHeadError, match="bad.png"):
        cache.load(bad)


# ---- geometry built on the box ----
def test_box_follows_the_photo_into_the_frame() -> None:
    # astronaut 512 x 512 fitted into 1280 x 720: scale 720 / 512, centred 280 px from the left
    assert FaceBox(177, 67, 270, 170).scaled(720 / 512, 280, 0) == FaceBox(529, 94, 660, 239)


def test_feather_mask_has_no_hard_edge() -> None:
    mask = feather_mask(120, 100)
    assert mask.shape == (120, 100, 1) and mask.dtype == np.float32
    assert mask[0].max() == 0 and mask[-1].max() == 0 and mask[:, 0].max() == 0 and mask[:, -1].max() == 0
    assert mask[:60].max() == 0  # the upper half of the face is the photo's own
    assert mask[95, 50, 0] == pytest.approx(1.0)  # full weight around the mouth
    assert np.abs(np.diff(mask[:, 50, 0])).max() < 0.2  # gradual, no step


def test_landmarks_give_the_roll_and_the_mouth_of_a_tilted_head(astronaut: np.ndarray) -> None:
    upright = detect_faces(astronaut)[0]
    centre = (float(FACE_CENTRE_XY[0]), float(FACE_CENTRE_XY[1]))
    turned = cv2.warpAffine(
        astronaut, cv2.getRotationMatrix2D(centre, -25, 1.0), (512, 512), borderMode=cv2.BORDER_REPLICATE
    )  # -25 in OpenCV's convention: clockwise on screen
    tilted = detect_faces(turned)[0]
    assert 18 < tilted.roll_deg - upright.roll_deg < 32
    # The mouth went round the centre with the head: 25 degrees clockwise, its distance kept.
    (ux, uy), (tx, ty) = (np.subtract(b.mouth_xy, centre) for b in (upright, tilted))
    swept = np.degrees(np.arctan2(ty, tx) - np.arctan2(uy, ux))
    assert 18 < swept < 32 and abs(np.hypot(tx, ty) - np.hypot(ux, uy)) < 8
    assert abs(tilted.width - upright.width) < 0.15 * upright.width  # the box does not grow as the head rolls


def test_scaling_a_box_moves_its_landmarks_and_equality_ignores_them(astronaut: np.ndarray) -> None:
    box = detect_faces(astronaut)[0]
    moved = box.scaled(2.0, 10, 20)
    assert moved.landmarks is not None and box.landmarks is not None
    assert moved.landmarks.nose == (box.landmarks.nose[0] * 2 + 10, box.landmarks.nose[1] * 2 + 20)
    assert moved.roll_deg == pytest.approx(box.roll_deg)
    assert FaceBox(box.x1, box.y1, box.x2, box.y2) == box


def test_two_faces_of_similar_size_are_a_clear_error(astronaut: np.ndarray) -> None:
    canvas = np.full((512, 1024, 3), 128, np.uint8)
    canvas[:, :512] = astronaut
    canvas[:, 512:] = astronaut[:, ::-1]
    assert len(detect_faces(canvas)) == 2
    with pytest.raises(NoFaceError, match="Found 2 faces of similar size in pair.png") as info:
        detect_face(canvas, source="pair.png")
    assert "one face" in str(info.value)


def test_a_box_from_another_detector_is_not_served(tmp_path: Path, astronaut_png: Path) -> None:
    key = FaceCache.key(astronaut_png.read_bytes())
    old = {"box": {"x1": 1, "y1": 2, "x2": 30, "y2": 40}, "image_hw": [512, 512]}
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / f"{key}.json").write_text(
        json.dumps({**old, "detector": "opencv-haar-frontalface-default"})
    )
    fake = CountingDetector([FaceBox(10, 20, 110, 120)])
    cache = FaceCache(tmp_path / "faces", detector=fake)
    cache.disk_path(key).write_text(
        json.dumps({**old, "detector": "some-older-yunet"})
    )  # right name, wrong id
    assert cache.load(astronaut_png)[1] == FaceBox(10, 20, 110, 130)
    assert (fake.calls, cache.disk_hits) == (1, 0)
    assert json.loads(cache.disk_path(key).read_text())["detector"] == DETECTOR_ID
    assert ".json" in cache.disk_path(key).name and DETECTOR_ID in cache.disk_path(key).name


def test_cached_landmarks_come_back_from_disk(tmp_path: Path, astronaut_png: Path) -> None:
    first = FaceCache(tmp_path / "faces")
    box = first.raw_box(astronaut_png.read_bytes(), cv2.imread(str(astronaut_png)))
    second = FaceCache(tmp_path / "faces")
    again = second.raw_box(astronaut_png.read_bytes(), cv2.imread(str(astronaut_png)))
    assert (first.detections, second.detections, second.disk_hits) == (1, 0, 1)
    assert again == box and again.landmarks == box.landmarks and again.score == box.score
