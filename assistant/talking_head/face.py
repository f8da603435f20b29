"""Find the avatar's face: YuNet (libfacedetection) with five landmarks, Wav2Lip's box padding, a memory + disk cache.

The detector is YuNet, a small CNN by Shiqi Yu et al., as the `yuface` wheel ships it (libfacedetection's
C++ with the weights compiled in, BSD 3-Clause, about 1 MB installed): nothing is downloaded at run time. It
finds faces turned up to about 40 degrees in the picture plane, turned aside, small (down to about 20 px wide),
dim or half lit, and it gives five landmarks (both eyes, the nose tip, the mouth corners), from which the face
record carries the head's roll and the mouth's position.

Detection runs once per avatar image: the box is cached in memory and on disk as JSON named by the sha256 of
the image file's bytes and the detector's version, so the next start (or another engine on the same photo)
skips it, and a box found by another detector is never served. The cache stores the raw detection; padding is
applied on the way out, so new pads never need a new detection.

Needs yuface, opencv-python(-headless) (resizing) and platformdirs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from assistant.errors import NoFaceError, TalkingHeadError
from assistant.talking_head.base import load_avatar

log = logging.getLogger(__name__)

DEFAULT_PADS = (0, 10, 0, 0)  # (top, bottom, left, right) px, Wav2Lip's default: include the chin
# Names the detector and everything that shapes its boxes; part of each cache file's name, so a cache written
# by another detector (the Haar cascade before it, a retuned YuNet) is detected again instead of served.
DETECTOR_ID = "yunet-yuface-2023.5.1-box2"
_DETECT_MAX_SIDE = 960  # px; larger photos are shrunk first (yuface warns above; cost grows with area)
_MIN_CONFIDENCE = 0.6  # YuNet's score in [0, 1]; real faces in the test set score 0.85-0.96
_MIN_FACE_FRACTION = 1 / 48  # of the image's shorter side: ignores texture and tiny background faces
# A second face at least this wide (relative to the largest) makes the photo ambiguous: whose mouth should move?
# A small face in the background (a poster, a crowd) is not; the avatar then is the largest face.
_SIMILAR_WIDTH = 0.8
_NO_FACE_HINT = (
    "pick a photo with one clear, front-facing face (both eyes visible, at least ~80 px wide), well lit and not "
    "covered"
)


@dataclass(frozen=True)
class FaceLandmarks:
    """Five points on a face, (x, y) in image pixels; left and right as seen in the picture."""

    eye_left: tuple[float, float]
    eye_right: tuple[float, float]
    nose: tuple[float, float]
    mouth_left: tuple[float, float]
    mouth_right: tuple[float, float]

    @property
    def roll_deg(self) -> float:
        """The head's tilt in the picture plane: the eye line's angle, degrees, positive clockwise on screen (the
        right-hand eye lower). The head's own down axis is (-sin, cos) of this angle in image coordinates."""
        (lx, ly), (rx, ry) = self.eye_left, self.eye_right
        return math.degrees(math.atan2(ry - ly, rx - lx))

    @property
    def mouth_xy(self) -> tuple[float, float]:
        """The mouth's centre: midway between its corners."""
        (lx, ly), (rx, ry) = self.mouth_left, self.mouth_right
        return ((lx + rx) / 2, (ly + ry) / 2)

    @property
    def mouth_width(self) -> float:
        (lx, ly), (rx, ry) = self.mouth_left, self.mouth_right
        return math.hypot(rx - lx, ry - ly)

    def points(self) -> list[tuple[float, float]]:
        return [self.eye_left, self.eye_right, self.nose, self.mouth_left, self.mouth_right]

    def mapped(self, scale: float, offset_x: float = 0.0, offset_y: float = 0.0) -> FaceLandmarks:
        """The same points in an image resized by `scale`, then shifted by the offsets."""
        return FaceLandmarks(*((x * scale + offset_x, y * scale + offset_y) for x, y in self.points()))


@dataclass(frozen=True)
class FaceBox:
    """A face rectangle in pixels: columns x1..x2-1, rows y1..y2-1 (numpy slice bounds).

    The rectangle keeps the frame the engines were tuned on (the Haar detector's, before YuNet): a square about
    as wide as the face, from the brows to just above the chin. `landmarks` (None when the box came from
    elsewhere: a test, an old cache entry) says where the eyes and mouth are and how the head is rolled; two
    boxes compare equal by their rectangle alone.
    """

    x1: int
    y1: int
    x2: int
    y2: int
    landmarks: FaceLandmarks | None = field(default=None, compare=False)
    score: float = field(default=1.0, compare=False)  # the detector's confidence in [0, 1]

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def roll_deg(self) -> float:
        """The head's roll (see FaceLandmarks.roll_deg); 0 when there are no landmarks."""
        return self.landmarks.roll_deg if self.landmarks else 0.0

    @property
    def mouth_xy(self) -> tuple[float, float]:
        """The mouth's centre from the landmarks, else where it sits in an upright face's box."""
        if self.landmarks:
            return self.landmarks.mouth_xy
        return ((self.x1 + self.x2) / 2, self.y1 + 0.86 * self.height)

    def scaled(self, scale: float, offset_x: int = 0, offset_y: int = 0) -> FaceBox:
        """The same box in an image resized by `scale`, then shifted by the offsets (a letterboxed canvas)."""
        return replace(
            self,
            x1=int(round(self.x1 * scale)) + offset_x,
            y1=int(round(self.y1 * scale)) + offset_y,
            x2=int(round(self.x2 * scale)) + offset_x,
            y2=int(round(self.y2 * scale)) + offset_y,
            landmarks=self.landmarks.mapped(scale, offset_x, offset_y) if self.landmarks else None,
        )


def pad_box(
    box: FaceBox, image_hw: tuple[int, int], pads: tuple[int, int, int, int] = DEFAULT_PADS
) -> FaceBox:
    """Grow `box` by (top, bottom, left, right) pixels, clipped to an image of (height, width)."""
    top, bottom, left, right = pads
    h, w = image_hw
    return replace(
        box,
        x1=max(0, box.x1 - left),
        y1=max(0, box.y1 - top),
        x2=min(w, box.x2 + right),
        y2=min(h, box.y2 + bottom),
    )


_yunet_lock = threading.Lock()  # libfacedetection keeps scratch buffers per call; one detection at a time


def _yunet(image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores (N,) in [0, 1], boxes (N, 4) x y w h, landmarks (N, 5, 2) x y) in the given image's pixels."""
    try:
        import yuface
    except ImportError as e:
        raise TalkingHeadError(
            "The face detector is missing: install it with `.venv/bin/pip install yuface` (or run `make setup`)"
        ) from e
    with _yunet_lock:
        scores, boxes, points = yuface.detect(np.ascontiguousarray(image_bgr), conf=_MIN_CONFIDENCE)
    return (
        np.asarray(scores, np.float32).reshape(-1) / 100.0,  # yuface scores in percent
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(points, np.float32).reshape(-1, 5, 2),
    )


def _face_box(xywh: np.ndarray, points: np.ndarray, score: float, image_hw: tuple[int, int]) -> FaceBox:
    """YuNet's detection -> the engines' square frame, placed by the landmarks.

    The light rig looks for the lips 80 % of the way down its box and for the eyes 29 % and 71 % across, the
    proportions of the Haar box it was tuned on; YuNet's own box runs from the forehead to below the chin and
    shrinks in height as the head rolls. So the side comes from two distances that do not change with roll,
    eyes to mouth (0.37 of the box) and eye to eye (0.415; it shrinks as the head turns aside, the other does
    not), and the mouth is put 80 % of the way down. Haar's box wandered by +-15 % from face to face; these
    ratios make the avatar's box 203 px (Haar 186) and the small tilted test face's 56 (Haar 59): the rig's
    openings, tuned on Haar's boxes, are no smaller than they were."""
    H, W = image_hw
    marks = FaceLandmarks(*((float(px), float(py)) for px, py in points))
    eyes = (np.asarray(marks.eye_left) + np.asarray(marks.eye_right)) / 2
    mouth = np.asarray(marks.mouth_xy)
    eyes_to_mouth = float(np.hypot(*(mouth - eyes)))
    eye_to_eye = float(np.hypot(*(np.asarray(marks.eye_right) - np.asarray(marks.eye_left))))
    side = 0.5 * (eyes_to_mouth / 0.37 + eye_to_eye / 0.415)
    yunet_side = math.sqrt(max(float(xywh[2]), 1.0) * max(float(xywh[3]), 1.0))
    side = float(np.clip(side, 0.7 * yunet_side, 1.3 * yunet_side))  # landmarks bunched up by a profile
    cx, y1 = (eyes[0] + mouth[0]) / 2, mouth[1] - 0.80 * side
    return FaceBox(
        max(0, int(round(cx - side / 2))),
        max(0, int(round(y1))),
        min(W, int(round(cx + side / 2))),
        min(H, int(round(y1 + side))),
        landmarks=marks,
        score=round(float(score), 3),
    )


def detect_faces(image_bgr: np.ndarray) -> list[FaceBox]:
    """Every face YuNet finds in a BGR (or grey) image, unpadded, with landmarks, largest first."""
    image = image_bgr
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    h, w = image.shape[:2]
    scale = min(1.0, _DETECT_MAX_SIDE / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    scores, boxes, points = _yunet(image)
    min_width = min(h, w) * _MIN_FACE_FRACTION
    faces = [
        _refined(image_bgr, _face_box(box / scale, pts / scale, score, (h, w)))
        for score, box, pts in zip(scores, boxes, points)
        if box[2] / scale >= min_width
    ]
    return sorted(faces, key=lambda b: b.area, reverse=True)


_REFINE_SIDE = 200  # px: the face's side in the second look (YuNet's landmarks are tight at this size)


def _refined(image: np.ndarray, face: FaceBox, passes: int = 2) -> FaceBox:
    """The face looked at again, turned upright and enlarged: YuNet's landmarks lag behind a rolled or small
    face (a 90 px face turned 25 degrees reads as turned 2), and are right on a large upright one. Each pass
    undoes the roll found so far around the face, scales it to 200 px and maps the new landmarks back."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    image = image[..., :3]
    size = int(2.2 * _REFINE_SIDE)
    for _ in range(passes):
        marks = face.landmarks
        assert marks is not None
        eyes = (np.asarray(marks.eye_left) + np.asarray(marks.eye_right)) / 2
        centre = (eyes + np.asarray(marks.mouth_xy)) / 2
        # OpenCV's positive angle turns counter-clockwise on screen: undoes a clockwise (positive) roll.
        warp = cv2.getRotationMatrix2D(
            (float(centre[0]), float(centre[1])), face.roll_deg, _REFINE_SIDE / face.width
        )
        warp[:, 2] += size / 2 - centre
        crop = cv2.warpAffine(
            image, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        scores, boxes, points = _yunet(crop)
        if not len(scores):
            return face
        middle = np.argmin(np.hypot(*(boxes[:, :2] + boxes[:, 2:] / 2 - size / 2).T))
        back = cv2.invertAffineTransform(warp)  # (2, 3): crop pixels -> image pixels
        pts = points[middle] @ back[:, :2].T + back[:, 2]  # (5, 2)
        xywh = boxes[middle] * face.width / _REFINE_SIDE  # only its size is used
        face = _face_box(xywh, pts, max(face.score, float(scores[middle])), image.shape[:2])
    return face


def pick_face(faces: list[FaceBox], source: str = "the avatar image") -> FaceBox:
    """The avatar's face among `detect_faces`' answer: the largest, unless there is none (NoFaceError) or a
    second face nearly as large (NoFaceError too: which one should talk is the user's choice, not ours)."""
    if not faces:
        raise NoFaceError(f"No face found in {source}; {_NO_FACE_HINT}")
    rivals = [f for f in faces[1:] if f.width >= _SIMILAR_WIDTH * faces[0].width]
    if rivals:
        raise NoFaceError(
            f"Found {len(rivals) + 1} faces of similar size in {source}; the avatar needs a photo with one face: "
            "crop it to the person who should speak"
        )
    return faces[0]


def detect_face(
    image_bgr: np.ndarray, pads: tuple[int, int, int, int] = DEFAULT_PADS, source: str = "the avatar image"
) -> FaceBox:
    """The avatar's face (see pick_face), padded per Wav2Lip. Raises NoFaceError for none or two."""
    return pad_box(pick_face(detect_faces(image_bgr), source), image_bgr.shape[:2], pads)


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("avatar-assistant")) / "faces"


def _point(v: object) -> tuple[float, float]:
    x, y = v  # type: ignore[misc]
    return (float(x), float(y))


class FaceCache:
    """Face boxes per image content and detector, in memory and as `<sha256>.<DETECTOR_ID>.json` files under
    `cache_dir`.

    `detector` is injectable (a function image -> raw boxes, largest first) so tests can count detections;
    `detector_id` names it in the cache files. A cache directory that cannot be written only costs a detection
    next time: it is logged, never raised.
    """

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        pads: tuple[int, int, int, int] = DEFAULT_PADS,
        detector: Callable[[np.ndarray], list[FaceBox]] = detect_faces,
        detector_id: str = DETECTOR_ID,
    ) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.pads = tuple(pads)
        self._detector = detector
        self.detector_id = detector_id
        self._memory: dict[str, FaceBox] = {}
        self._lock = threading.Lock()
        self.detections = 0  # how many times the detector actually ran
        self.disk_hits = 0
        self.memory_hits = 0

    @staticmethod
    def key(image_bytes: bytes) -> str:
        return hashlib.sha256(image_bytes).hexdigest()

    def disk_path(self, key: str) -> Path:
        return self.cache_dir / f"{key}.{self.detector_id}.json"

    def _read_disk(self, key: str, image_hw: tuple[int, int]) -> FaceBox | None:
        path = self.disk_path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("detector") != self.detector_id or tuple(data["image_hw"]) != tuple(image_hw):
                return None
            marks = data.get("landmarks")
            return FaceBox(
                *(int(data["box"][k]) for k in ("x1", "y1", "x2", "y2")),
                landmarks=FaceLandmarks(**{k: _point(v) for k, v in marks.items()}) if marks else None,
                score=float(data.get("score", 1.0)),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("Ignoring unreadable face cache entry %s (%s); detecting again", path, e)
            return None

    def _write_disk(self, key: str, box: FaceBox, image_hw: tuple[int, int]) -> None:
        path = self.disk_path(key)
        payload = {
            "box": {k: getattr(box, k) for k in ("x1", "y1", "x2", "y2")},
            "landmarks": asdict(box.landmarks) if box.landmarks else None,
            "score": box.score,
            "image_hw": list(image_hw),
            "detector": self.detector_id,
        }
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps(payload), encoding="utf-8")
            os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        except OSError as e:
            log.warning(
                "Could not write face cache %s (%s); the face will be detected again next time", path, e
            )

    def raw_box(self, image_bytes: bytes, image_bgr: np.ndarray, source: str = "the avatar image") -> FaceBox:
        """The unpadded avatar face (see pick_face) for this image content: from memory, disk, or a detection."""
        key = self.key(image_bytes)
        hw = image_bgr.shape[:2]
        with self._lock:
            if key in self._memory:
                self.memory_hits += 1
                return self._memory[key]
        box = self._read_disk(key, hw)
        if box is not None:
            self.disk_hits += 1
        else:
            faces = self._detector(image_bgr)
            self.detections += 1
            box = pick_face(faces, source)
            self._write_disk(key, box, hw)
        with self._lock:
            self._memory[key] = box
        return box

    def face_box(
        self, image_bytes: bytes, image_bgr: np.ndarray, source: str = "the avatar image"
    ) -> FaceBox:
        """The padded face box (what the engine crops) for this image."""
        return pad_box(self.raw_box(image_bytes, image_bgr, source), image_bgr.shape[:2], self.pads)

    def load(self, image_path: str | Path) -> tuple[np.ndarray, FaceBox]:
        """Image file -> (BGR image, padded face box). FileNotFoundError, NoFaceError, TalkingHeadError."""
        path = Path(image_path)
        image = load_avatar(path)  # the same pixels every engine draws (alpha on white, grey expanded)
        return image, self.face_box(path.read_bytes(), image, f"avatar image {path}")
