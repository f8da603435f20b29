"""The light engine's face: landmarks found in the photo and the warp that animates it (`FaceRig`).

The jaw, the lower lip and the chin drop together along the head's own down axis (a smooth displacement field
that fades out over the cheeks and the neck, with the cheek skin stretching past the mouth corners), the upper
lip lifts a little, the corners move in or out and the opening narrows or widens with the mouth's shape. The
photo is warped, never painted over; only the gap that opens between the lips is drawn: a mouth interior whose
colour and light are the photo's own (the lips' colour along the mouth, above and below the parting line,
deepened and darkened with depth: lit just inside the lips, dark at the back and in the corners), a tongue
that catches light low in the mouth, upper teeth unless the photo shows its own, lower teeth as the jaw drops.
Smooth shading, no generated texture: the same mouth state always draws the same pixels.

A tilted head (the face box's landmarks give its roll) is handled in the head's own frame: the landmarks are
found on an upright copy of the photo turned about the mouth, and every field is evaluated at each pixel's
head coordinates, so the jaw drops and the lips part along the head's axis. A box without landmarks (a test's,
an old cache entry's) is taken as upright: today's geometry, unchanged.

The landmarks come from the photo itself, no model: the face box (`assistant.talking_head.face`), the lips'
parting line (the darkest line, or the bottom edge of the teeth in a smile) fitted with a parabola, the mouth's
width along that line and OpenCV's bundled eye cascade. Everything that depends only on the avatar is computed
once in the constructor; a frame costs a few small array operations and two `cv2.remap` of the head region.

Needs numpy and OpenCV.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from assistant.talking_head.face import FaceBox, FaceLandmarks

log = logging.getLogger(__name__)

# The face warp, in fractions of the face box (fh: its height, hw: half the mouth's width).
JAW_DROP = 0.12  # the chin and lower lip drop this much of fh at full opening (~15 mm on an adult face)
LIP_LIFT = 0.02  # the upper lip rises this much of fh at full opening
SPREAD = 0.16  # lip corners move in ("oo") or out ("ee") by this much of hw at full shape and opening
ROUND_WIDTH = 0.15  # the opening's width shrinks ("oo") or grows ("ee") by this fraction of hw
# The mouth interior, from the photo's lip colour (BGR) next to the opening. Light inside a mouth has bounced off
# the same tissue several times, so its colour is the lips' reflectance raised to a power (a deeper red for red
# lips, bluer for bluish ones), at this fraction of the lips' brightest channel where it is best lit.
CAVITY_OF_LIP, CAVITY_BOUNCES = 0.60, 3.0  # a lip of (150, 150, 200) gives a cavity of (51, 51, 120)
TONGUE_OF_LIP, TONGUE_BOUNCES = 0.85, 2.0  # and a tongue of (96, 96, 170)
TEETH_TINT_BGR = (0.86, 0.96, 1.04)  # teeth: the face's own light, a little warmer than neutral grey
UPPER_TEETH = 0.032  # height of the upper teeth showing, of fh (~7 mm of incisor seen below the lip)
LOWER_TEETH = 0.022  # lower incisors' visible edge at full opening, of fh


def _smoothstep(a: float, b: float, v: np.ndarray) -> np.ndarray:
    t = np.clip((v - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


@dataclass(frozen=True)
class Eye:
    x: float  # centre, frame px
    y: float
    half_width: float
    half_height: float  # of the open eye's aperture


@dataclass(frozen=True)
class Seam:
    """The line where the lips part, as a parabola in frame px: y = y0 + slope * dx + curve * dx**2, dx = x - x0."""

    x0: float
    y0: float
    slope: float = 0.0
    curve: float = 0.0
    photo_teeth: bool = False  # the photo already shows the upper teeth above the seam

    def at(self, x: np.ndarray) -> np.ndarray:
        dx = x - self.x0
        return self.y0 + self.slope * dx + self.curve * dx * dx


def find_mouth_seam(frame: np.ndarray, box: FaceBox) -> Seam:
    """Where the lips part. Closed mouth: the darkest line between the lips. Smile with teeth: the bottom edge of
    the bright, unsaturated teeth, so the upper teeth stay with the skull and only the lower lip drops. Found at
    the centre, then followed across the mouth column by column and fitted with a parabola (smiles curve up).
    """
    fw, fh = box.width, box.height
    cx = (box.x1 + box.x2) / 2
    r1, r2 = int(box.y1 + 0.70 * fh), int(box.y1 + 0.92 * fh)
    c1, c2 = int(cx - 0.13 * fw), int(cx + 0.13 * fw)
    patch = frame[r1:r2, c1:c2]
    if patch.size == 0:
        return Seam(cx, box.y1 + 0.80 * fh)
    hsv = cv2.cvtColor(frame[r1:r2], cv2.COLOR_BGR2HSV).astype(np.float32)  # (rows, all columns, 3)
    face = cv2.cvtColor(frame[box.y1 : box.y2, box.x1 : box.x2], cv2.COLOR_BGR2HSV).reshape(-1, 3)
    face_s, face_v = np.median(face[:, 1]), np.median(face[:, 2])
    # Teeth: clearly brighter and far less saturated than the face's typical skin.
    teeth = (hsv[..., 1] < 0.6 * face_s) & (hsv[..., 2] > 1.1 * face_v)
    teeth_rows = np.flatnonzero(teeth[:, c1:c2].mean(1) > 0.4)
    photo_teeth = False
    if len(teeth_rows) >= max(2, int(0.02 * fh)):
        runs = np.split(teeth_rows, np.flatnonzero(np.diff(teeth_rows) > 1) + 1)
        photo_teeth = len(max(runs, key=len)) >= 2
    # Per column: a score whose largest drop (teeth) or minimum (closed lips) marks the seam.
    score = hsv[..., 2] - hsv[..., 1] if photo_teeth else cv2.cvtColor(frame[r1:r2], cv2.COLOR_BGR2GRAY)
    score = cv2.GaussianBlur(np.asarray(score, np.float32), (3, 3), 0)
    if photo_teeth:
        bottom = max(runs, key=len)[-1] + 1
        center = float(bottom)
    else:
        center = float(np.argmin(score[1:-1, c1:c2].mean(1)) + 1)
    xs, rows = [], []
    span = int(0.05 * fh) + 1
    for dx in np.linspace(-0.16 * fw, 0.16 * fw, 11):
        col = int(cx + dx)
        lo, hi = max(1, int(center) - span), min(score.shape[0] - 2, int(center) + span)
        profile = score[lo:hi, col - 1 : col + 2].mean(1)
        if len(profile) < 3:
            continue
        row = np.argmax(profile[:-2] - profile[2:]) + 1 if photo_teeth else np.argmin(profile)
        xs.append(dx)
        rows.append(lo + row)
    y0, slope, curve = float(center), 0.0, 0.0
    if len(xs) >= 5:
        curve, slope, y0 = np.polyfit(np.array(xs), np.array(rows, np.float64), 2)
        limit = 0.08 * fh / (0.16 * fw) ** 2  # at most 8 % of the face higher at the corners than the middle
        curve, slope = float(np.clip(curve, -limit / 4, limit)), float(np.clip(slope, -0.15, 0.15))
        y0 = float(np.clip(y0, center - span, center + span))
    return Seam(cx, r1 + y0, slope, curve, photo_teeth)


def find_mouth_half_width(frame: np.ndarray, box: FaceBox, seam: Seam) -> float:
    """Half the width of the lips' parting line, px: where, going out from the middle along the seam, the line
    stops being darker than the lips around it (closed lips), or the row of teeth ends (a smile with teeth).
    Falls back to a third of the face box when the cue is too weak to follow; clipped to plausible sizes."""
    fw, fh = float(box.width), float(box.height)
    default, lo, hi = 0.17 * fw, 0.12 * fw, 0.24 * fw
    grey = cv2.GaussianBlur(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (3, 3), 0).astype(np.float32)
    H, W = grey.shape
    offsets = np.arange(-int(0.32 * fw), int(0.32 * fw) + 1)
    cols = np.clip((seam.x0 + offsets).astype(int), 0, W - 1)
    rows = seam.at(cols.astype(np.float64))
    line, near, far = max(1, int(0.015 * fh)), int(0.035 * fh), max(int(0.035 * fh) + 2, int(0.06 * fh))

    def band(a: int, b: int) -> np.ndarray:  # (len(cols), b - a) grey values at those row offsets
        r = np.clip((rows[:, None] + np.arange(a, b)[None, :]).astype(int), 0, H - 1)
        return grey[r, cols[:, None]]

    if seam.photo_teeth:
        hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV).astype(np.float32)
        r = np.clip((rows[:, None] + np.arange(-2 * near, line + 1)[None, :]).astype(int), 0, H - 1)
        face = hsv[box.y1 : box.y2, box.x1 : box.x2].reshape(-1, 3)
        sat, val = hsv[r, cols[:, None], 1], hsv[r, cols[:, None], 2]
        cue = ((sat < 0.75 * np.median(face[:, 1])) & (val > 0.85 * np.median(face[:, 2]))).mean(1)
        # Teeth in shadow or yellowed drop out of the cue for a stretch: bridge gaps of up to an eighth of the
        # face. The lips reach a little past the last tooth.
        keep, scale, gap = cue > 0.15, 1.1, max(3, int(0.12 * fw))
    else:
        dark = band(-line, line + 1).min(1)
        around = np.concatenate([band(-far, -near), band(near, far)], 1).mean(1)
        cue = around - dark
        centre = float(np.median(cue[np.abs(offsets) < 0.05 * fw]))
        if centre < 6.0:  # no visible lip line to follow
            return default
        keep, scale, gap = cue > 0.35 * centre, 1.0, max(3, int(0.03 * fw))
    mid = len(offsets) // 2
    if not keep[mid]:
        return default

    def reach(step: int) -> int:  # columns from the middle until the cue is lost for `gap` in a row
        miss, k, last = 0, mid, mid
        while 0 <= k + step < len(offsets) and miss < gap:
            k += step
            if keep[k]:
                miss, last = 0, k
            else:
                miss += 1
        return abs(last - mid)

    left, right = reach(-1), reach(1)
    log.debug("mouth half width: %d px left, %d px right of the middle", left, right)
    return float(np.clip(scale * (left + right) / 2, lo, hi))


def find_eyes(frame: np.ndarray, box: FaceBox) -> tuple[Eye, Eye]:
    """Both eyes from face proportions, moved onto OpenCV's eye detections when it finds them."""
    fw, fh = box.width, box.height
    guess = [Eye(box.x1 + fx * fw, box.y1 + 0.37 * fh, 0.085 * fw, 0.032 * fh) for fx in (0.29, 0.71)]
    cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_eye.xml"))
    if cascade.empty():
        return guess[0], guess[1]
    top = frame[box.y1 : box.y1 + int(0.6 * fh), box.x1 : box.x2]
    grey = cv2.equalizeHist(cv2.cvtColor(top, cv2.COLOR_BGR2GRAY))
    found = cascade.detectMultiScale(grey, 1.1, 4, minSize=(max(8, fw // 10),) * 2, maxSize=(fw // 3,) * 2)
    eyes = list(guess)
    for side, g in enumerate(guess):
        best = None
        for x, y, w, h in np.asarray(found).reshape(-1, 4):
            ex, ey = box.x1 + x + w / 2, box.y1 + y + h * 0.55  # the pupil sits a little below the box centre
            near = abs(ex - g.x) < 0.12 * fw and abs(ey - g.y) < 0.12 * fh
            if near and (
                best is None or abs(ex - g.x) + abs(ey - g.y) < abs(best.x - g.x) + abs(best.y - g.y)
            ):
                best = Eye(ex, ey, 0.30 * w, 0.11 * h)
        eyes[side] = best or g
    return eyes[0], eyes[1]


# A head rolled less than this is drawn upright: the jaw's axis is off by under 0.4 px over a 20 px drop.
MIN_ROLL_DEG = 1.0


@dataclass(frozen=True)
class HeadFrame:
    """The head's own axes in the picture: turned by the face's roll about the mouth's centre.

    Head coordinates are the pixels of an upright copy of the picture turned about that centre: x runs along the
    eye line, y down the face. Unrolled (the default, and any box without landmarks) they are the picture's own.
    """

    roll_deg: float = 0.0  # positive: clockwise on screen (FaceLandmarks.roll_deg)
    centre_x: float = 0.0  # the pivot, picture px
    centre_y: float = 0.0

    @classmethod
    def of(cls, box: FaceBox) -> HeadFrame:
        if box.landmarks is None or abs(box.roll_deg) < MIN_ROLL_DEG:
            return cls()
        return cls(box.roll_deg, *box.mouth_xy)

    @property
    def tilted(self) -> bool:
        return self.roll_deg != 0.0

    @property
    def across(self) -> tuple[float, float]:
        """The head's x axis (left to right eye) as a picture direction."""
        a = math.radians(self.roll_deg)
        return math.cos(a), math.sin(a)

    @property
    def down(self) -> tuple[float, float]:
        """The head's down axis (brows to chin) as a picture direction: (-sin, cos) of the roll."""
        c, s = self.across
        return -s, c

    def to_head(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Picture px -> head px (returned as given when the head is upright)."""
        if not self.tilted:
            return x, y
        (c, s), dx, dy = self.across, x - self.centre_x, y - self.centre_y
        return self.centre_x + c * dx + s * dy, self.centre_y - s * dx + c * dy

    def to_picture(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Head px -> picture px."""
        if not self.tilted:
            return x, y
        (c, s), dx, dy = self.across, x - self.centre_x, y - self.centre_y
        return self.centre_x + c * dx - s * dy, self.centre_y + s * dx + c * dy

    def upright(self, frame: np.ndarray, box: FaceBox) -> tuple[np.ndarray, FaceBox]:
        """The picture turned so the head is upright (head coordinates), and the face box in it: the same size,
        placed by the turned landmarks the way the detector places it (the mouth 80 % of the way down, centred
        between the eyes' midpoint and the mouth)."""
        if not self.tilted or box.landmarks is None:
            return frame, box
        (c, s), cx, cy = self.across, self.centre_x, self.centre_y
        to_head = np.array([[c, s, cx - c * cx - s * cy], [-s, c, cy + s * cx - c * cy]])  # (2, 3)
        h, w = frame.shape[:2]
        turned = cv2.warpAffine(frame, to_head, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        marks = box.landmarks
        eyes_x = float(np.mean([self.to_head(*p)[0] for p in (marks.eye_left, marks.eye_right)]))
        mouth_x, mouth_y = self.to_head(*marks.mouth_xy)
        x1, y1 = round((eyes_x + mouth_x) / 2 - box.width / 2), round(mouth_y - 0.80 * box.height)
        return turned, replace(box, x1=x1, y1=y1, x2=x1 + box.width, y2=y1 + box.height, landmarks=None)


def lip_colours(
    photo: np.ndarray, seam: Seam, cx: float, mouth_hw: float, fh: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The photo's own colour along the mouth, just above and just below the lips' parting line (upright photo).

    Returns (n,) columns and two (n, 3) float32 BGR profiles, the upper lip's and the lower lip's, out to the
    cheeks a little past the corners, smoothed along the mouth so that only colour and light remain (not the
    lips' texture). Teeth and highlights (much brighter than the lips) and the dark line between the lips are
    left out; a column with nothing left takes the other lip's colour, or the mouth's median.
    """
    H, W = photo.shape[:2]
    cols = np.arange(int(cx - 1.4 * mouth_hw), int(cx + 1.4 * mouth_hw) + 2)
    line = seam.at(cols.astype(np.float64))  # (n,) the parting line's row at each column

    # (rows, n, 3) float32: the rows from a to b (fractions of fh) off the line, at every column.
    def band(a: float, b: float) -> np.ndarray:
        first = round(a * fh)
        offsets = np.arange(first, max(round(b * fh), first + 2))
        rows = np.clip(np.round(line[None, :] + offsets[:, None]).astype(int), 0, H - 1)
        return photo[rows, np.clip(cols, 0, W - 1)[None, :]].astype(np.float32)

    up, low = band(-0.065, -0.012), band(0.012, 0.065)
    grey_up, grey_low = up.mean(2), low.mean(2)
    # The lips' level at each column, from the lower lip (never teeth: the seam is below them): a face lit
    # from one side keeps its shadow side, only outliers within a column go.
    ref = np.median(grey_low, 0)  # (n,)
    masked = []
    for px, grey in ((up, grey_up), (low, grey_low)):
        px = px.copy()
        px[(grey > 1.3 * ref) | (grey < 0.5 * ref)] = np.nan
        masked.append(px)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column that kept nothing: NaN, handled below
        up_c, low_c = (np.nanmedian(px, 0) for px in masked)  # (n, 3) each
        up_c, low_c = np.where(np.isnan(up_c), low_c, up_c), np.where(np.isnan(low_c), up_c, low_c)
        both = np.concatenate([up_c, low_c])
        fallback = np.full(3, np.median(ref)) if np.isnan(both).all() else np.nanmedian(both, 0)
    out = []
    # Over a quarter of the mouth: the light across it stays, the lips' fine texture goes.
    sigma = max(1.0, 0.25 * mouth_hw)
    for p in (up_c, low_c):
        p = np.where(np.isnan(p), fallback, p).astype(np.float32)
        out.append(cv2.GaussianBlur(p[None], (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)[0])
    return cols.astype(np.float32), out[0], out[1]


def _deepen(bgr: np.ndarray, gain: float, bounces: float) -> np.ndarray:
    """The colour of the same tissue deeper in the mouth: (..., 3) BGR, each channel's share of the brightest one
    raised to `bounces`, at `gain` of the brightest channel."""
    peak = np.maximum(bgr.max(-1, keepdims=True), 1.0)
    return (gain * peak * (bgr / peak) ** bounces).astype(np.float32)


class FaceRig:
    """One avatar frame's landmarks and precomputed warp profiles; `render` draws the head region of a frame.

    `roi`, the bounding boxes and every map are in picture pixels; the landmarks (`cx`, `seam`, `seam_line`,
    `chin`, `mouth_hw`) are in head coordinates (`head`; the picture's own for an upright head)."""

    def __init__(self, frame: np.ndarray, box: FaceBox) -> None:
        self.frame = frame
        self.head = head = HeadFrame.of(box)
        marks = box.landmarks
        photo, box = head.upright(frame, box)  # the landmarks are looked for on an upright head
        self._find_landmarks(photo, box)
        if marks is not None:
            self._fit_mouth_corners(marks)
        self.teeth_bgr = self._teeth_colour(photo, box)
        self._head_region(frame, box)
        # Every field below is a function of the head coordinates of each pixel: (1, w) and (h, 1) for an
        # upright head, (h, w) for a rolled one.
        hx, hy = head.to_head(self.xs, self.ys)
        jaw_g, jaw_s, s_fall = self._jaw(hx, hy)
        self._mouth_boxes(hx, hy, jaw_g, jaw_s, s_fall)
        self._interior(photo)
        self._gaze: list[tuple[int, int, int, int, np.ndarray, float, float]] | None = None

    def _find_landmarks(self, photo: np.ndarray, box: FaceBox) -> None:
        """The lips' parting line, the mouth's half width, the chin and the eyes (upright photo and box)."""
        fw, fh = float(box.width), float(box.height)
        self.fw, self.fh = fw, fh
        self.cx = (box.x1 + box.x2) / 2
        self.seam_line = find_mouth_seam(photo, box)
        self.seam, self.photo_teeth = self.seam_line.y0, self.seam_line.photo_teeth
        self.mouth_hw = find_mouth_half_width(photo, box, self.seam_line)  # about a third of the box
        self.chin = max(box.y1 + 1.15 * fh, self.seam + 0.27 * fh)  # the chin's tip: the box ends above it
        self.eyes = tuple(
            replace(e, **dict(zip(("x", "y"), map(float, self.head.to_picture(e.x, e.y)))))
            for e in find_eyes(photo, box)
        )

    def _fit_mouth_corners(self, marks: FaceLandmarks) -> None:
        """Put the mouth's corners where the detector's landmarks say: the parting line found in the photo keeps
        its depth mid-mouth and is bent through the two corners, and the mouth is as wide as they are apart (the
        photo alone took a smile's cheek folds for lip and drew the opening past the corners, and a line through
        the teeth's edge could tilt the wrong way). Corners that make no sense for this box are ignored."""
        (lx, ly), (rx, ry) = (self.head.to_head(*p) for p in (marks.mouth_left, marks.mouth_right))
        half = (rx - lx) / 2
        if not 0.12 * self.fw <= half <= 0.45 * self.fw:
            return
        mid = (lx + rx) / 2
        y_mid = float(self.seam_line.at(np.float64(mid)))
        if not ly - 0.05 * self.fh <= y_mid <= ly + 0.12 * self.fh:  # the line mid-mouth is not near the corners
            return
        dl, dr = lx - mid, rx - mid
        slope, curve = np.linalg.solve([[dl, dl * dl], [dr, dr * dr]], [ly - y_mid, ry - y_mid])
        self.seam_line = replace(self.seam_line, x0=mid, y0=y_mid, slope=float(slope), curve=float(curve))
        self.seam, self.cx, self.mouth_hw = y_mid, mid, half
        self.chin = max(self.chin, y_mid + 0.27 * self.fh)

    def _teeth_colour(self, photo: np.ndarray, box: FaceBox) -> np.ndarray:
        """The photo's light: teeth follow the skin's brightness (a dim photo gets dim teeth, not white ones). A
        photo that shows its teeth lends their colour to the lower row."""
        fw, fh = self.fw, self.fh
        skin = photo[
            int(box.y1 + 0.50 * fh) : int(box.y1 + 0.62 * fh),
            int(self.cx - 0.25 * fw) : int(self.cx + 0.25 * fw),
        ].reshape(-1, 3)
        skin_l = float(np.median(skin.mean(1))) if skin.size else 160.0
        # A quarter of the skin's hue: teeth reflect the same warm light the face is lit by.
        hue = np.median(skin, 0).astype(np.float32) / max(skin_l, 1.0) if skin.size else np.ones(3)
        tint = 0.75 * np.array(TEETH_TINT_BGR, np.float32) + 0.25 * hue
        teeth = tint * min(235.0, 1.1 * skin_l + 25.0)
        if self.photo_teeth:
            rows = slice(int(self.seam - 0.025 * fh), int(self.seam))
            cols = slice(int(self.cx - 0.06 * fw), int(self.cx + 0.06 * fw))
            t = photo[rows, cols]
            if t.size:
                teeth = np.median(t.reshape(-1, 3), 0).astype(np.float32) * 0.95
        return teeth

    def _head_region(self, frame: np.ndarray, box: FaceBox) -> None:
        """The head region (everything the warp may move: hair to upper neck, clipped to the frame), its pixel
        grids, the per-frame maps and the sway's weights."""
        fw, fh = self.fw, self.fh
        H, W = frame.shape[:2]
        y1, y2, x1, x2 = self._bounds(
            (self.cx - 0.9 * fw, self.cx + 0.9 * fw), (box.y1 - 0.6 * fh, self.chin + 0.4 * fh), (0, H, 0, W)
        )
        self.roi = (y1, y2, x1, x2)
        ys = np.arange(y1, y2, dtype=np.float32)[:, None]  # (h, 1) frame rows
        xs = np.arange(x1, x2, dtype=np.float32)[None, :]  # (1, w) frame columns
        self.ys, self.xs = ys, xs
        shape = (y2 - y1, x2 - x1)
        self.grid_x, self.grid_y = np.broadcast_to(xs, shape).copy(), np.broadcast_to(ys, shape).copy()
        self.map_x, self.map_y = np.empty(shape, np.float32), np.empty(shape, np.float32)  # reused per frame
        # Head sway fades to nothing at the region's edges, so the background never tears.
        wy = _smoothstep(y1, y1 + 0.25 * (y2 - y1), ys) * _smoothstep(y2, y2 - 0.35 * (y2 - y1), ys)
        wx = _smoothstep(x1, x1 + 0.3 * (x2 - x1), xs) * _smoothstep(x2, x2 - 0.3 * (x2 - x1), xs)
        win = (wy * wx).astype(np.float32)
        pivot_x, pivot_y = self.head.to_picture(self.cx, self.chin)  # the head rolls about the neck
        self.win = win
        self.win_dx, self.win_dy = (
            (win * (xs - pivot_x)).astype(np.float32),
            (win * (ys - pivot_y)).astype(np.float32),
        )

    def _full(self, a: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
        """A field over a box of the head region, as its own float32 array."""
        return np.ascontiguousarray(np.broadcast_to(a, self.grid_x.shape)[rows, cols], np.float32)

    def _jaw(self, hx: np.ndarray, hy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The jaw's displacement field (kept cropped to where it is not zero) and its parts: the drop across the
        chin, fading over the cheeks (g), and from above the lips to the neck (s: its rise and fall)."""
        fw, fh = self.fw, self.fh
        dx = hx - self.cx
        jaw_g = np.where(np.abs(dx) < 0.55 * fw, np.cos(np.pi / 2 * dx / (0.55 * fw)) ** 2, 0)
        jaw_g = jaw_g.astype(np.float32)
        # Where the drop begins, per column: between the lips right at the seam (the lips part there, the
        # skull above holds still); past the corners the cheek skin stretches instead, from above the seam's
        # level to below the lower lip, a span long enough that the skin never folds. The seam follows the
        # photo's lip line (a smile's corners sit higher), clipped so the parabola cannot run off.
        m = self.mouth_hw
        rest = np.clip(1 - (dx / m) ** 2, 0, 1) ** 0.9  # 1 mid-mouth, 0 at and past the corners
        seam_x = np.clip(self.seam_line.at(hx), self.seam - 0.06 * fh, self.seam + 0.06 * fh)
        s_rise = _smoothstep(seam_x - 0.15 * fh * (1 - rest), seam_x + (0.10 + 0.08 * (1 - rest)) * fh, hy)
        s_fall = 1.0 - _smoothstep(self.chin, self.chin + 0.35 * fh, hy)
        jaw_s = (s_rise * s_fall).astype(np.float32)  # (h, w)
        field = jaw_s * jaw_g
        jr, jc = np.flatnonzero(field.max(1) > 0), np.flatnonzero(field.max(0) > 0)
        self.jbox = (jr[0], jr[-1] + 1, jc[0], jc[-1] + 1) if len(jr) and len(jc) else (0, 0, 0, 0)
        self.jaw_field = field[self.jbox[0] : self.jbox[1], self.jbox[2] : self.jbox[3]].copy()
        return jaw_g, jaw_s, s_fall

    def _mouth_boxes(
        self, hx: np.ndarray, hy: np.ndarray, jaw_g: np.ndarray, jaw_s: np.ndarray, s_fall: np.ndarray
    ) -> None:
        """The mouth box (where the lip corners move in or out) and inside it the gap box (where the lips part),
        with the fields the lips and the teeth are drawn from there."""
        fh, m = self.fh, self.mouth_hw
        y1, _, x1, _ = self.roi
        rows_h = (self.seam - 0.24 * fh, self.seam + 0.16 * fh)
        my1, my2, mx1, mx2 = self._bounds((self.cx - 2.2 * m, self.cx + 2.2 * m), rows_h, self.roi)
        self.mbox = (my1 - y1, my2 - y1, mx1 - x1, mx2 - x1)  # in region coordinates
        mbox = (slice(my1 - y1, my2 - y1), slice(mx1 - x1, mx2 - x1))
        dxm = self._full(hx - self.cx, *mbox)
        vy = np.exp(-0.5 * ((self._full(hy, *mbox) - self.seam) / (0.05 * fh)) ** 2)
        self.spread = (dxm / m * np.exp(-((dxm / (1.2 * m)) ** 2)) * vy).astype(np.float32)  # corners in/out
        gy1, gy2, gx1, gx2 = self._bounds(
            (self.cx - 1.2 * m, self.cx + 1.2 * m + 1), rows_h, (my1, my2, mx1, mx2)
        )
        self.gbox = (gy1 - y1, gy2 - y1, gx1 - x1, gx2 - x1)  # in region coordinates
        gbox = (slice(gy1 - y1, gy2 - y1), slice(gx1 - x1, gx2 - x1))
        ghx, ghy = self._full(hx, *gbox), self._full(hy, *gbox)
        self._ghx = ghx
        # The lower lip drops by the full jaw wherever the lips part. A drop the same for every row (not a
        # step at the seam) keeps the lower map monotonic, so the opening tapers smoothly into the corners.
        self.jaw_full = self._full(s_fall, *gbox)
        seam_g = self.seam_line.at(ghx)
        self.lip_u = _smoothstep(seam_g - 0.10 * fh, seam_g, ghy).astype(np.float32)  # the upper lip's lift
        self.gap_g, self.gap_s = self._full(jaw_g, *gbox), self._full(jaw_s, *gbox)
        u = (ghx - self.cx) / m  # -1 .. 1 across the mouth
        self.gap_u = u
        line = max(0.04, 1.2 / m)  # a gap line about 1.2 px wide whatever the face size
        # Incisors are wide, the teeth towards the corners are seen edge on (narrower): gaps at these |u|.
        upper_gaps, lower_gaps = (0.0, 0.30, 0.56, 0.78), (0.0, 0.19, 0.37, 0.54)
        self.upper_gaps = np.max([np.exp(-(((np.abs(u) - g) / line) ** 2)) for g in upper_gaps], 0)
        self.lower_gaps = np.max([np.exp(-(((np.abs(u) - g) / line) ** 2)) for g in lower_gaps], 0)

    def _interior(self, photo: np.ndarray) -> None:
        """The interior's colour: the photo's lips at each column, above (the palate side) and below (the tongue
        side) the parting line, deepened into the shadow of the mouth."""
        lip_x, lip_up, lip_low = lip_colours(photo, self.seam_line, self.cx, self.mouth_hw, self.fh)
        ghx = self._ghx

        def along(profile: np.ndarray) -> np.ndarray:  # (gh, gw, 3): the profile at each gap pixel's column
            return np.stack([np.interp(ghx, lip_x, profile[:, k]) for k in range(3)], -1).astype(np.float32)

        up_px, low_px = along(lip_up), along(lip_low)
        self.cavity_up = _deepen(up_px, CAVITY_OF_LIP, CAVITY_BOUNCES)
        self.cavity_low = _deepen(low_px, CAVITY_OF_LIP, CAVITY_BOUNCES)
        self.tongue_bgr = _deepen(low_px, TONGUE_OF_LIP, TONGUE_BOUNCES)

    def _bounds(
        self, cols: tuple[float, float], rows: tuple[float, float], inside: tuple[int, int, int, int]
    ) -> tuple[int, int, int, int]:
        """Picture (y1, y2, x1, x2) that cover a rectangle of head coordinates, clipped to `inside`."""
        xs, ys = self.head.to_picture(
            np.array([cols[0], cols[1], cols[0], cols[1]]), np.array([rows[0], rows[0], rows[1], rows[1]])
        )
        y1, y2, x1, x2 = inside
        return max(y1, int(ys.min())), min(y2, int(ys.max())), max(x1, int(xs.min())), min(x2, int(xs.max()))

    def _eye_box(self, eye: Eye, across: float, above: float, below: float) -> tuple[int, int, int, int] | None:
        """Region (r1, r2, c1, c2) covering `across` half widths either side of an eye and `above`/`below` half
        heights over and under it, along the head's axes; None when that runs off the head region."""
        ex, ey = self.head.to_head(eye.x, eye.y)
        ew, eh = eye.half_width, eye.half_height
        y1, y2, x1, x2 = self._bounds((ex - across * ew, ex + across * ew + 1), (ey - above * eh, ey + below * eh + 1),
                                      (-(10**9), 10**9, -(10**9), 10**9))  # fmt: skip
        y0, y_end, x0, x_end = self.roi
        if y1 < y0 or x1 < x0 or y2 > y_end or x2 > x_end:
            return None
        return y1 - y0, y2 - y0, x1 - x0, x2 - x0

    def _eye_coords(self, eye: Eye, r1: int, r2: int, c1: int, c2: int) -> tuple[np.ndarray, np.ndarray]:
        """Head coordinates of a region's pixels relative to the eye's centre: (along the eye line, down)."""
        hx, hy = self.head.to_head(self.xs[:, c1:c2], self.ys[r1:r2])
        ex, ey = self.head.to_head(eye.x, eye.y)
        return hx - ex, hy - ey

    def _blink(
        self, map_x: np.ndarray, map_y: np.ndarray, closure: float
    ) -> list[tuple[int, int, int, int, np.ndarray]]:
        """Slide each upper lid down over its eye along the head's own down axis (in place on the maps); returns
        where to darken the lash line."""
        dn_x, dn_y = self.head.down
        lashes = []
        for eye in self.eyes:
            ew, eh = eye.half_width, eye.half_height
            where = self._eye_box(eye, 1.4, 3.0, 1.5)
            if where is None:
                continue
            r1, r2, c1, c2 = where
            u, v = self._eye_coords(eye, r1, r2, c1, c2)
            top, rest = -3.0 * eh, -eh  # lid skin runs from under the brow to the open lid's edge
            reach = np.clip(1 - (u / (1.3 * ew)) ** 2, 0, 1) ** 0.5  # full mid-eye, none at the corners
            edge = rest + closure * reach * 2.0 * eh  # where the lid's edge is now
            stretch = (rest - top) / np.maximum(edge - top, 1e-3)
            src = np.where((v >= top) & (v < edge), top + (v - top) * stretch, v)
            pull = (v - src).astype(np.float32)  # px the picture moves down the head here
            map_y[r1:r2, c1:c2] -= dn_y * pull
            if dn_x:
                map_x[r1:r2, c1:c2] -= dn_x * pull
            lashes.append((r1, r2, c1, c2, (closure * reach * np.exp(-(((v - edge) / 1.2) ** 2))).astype(np.float32)))
        return lashes

    def _gaze_masks(self) -> list[tuple[int, int, int, int, np.ndarray, float, float]]:
        """Per eye: its box in region coordinates and a soft elliptical mask (1 at the iris, 0 at the lids), the
        ellipse along the head's axes."""
        if self._gaze is None:
            masks = []
            for eye in self.eyes:
                ew, eh = eye.half_width, eye.half_height
                where = self._eye_box(eye, 1.2, 1.6, 1.6)
                if where is None:
                    continue
                u, v = self._eye_coords(eye, *where)
                m = np.clip(1 - (u / (1.1 * ew)) ** 2 - (v / (1.5 * eh)) ** 2, 0, 1)
                masks.append((*where, (m * m * (3 - 2 * m)).astype(np.float32), ew, eh))
            self._gaze = masks
        return self._gaze

    def render(
        self,
        opening: float,
        wide: float,
        blink: float,
        sway: tuple[float, float, float],
        gaze: tuple[float, float] = (0.0, 0.0),
        source: np.ndarray | None = None,
    ) -> np.ndarray:
        """The head region for one frame: (h, w, 3) uint8. `gaze` moves the irises by fractions of an eye's
        half width (x) and half height (y): small glances, the way a face at rest looks around. `source`: a full
        frame to warp instead of the photo, same framing (the photo with Wav2Lip's mouth pasted in)."""
        fw, fh = self.fw, self.fh
        opening, wide = float(opening), float(wide)  # a numpy float64 would turn the float32 maps float64
        tx, ty, roll = sway[0] * fw, sway[1] * fh, sway[2]
        map_x, map_y = self.map_x, self.map_y
        if tx or ty or roll:  # backward map: each output pixel samples the photo where the sway came from
            cv2.scaleAdd(self.win, -tx, self.grid_x, dst=map_x)
            cv2.scaleAdd(self.win_dy, roll, map_x, dst=map_x)
            cv2.scaleAdd(self.win, -ty, self.grid_y, dst=map_y)
            cv2.scaleAdd(self.win_dx, -roll, map_y, dst=map_y)
        else:
            np.copyto(map_x, self.grid_x)
            np.copyto(map_y, self.grid_y)
        # Displacements run along the head's axes; a backward map moves the picture by subtracting them.
        (ax, ay), (dn_x, dn_y) = self.head.across, self.head.down
        if gaze[0] or gaze[1]:  # the irises move along the eye line and up/down the face
            for r1, r2, c1, c2, mask, ew, eh in self._gaze_masks():
                gu, gv = 0.30 * ew * gaze[0], 0.25 * eh * gaze[1]
                map_x[r1:r2, c1:c2] -= (gu * ax + gv * dn_x) * mask
                map_y[r1:r2, c1:c2] -= (gu * ay + gv * dn_y) * mask
        jaw = opening * JAW_DROP * fh  # px the chin drops
        lift = opening * LIP_LIFT * fh  # px the upper lip rises
        if jaw > 0.05:
            j1, j2, k1, k2 = self.jbox
            map_y[j1:j2, k1:k2] -= (jaw * dn_y) * self.jaw_field
            if dn_x:
                map_x[j1:j2, k1:k2] -= (jaw * dn_x) * self.jaw_field
        lashes = self._blink(map_x, map_y, blink) if blink > 0.01 else []
        r1, r2, c1, c2 = self.mbox
        corners = SPREAD * self.mouth_hw * wide * (0.5 + 0.5 * opening)
        map_x[r1:r2, c1:c2] -= (corners * ax) * self.spread
        if ay:
            map_y[r1:r2, c1:c2] -= (corners * ay) * self.spread
        g1, g2, h1, h2 = self.gbox
        gx, gy = map_x[g1:g2, h1:h2], map_y[g1:g2, h1:h2]
        if jaw > 0.05:
            # Lower lip: the full jaw drop right from the seam; upper lip: lifted; they part inside the mouth,
            # over a width that rounding narrows and spreading widens.
            # A wide-open jaw pulls the corners in a little; the opening is an oval, pointed at the corners.
            hw = self.mouth_hw * (1.0 + ROUND_WIDTH * wide) * (1.0 - 0.08 * opening)
            hx = self.head.to_head(gx, gy)[0]
            cut = np.clip(1 - ((hx - self.cx) / hw) ** 2, 0, 1) ** 0.75
            jaw_cut = jaw * self.gap_g * cut
            rise = jaw_cut * self.gap_s + lift * cut * self.lip_u  # the upper lip's source: down the head
            gx_up = gx + dn_x * rise if dn_x else gx
            gy_up = gy + dn_y * rise
            drop = jaw_cut * (self.jaw_full - self.gap_s)  # the lower lip's source moves up the head
            gy -= dn_y * drop
            if dn_x:
                gx -= dn_x * drop
        image = self.frame if source is None else source  # another engine's mouth pasted into the photo
        out = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        for lr1, lr2, lc1, lc2, dark in lashes:
            out[lr1:lr2, lc1:lc2] = (out[lr1:lr2, lc1:lc2] * (1 - 0.5 * dark[..., None])).astype(np.uint8)
        if jaw > 0.05:
            out[g1:g2, h1:h2] = self._mouth(out[g1:g2, h1:h2], (gx, gy), (gx_up, gy_up), cut, opening, image)
        return out

    def _mouth(
        self,
        lower: np.ndarray,
        lower_src: tuple[np.ndarray, np.ndarray],
        upper_src: tuple[np.ndarray, np.ndarray],
        cut: np.ndarray,
        opening: float,
        image: np.ndarray,
    ) -> np.ndarray:
        """Composite the lower lip (already warped), the lifted upper lip and the mouth interior (gap box).

        `lower_src`, `upper_src`: where each gap pixel samples the picture for the lower and the upper lip. The
        interior is lit from the front: light enters through the opening, so the cavity is brightest just inside
        the lips and darkest deep in the middle and in the corners; its colour is the photo's lips at that
        column, the upper lip's near the top and the lower lip's near the bottom, deepened into shadow. The
        upper teeth cast a shadow under them; the tongue's dome catches light low in the mouth; the lower
        incisors' edges show above the lower lip as the jaw drops. Smooth shading: no generated texture.
        """
        upper = cv2.remap(
            image,
            np.ascontiguousarray(upper_src[0], np.float32),
            np.ascontiguousarray(upper_src[1], np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        hx_low, hy_low = self.head.to_head(*lower_src)
        hx_up, hy_up = self.head.to_head(*upper_src)
        d_low = hy_low - self.seam_line.at(hx_low)  # >= 0: this pixel shows the lower lip/chin
        d_up = self.seam_line.at(hx_up) - hy_up  # > 0: this pixel shows the upper lip
        soft = max(1.0, 0.006 * self.fh)  # the lips' edges are soft: ~1.5 mm, at least a pixel (anti-alias)
        a_low = np.clip(d_low / soft + 0.5, 0, 1)[..., None]
        a_up = np.clip(d_up / soft + 0.5, 0, 1)[..., None]
        a_in = np.clip(1 - a_low - a_up, 0, 1)
        if not a_in.any():
            return lower
        fh = self.fh
        depth_top = np.maximum(-d_up, 0)  # px below the upper lip
        depth_bot = np.maximum(-d_low, 0)  # px above the lower lip
        gap = depth_top + depth_bot + 1e-3  # the opening's height at this column, px
        f = depth_top / gap  # 0 at the upper lip, 1 at the lower lip
        side = np.clip(np.abs(self.gap_u), 0, 1)  # 0 mid-mouth, 1 at a corner
        # Cavity: dark, lit near the lips, darkest in the middle and the corners (light falls off with depth).
        near_lip = np.exp(-np.minimum(depth_top, depth_bot) / (0.18 * gap + 1.0))
        light = (0.30 + 0.40 * near_lip + 0.30 * f) * (1 - 0.65 * side**2)
        # Tongue: a dome low in the mouth (higher mid-mouth), brighter along its top, shown as the jaw drops.
        top = 0.60 + 0.30 * side**2 - 0.10 * opening
        tongue = _smoothstep(top, top + 0.18, f) * _smoothstep(0.08, 0.4, opening) * (1 - side**2)
        ridge = np.exp(-(((f - top - 0.10) / 0.10) ** 2))
        groove = 1 - 0.30 * np.exp(-((self.gap_u / 0.12) ** 2))  # the tongue's middle furrow
        t_light = (0.60 + 0.40 * ridge) * (1 - 0.5 * side**2) * groove
        cavity = self.cavity_up + (self.cavity_low - self.cavity_up) * f[..., None]
        interior = cavity * light[..., None]
        interior += (self.tongue_bgr * t_light[..., None] - interior) * tongue[..., None]
        # Teeth: the upper row hangs from the upper lip (unless the photo shows its own), the lower row stands
        # on the lower lip; both in the lips' shadow where they go under them, and darker to the sides.
        ut_h = min(UPPER_TEETH * fh, 0.40 * float(gap.max()))
        t_up = np.zeros_like(f)
        if not self.photo_teeth:
            # The incisors hang lower than the teeth towards the corners.
            t_up = np.clip((ut_h * (1 - 0.35 * side**2) - depth_top) / 1.5, 0, 1)
            t_up = t_up * np.clip((0.85 - side) * 8, 0, 1)
        lt_h = LOWER_TEETH * fh * _smoothstep(0.15, 0.9, np.float32(opening))  # more show as the lip drops
        lt_h = min(float(lt_h), 0.30 * float(gap.max()))
        t_low = np.clip((lt_h - depth_bot) / 1.5, 0, 1) * np.clip((0.62 - side) * 8, 0, 1)
        teeth = np.clip(t_up + t_low, 0, 1)[..., None]
        up_shade = 0.72 + 0.28 * _smoothstep(0.0, 0.6 * ut_h + 1, depth_top)
        low_shade = 0.55 + 0.30 * _smoothstep(0.0, lt_h + 1, lt_h - depth_bot + 1)
        tooth_light = np.where(
            t_up >= t_low, up_shade * (1 - 0.22 * self.upper_gaps), low_shade * (1 - 0.18 * self.lower_gaps)
        )
        tooth = self.teeth_bgr * (tooth_light * (1 - 0.45 * side**2))[..., None]
        interior = interior * (1 - teeth) + tooth * teeth
        # The inner edges of the lips darken where they turn into the mouth.
        rim = min(1.0, opening * 4) * 0.25 * cut
        lower_f = lower * (1 - rim * np.exp(-np.maximum(d_low, 0) / 2.0))[..., None]
        upper_f = upper * (1 - rim * np.exp(-np.maximum(d_up, 0) / 2.0))[..., None]
        total = a_low + a_up + a_in
        out = (a_low * lower_f + a_up * upper_f + a_in * interior) / total
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)
