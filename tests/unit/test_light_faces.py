"""The light engine's mouth on real photos: three faces of different size, pose and lighting, one with an open
smile (teeth showing) and one with a closed smile. The faces are committed in the repository (see
scripts/contact_sheet.py for how each was made); the face box comes from the real Haar detector.

What each face must do: show the photo untouched with the mouth closed (silence), drop the chin and the lower
lip together as pieces of the photo (the lip keeps its texture), leave the nose where it is, open a mouth
whose inside has texture (not a flat fill), show lower teeth as it opens, and narrow the opening for rounded
sounds.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from assistant.talking_head.base import RenderSettings
from assistant.talking_head import light
from assistant.talking_head.light import LightTalkingHead, mouth_track

REPO = Path(__file__).resolve().parents[2]
FACES = {
    "astronaut_open_smile": REPO / "assets" / "avatars" / "astronaut.png",
    "hopper_closed_smile": REPO / "tests" / "data" / "faces" / "hopper_closed_smile.jpg",
    "astronaut_small_tilted_dim": REPO / "tests" / "data" / "faces" / "astronaut_small_tilted_dim.jpg",
}
STILL = (0.0, 0.0, 0.0)


@pytest.fixture(scope="module", params=list(FACES))
def head(request: pytest.FixtureRequest) -> LightTalkingHead:
    return LightTalkingHead(FACES[request.param], RenderSettings(1280, 720, 25.0), blinks=False, sway=False)


def _render(head: LightTalkingHead, opening: float, wide: float = 0.0) -> np.ndarray:
    """The whole frame with the head drawn at this mouth state."""
    frame = head.frame.copy()
    y1, y2, x1, x2 = head.rig.roi
    frame[y1:y2, x1:x2] = head.rig.render(opening, wide, 0.0, STILL)
    return frame


def _vertical_shift(
    before: np.ndarray, after: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]
) -> tuple[int, float]:
    """Where the patch `before[rows, cols]` went in `after`: (rows moved down, normalised correlation)."""
    patch = cv2.cvtColor(before[rows[0] : rows[1], cols[0] : cols[1]], cv2.COLOR_BGR2GRAY)
    search = cv2.cvtColor(after[rows[0] - 4 : rows[1] + 80, cols[0] : cols[1]], cv2.COLOR_BGR2GRAY)
    score = cv2.matchTemplate(search, patch, cv2.TM_CCOEFF_NORMED)[:, 0]
    best = int(np.argmax(score))
    return best - 4, float(score[best])


def _interior(head: LightTalkingHead, frame: np.ndarray, shrink: bool = True) -> np.ndarray:
    """Mask of the open mouth's inside: pixels that were not dark in the photo and are dark now, in the mouth
    area, shrunk by 2 px (`shrink`) so the anti-aliased rim is not counted."""
    rig = head.rig
    grey, photo = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32) for f in (frame, head.frame))
    mask = np.zeros(grey.shape, np.uint8)
    y1, y2 = int(rig.seam - 0.08 * rig.fh), int(rig.seam + 0.2 * rig.fh)
    x1, x2 = int(rig.cx - 1.4 * rig.mouth_hw), int(rig.cx + 1.4 * rig.mouth_hw)
    darker = (grey[y1:y2, x1:x2] < 0.55 * photo[y1:y2, x1:x2]) | (grey[y1:y2, x1:x2] < 60)
    mask[y1:y2, x1:x2] = darker & (np.abs(grey[y1:y2, x1:x2] - photo[y1:y2, x1:x2]) > 25)
    return (cv2.erode(mask, np.ones((5, 5), np.uint8)) if shrink else mask).astype(bool)


def test_a_closed_mouth_is_the_photo(head: LightTalkingHead) -> None:
    assert np.abs(_render(head, 0.0).astype(int) - head.frame).max() <= 1


def test_silence_renders_the_photo_in_every_frame(head: LightTalkingHead) -> None:
    track = mouth_track(np.zeros(16000, np.float32), 16000, 25.0)
    frames = [f.copy() for f in head.frames(track)]
    assert len(frames) == 25
    assert max(int(np.abs(f.astype(int) - head.frame).max()) for f in frames) <= 1


def test_the_chin_and_lower_lip_drop_together_and_the_nose_stays(head: LightTalkingHead) -> None:
    rig = head.rig
    shut, wide_open = _render(head, 0.0), _render(head, 1.0)
    cols = (int(rig.cx - 0.4 * rig.mouth_hw), int(rig.cx + 0.4 * rig.mouth_hw))
    lip = (int(rig.seam + 0.03 * rig.fh), int(rig.seam + 0.12 * rig.fh))  # the lower lip and below
    chin = (int(rig.seam + 0.15 * rig.fh), int(rig.seam + 0.26 * rig.fh))
    nose = (int(rig.seam - 0.36 * rig.fh), int(rig.seam - 0.22 * rig.fh))
    lip_shift, lip_match = _vertical_shift(shut, wide_open, lip, cols)
    chin_shift, chin_match = _vertical_shift(shut, wide_open, chin, cols)
    nose_shift, _ = _vertical_shift(shut, wide_open, nose, cols)
    expected = 0.12 * rig.fh  # JAW_DROP
    assert chin_shift >= 0.75 * expected, (chin_shift, expected)
    # The lower lip rides on the jaw (a little less than the chin: the jaw turns about its hinge, the lip is
    # nearer to it), and both are moved, not smeared: the photo's own lip and skin texture, matched.
    assert 0.7 * chin_shift <= lip_shift <= chin_shift + 2, (lip_shift, chin_shift)
    assert lip_match > 0.8 and chin_match > 0.9, (lip_match, chin_match)
    assert abs(nose_shift) <= 1


def test_the_opening_grows_with_the_level(head: LightTalkingHead) -> None:
    sizes = [int(_interior(head, _render(head, o), shrink=False).sum()) for o in (0.3, 0.6, 1.0)]
    assert 0 < sizes[0] < sizes[1] < sizes[2], sizes
    assert sizes[2] >= 0.6 * head.rig.mouth_hw * 0.12 * head.rig.fh  # a real hole, not a slit


def test_the_open_mouth_is_textured_not_a_flat_fill(head: LightTalkingHead) -> None:
    frame = _render(head, 1.0)
    # The core of the opening: 3 px in from its rim, so no edge between lips and mouth is counted.
    inside = _interior(head, frame, shrink=False).astype(np.uint8)
    core = cv2.erode(inside, np.ones((7, 7), np.uint8)).astype(bool)
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32)
    # Texture is what a smooth shading is not: the Laplacian of a gradient (even a curved one) is ~0. A fill
    # shaded with gradients, the engine before this test, scored 0.65-1.6 grey levels on these faces.
    laplacian = np.abs(cv2.Laplacian(cv2.GaussianBlur(grey, (0, 0), 0.7), cv2.CV_32F))
    assert core.sum() > 15
    assert float(laplacian[core].mean()) >= 1.8, float(laplacian[core].mean())
    # Depth: the inside is not one shade either (lit near the lips, dark deep inside and in the corners).
    assert np.percentile(grey[core], 90) - np.percentile(grey[core], 10) >= 10


def test_lower_teeth_show_as_the_mouth_opens(head: LightTalkingHead, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lower incisors: a band of bright pixels just above the dropped lower lip, mid-mouth, that grows as
    the jaw drops and is hidden behind the lip when the mouth is barely open. Seen against the same frame
    drawn without them."""
    rig = head.rig
    drop = 0.12 * rig.fh  # JAW_DROP at full opening

    def teeth_pixels(opening: float) -> tuple[int, int]:
        with_teeth = cv2.cvtColor(_render(head, opening), cv2.COLOR_BGR2GRAY).astype(int)
        monkeypatch.setattr(light, "LOWER_TEETH", 0.0)
        without = cv2.cvtColor(_render(head, opening), cv2.COLOR_BGR2GRAY).astype(int)
        monkeypatch.undo()
        rows, cols = np.nonzero(with_teeth - without > 30)
        seam = float(rig.seam_line.at(np.float64(rig.cx)))
        low = rows > seam + 0.5 * opening * drop  # in the opening's lower half
        return int(len(rows)), int(low.sum())

    barely, (wide_open, wide_open_low) = teeth_pixels(0.15)[0], teeth_pixels(1.0)
    assert barely == 0
    assert wide_open >= 0.5 * rig.mouth_hw * 0.01 * rig.fh, wide_open  # at least a tooth row's sliver
    assert wide_open_low == wide_open  # all of them above the lower lip, none hanging from the upper
    assert teeth_pixels(0.5)[0] < wide_open


def test_rounded_sounds_narrow_the_mouth_and_spread_ones_widen_it(head: LightTalkingHead) -> None:
    def width(wide: float) -> int:
        cols = np.flatnonzero(_interior(head, _render(head, 0.7, wide), shrink=False).any(0))
        return int(cols[-1] - cols[0]) if len(cols) else 0

    rounded, neutral, spread = width(-1.0), width(0.0), width(1.0)
    assert rounded < neutral < spread, (rounded, neutral, spread)
    assert spread - rounded >= 0.2 * head.rig.mouth_hw
