"""Find the avatar's face: OpenCV Haar frontal-face detection, Wav2Lip's box padding, a memory + disk cache.

Detection runs once per avatar image: the box is cached in memory and on disk as JSON named by the sha256
of the image file's bytes, so the next start (or another engine on the same photo) skips it. The cache
stores the raw detection; padding is applied on the way out, so new pads never need a new detection.

Needs opencv-python(-headless) (its bundled `haarcascade_frontalface_default.xml`) and platformdirs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from assistant.errors import NoFaceError, TalkingHeadError
from assistant.talking_head.base import load_avatar

log = logging.getLogger(__name__)

DEFAULT_PADS = (0, 10, 0, 0)  # (top, bottom, left, right) px, Wav2Lip's default: include the chin
_DETECT_MAX_SIDE = 1024  # px; larger photos are shrunk for detection (Haar cost grows with area)
_CASCADE_FILE = "haarcascade_frontalface_default.xml"
_NO_FACE_HINT = (
    "pick a photo with one clear, front-facing face (both eyes visible, not tilted, at least ~80 px wide), "
    "well lit and not covered"
)


@dataclass(frozen=True)
class FaceBox:
    """A face rectangle in pixels: columns x1..x2-1, rows y1..y2-1 (numpy slice bounds)."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    @property
    def area(self) -> int:
        return self.width * self.height

    def scaled(self, scale: float, offset_x: int = 0, offset_y: int = 0) -> FaceBox:
        """The same box in an image resized by `scale`, then shifted by the offsets (a letterboxed canvas)."""
        return FaceBox(
            int(round(self.x1 * scale)) + offset_x,
            int(round(self.y1 * scale)) + offset_y,
            int(round(self.x2 * scale)) + offset_x,
            int(round(self.y2 * scale)) + offset_y,
        )


def pad_box(
    box: FaceBox, image_hw: tuple[int, int], pads: tuple[int, int, int, int] = DEFAULT_PADS
) -> FaceBox:
    """Grow `box` by (top, bottom, left, right) pixels, clipped to an image of (height, width)."""
    top, bottom, left, right = pads
    h, w = image_hw
    return FaceBox(
        max(0, box.x1 - left), max(0, box.y1 - top), min(w, box.x2 + right), min(h, box.y2 + bottom)
    )


_cascade_lock = threading.Lock()
_cascade: cv2.CascadeClassifier | None = None


def _classifier() -> cv2.CascadeClassifier:
    global _cascade
    with _cascade_lock:
        if _cascade is None:
            path = Path(cv2.data.haarcascades) / _CASCADE_FILE
            cascade = cv2.CascadeClassifier(str(path))
            if cascade.empty():
                raise TalkingHeadError(
                    f"OpenCV's face detector {path} could not be loaded; reinstall opencv-python-headless"
                )
            _cascade = cascade
        return _cascade


def detect_faces(image_bgr: np.ndarray) -> list[FaceBox]:
    """Every frontal face Haar finds in a BGR (or grey) image, unpadded, largest first."""
    if image_bgr.ndim == 3:
        grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    else:
        grey = image_bgr
    h, w = grey.shape[:2]
    scale = min(1.0, _DETECT_MAX_SIDE / max(h, w))
    if scale < 1.0:
        grey = cv2.resize(grey, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    grey = cv2.equalizeHist(grey)  # Haar features are contrast-sensitive; evens out dim or washed-out photos
    min_side = max(24, min(grey.shape[:2]) // 12)  # ignore tiny background faces and texture false positives
    found = _classifier().detectMultiScale(
        grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side)
    )
    boxes = [
        FaceBox(
            max(0, int(x / scale)),
            max(0, int(y / scale)),
            min(w, int((x + fw) / scale)),
            min(h, int((y + fh) / scale)),
        )
        for (x, y, fw, fh) in np.asarray(found).reshape(-1, 4)
    ]
    return sorted(boxes, key=lambda b: b.area, reverse=True)


def detect_face(
    image_bgr: np.ndarray, pads: tuple[int, int, int, int] = DEFAULT_PADS, source: str = "the avatar image"
) -> FaceBox:
    """The largest frontal face, padded per Wav2Lip. Raises NoFaceError when there is none."""
    faces = detect_faces(image_bgr)
    if not faces:
        raise NoFaceError(f"No face found in {source}; {_NO_FACE_HINT}")
    return pad_box(faces[0], image_bgr.shape[:2], pads)


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("avatar-assistant")) / "faces"


class FaceCache:
    """Face boxes per image content, in memory and as `<sha256>.json` files under `cache_dir`.

    `detector` is injectable (a function image -> raw boxes, largest first) so tests can count detections.
    A cache directory that cannot be written only costs a detection next time: it is logged, never raised.
    """

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        pads: tuple[int, int, int, int] = DEFAULT_PADS,
        detector: Callable[[np.ndarray], list[FaceBox]] = detect_faces,
    ) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.pads = tuple(pads)
        self._detector = detector
        self._memory: dict[str, FaceBox] = {}
        self._lock = threading.Lock()
        self.detections = 0  # how many times the detector actually ran
        self.disk_hits = 0
        self.memory_hits = 0

    @staticmethod
    def key(image_bytes: bytes) -> str:
        return hashlib.sha256(image_bytes).hexdigest()

    def _disk_path(self, key: str) -> Path:
        return self.cache_dir / f"{key}.json"

    def _read_disk(self, key: str, image_hw: tuple[int, int]) -> FaceBox | None:
        path = self._disk_path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            box = FaceBox(*(int(data["box"][k]) for k in ("x1", "y1", "x2", "y2")))
            if tuple(data["image_hw"]) != tuple(image_hw):
                return None
            return box
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("Ignoring unreadable face cache entry %s (%s); detecting again", path, e)
            return None

    def _write_disk(self, key: str, box: FaceBox, image_hw: tuple[int, int]) -> None:
        path = self._disk_path(key)
        payload = {
            "box": asdict(box),
            "image_hw": list(image_hw),
            "detector": "opencv-haar-frontalface-default",
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
        """The unpadded largest face for this image content: from memory, disk, or a fresh detection."""
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
            if not faces:
                raise NoFaceError(f"No face found in {source}; {_NO_FACE_HINT}")
            box = faces[0]
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
