"""Detection over the face set (tests/data/face_set): the app's detector against the Haar cascade it replaced.

    .venv/bin/python scripts/face_set_report.py

Per image: faces found and the IoU of the largest with the expected box (found = IoU >= 0.5), for YuNet
(`assistant.talking_head.face.detect_faces`) and for OpenCV's Haar frontal-face cascade with the parameters the
app used before (commit 8fe55cc: equalised grey, scale 1.1, 5 neighbours, min side 1/12 of the image).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

from assistant.talking_head.face import detect_faces

SET = Path(__file__).resolve().parents[1] / "tests" / "data" / "face_set"


def haar(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    h, w = grey.shape
    scale = min(1.0, 1024 / max(h, w))
    if scale < 1.0:
        grey = cv2.resize(grey, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    grey = cv2.equalizeHist(grey)
    side = max(24, min(grey.shape) // 12)
    found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    boxes = [(int(x / scale), int(y / scale), int((x + fw) / scale), int((y + fh) / scale)) for x, y, fw, fh in
             np.asarray(found).reshape(-1, 4)]  # fmt: skip
    return sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)


def yunet(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    return [(f.x1, f.y1, f.x2, f.y2) for f in detect_faces(image)]


def iou(a: tuple[int, ...] | list[int], b: tuple[int, ...] | list[int]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def right(found: list, expected: list[list[int]]) -> bool:
    """As the app needs it: as many faces as expected, each matching one expected box."""
    return len(found) == len(expected) and all(max(iou(f, e) for f in found) >= 0.5 for e in expected)


def main() -> int:
    expected = yaml.safe_load((SET / "expected.yaml").read_text())
    print("| image | Haar: faces, IoU | YuNet: faces, IoU |\n| --- | --- | --- |")
    score = {"Haar": 0, "YuNet": 0}
    times = {"Haar": 0.0, "YuNet": 0.0}
    for name, e in expected.items():
        image = cv2.imread(str(SET / name))
        cells = []
        for label, detector in (("Haar", haar), ("YuNet", yunet)):
            start = time.perf_counter()
            found = detector(image)
            times[label] += time.perf_counter() - start
            ok = right(found, e["faces"])
            score[label] += ok
            best = f"{iou(found[0], e['faces'][0]):.2f}" if found and e["faces"] else "-"
            cells.append(f"{len(found)}, {best} {'ok' if ok else 'WRONG'}")
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    n = len(expected)
    print(
        f"| **right** | **{score['Haar']}/{n}** ({times['Haar']:.1f} s) | **{score['YuNet']}/{n}** ({times['YuNet']:.1f} s) |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
