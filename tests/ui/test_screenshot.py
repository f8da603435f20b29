"""The README's screenshot, taken by a test: the real app window (tests/ui/window_screenshot.py: the real Session on
the bundled models, the live avatar) on an Xvfb display, grabbed after it answered a typed question.

ASSISTANT_SCREENSHOT=docs/screenshot.png writes the picture there (a relative path is from the repository root);
without it the picture goes to a temporary folder. Either way the test checks that the grab is the window: its
size, the avatar's pane showing a picture (not the empty pane's flat grey, not black), the question and the reply
in the conversation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from assistant.bench.rig import start_xvfb

pytestmark = [pytest.mark.integration, pytest.mark.ui]

REPO = Path(__file__).resolve().parents[2]
CHILD_S = 600


def _target(tmp_path: Path) -> Path:
    chosen = os.environ.get("ASSISTANT_SCREENSHOT")
    if not chosen:
        return tmp_path / "screenshot.png"
    path = Path(chosen)
    return path if path.is_absolute() else REPO / path


def test_the_window_after_a_turn_is_grabbed_on_an_x_display(tmp_path: Path) -> None:
    out, report_path = _target(tmp_path), tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    with start_xvfb(1280, 800) as x:
        env.update(x.env, QT_QPA_PLATFORM="xcb")
        child = subprocess.run(
            [sys.executable, "-m", "tests.ui.window_screenshot", str(out), str(report_path), str(tmp_path / "work")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=CHILD_S,
        )  # fmt: skip
    assert child.returncode == 0, child.stderr[-4000:]
    report = json.loads(report_path.read_text())
    assert report["platform"] == "xcb"  # drawn for an X display, not Qt's offscreen one

    image = np.asarray(Image.open(out).convert("RGB")).astype(np.float32)
    ratio = report["device_pixel_ratio"]
    assert image.shape[:2] == (round(report["window"][1] * ratio), round(report["window"][0] * ratio))
    x0, y0, w, h = (round(v * ratio) for v in report["avatar"])
    pane = image[y0 : y0 + h, x0 : x0 + w]
    assert report["avatar_page"] == 1  # the live stream's surface, not the photo shown before it starts
    # A photo of a face: light and dark and colour across the pane. The empty pane is one flat colour (std 0),
    # a black stream ~0; the astronaut measured std ~60 and a mean of ~110.
    grey = pane.mean(axis=2)
    assert grey.std() > 25 and 30 < grey.mean() < 225, (grey.std(), grey.mean())
    assert (pane.max(axis=2) - pane.min(axis=2)).mean() > 10  # colour, not grey
    assert report["question"] in report["conversation_text"]
    assert report["reply"].strip() and report["reply"].strip()[:40] in report["conversation_text"].replace("\n", " ")
