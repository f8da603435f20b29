"""The light talking head: no weights, faster than real time on a CPU. Animates the avatar photo from the audio alone.

Per video frame the audio gives a mouth opening (RMS energy, compressed, gated, eased with a fast attack and a
slower release) and a mouth shape (spectral centroid: bright sounds like "ee"/"s" spread the lips, dark ones
like "oo" round them). The photo is then warped, never painted over: the jaw, the lower lip and the chin drop
together (a smooth displacement field that fades out over the cheeks and the neck, with the cheek skin
stretching past the mouth corners), the upper lip lifts a little, the corners move in or out and the opening
narrows or widens with the shape. Only the gap that opens between the lips is drawn: a mouth interior lit from
the front (dark with depth, a tongue, upper teeth unless the photo shows its own, lower teeth as the jaw
drops), in the photo's own light and with a fixed grain. At rest (opening 0) the photo is shown untouched.
Eyes blink now and then and the head sways slightly.

Landmarks come from the photo itself, no model: OpenCV's Haar face box (bundled with opencv-python-headless),
the lips' parting line (the darkest line, or the bottom edge of the teeth in a smile) fitted with a parabola,
and the mouth's width along that line (where the line, or the row of teeth, ends). Everything that depends
only on the avatar is computed once in the constructor; a frame costs a few small array operations and two
`cv2.remap` of the head region.

Needs numpy, OpenCV, the face detector (`assistant.talking_head.face`) and ffmpeg (through `assistant.video`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from assistant.audio.io import load_audio
from assistant.events import AvatarVideo
from assistant.talking_head.base import RenderSettings, fit_frame, load_avatar, video_from_writer
from assistant.talking_head.face import FaceBox, detect_faces, pick_face
from assistant.video import FrameWriter

log = logging.getLogger(__name__)

ANALYSIS_RATE_HZ = 16000
LEAD_S = 0.02  # the mouth moves a little before the sound it makes
WINDOW_FRAMES = 1.5  # RMS window length in video frames: 60 ms at 25 fps, smooth but still follows syllables
ATTACK_S = 0.03  # opening time constant
RELEASE_S = 0.09  # closing time constant: lips close more slowly than they open
SHAPE_SMOOTH_S = 0.06
GATE_DB = -22.0  # below the loud speech level by this much the mouth stays shut (breath, room noise)
COMPRESS = 0.7  # opening = level ** 0.7: quiet syllables still open the mouth visibly
FFT_SIZE = 512  # 32 ms at 16 kHz for the spectral centroid

# The face warp, in fractions of the Haar face box (fh: its height, hw: half the mouth's width).
JAW_DROP = 0.12  # the chin and lower lip drop this much of fh at full opening (~15 mm on an adult face)
LIP_LIFT = 0.02  # the upper lip rises this much of fh at full opening
SPREAD = 0.16  # lip corners move in ("oo") or out ("ee") by this much of hw at full shape and opening
ROUND_WIDTH = 0.15  # the opening's width shrinks ("oo") or grows ("ee") by this fraction of hw
# The mouth interior (BGR), before lighting: a dark red cavity, a pink tongue, teeth in shadow.
CAVITY_BGR = (34.0, 30.0, 78.0)
TONGUE_BGR = (100.0, 104.0, 196.0)
TEETH_TINT_BGR = (0.86, 0.96, 1.04)  # teeth: the face's own light, a little warmer than neutral grey
UPPER_TEETH = 0.032  # height of the upper teeth showing, of fh (~7 mm of incisor seen below the lip)
LOWER_TEETH = 0.022  # lower incisors' visible edge at full opening, of fh


@dataclass(frozen=True)
class MouthTrack:
    """Per video frame mouth parameters derived from the audio."""

    open: np.ndarray  # (n,) float32 in [0, 1], eased
    wide: np.ndarray  # (n,) float32 in [-1 round, +1 wide]
    rms: np.ndarray  # (n,) float32 raw RMS of the window each frame looked at
    fps: float

    @property
    def frames(self) -> int:
        return len(self.open)


def ease(
    values: np.ndarray, fps: float, attack_s: float = ATTACK_S, release_s: float = RELEASE_S
) -> np.ndarray:
    """One-pole smoothing that rises with time constant `attack_s` and falls with `release_s`."""
    dt = 1.0 / fps
    up = 1.0 - math.exp(-dt / attack_s) if attack_s > 0 else 1.0
    down = 1.0 - math.exp(-dt / release_s) if release_s > 0 else 1.0
    out = np.empty(len(values), np.float32)
    state = 0.0
    for i, v in enumerate(np.asarray(values, np.float64)):
        state += (up if v > state else down) * (v - state)
        out[i] = state
    return out


def frame_count(duration_s: float, fps: float) -> int:
    """Frames that cover `duration_s` (the same count FrameWriter pads to)."""
    return max(1, math.ceil(duration_s * fps - 1e-6))


@dataclass(frozen=True)
class MouthTargets:
    """Per video frame mouth targets before easing: what the audio asks the mouth to do at each frame."""

    level: np.ndarray  # (n,) float32 in [0, 1]: opening asked for
    wide: np.ndarray  # (n,) float32 in [-1 round, +1 wide]
    rms: np.ndarray  # (n,) float32 raw RMS of the window each frame looked at


def mouth_targets(
    samples: np.ndarray, sample_rate_hz: int, fps: float, n_frames: int | None = None, offset_s: float = 0.0
) -> MouthTargets:
    """Mouth opening and shape targets for frames whose centres are at (k + 0.5) / fps - offset_s seconds into
    `samples` (k = 0 .. n-1). `offset_s` lets a live stream place a clip that starts between two frame ticks."""
    x = np.asarray(samples, np.float32)
    n = n_frames if n_frames is not None else frame_count(len(x) / sample_rate_hz, fps)
    centers = ((np.arange(n) + 0.5) / fps - offset_s + LEAD_S) * sample_rate_hz  # sample index each frame looks at
    half = max(1, int(WINDOW_FRAMES * sample_rate_hz / fps / 2))
    lo = np.clip(centers.astype(np.int64) - half, 0, len(x))
    hi = np.clip(centers.astype(np.int64) + half, 0, len(x))
    energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    rms = np.sqrt((energy[hi] - energy[lo]) / np.maximum(hi - lo, 1)).astype(np.float32)

    loud = float(np.percentile(rms, 95)) if n else 0.0
    if loud < 1e-4 or len(x) == 0:  # silence: the mouth stays shut
        zeros = np.zeros(n, np.float32)
        return MouthTargets(zeros, zeros.copy(), rms)
    gate = loud * 10 ** (GATE_DB / 20)
    level = np.clip((rms - gate) / (loud - gate), 0.0, 1.0) ** COMPRESS

    # Spectral centroid of a 32 ms window at each frame (100 Hz - 6 kHz, where the vowel and fricative cues are).
    idx = np.clip(
        centers.astype(np.int64)[:, None] + np.arange(-FFT_SIZE // 2, FFT_SIZE // 2)[None, :], 0, len(x) - 1
    )
    spec = np.abs(np.fft.rfft(x[idx] * np.hanning(FFT_SIZE).astype(np.float32), axis=1))  # (n, 257)
    freqs = np.fft.rfftfreq(FFT_SIZE, 1.0 / sample_rate_hz)
    band = (freqs >= 100) & (freqs <= 6000)
    centroid = (spec[:, band] * freqs[band]).sum(1) / np.maximum(spec[:, band].sum(1), 1e-9)
    # Voiced speech has its centroid around 0.6-1.6 kHz (TTS and real voices alike): ~1.1 kHz is neutral.
    wide = np.clip((centroid - 1100.0) / 600.0, -1.0, 1.0)
    wide = np.where(level > 0, wide, 0.0)  # in silence the lips relax to neutral
    # Fricatives (s, sh, f: centroid above ~3 kHz in this band) are said through nearly closed teeth.
    level = level * (1.0 - 0.4 * np.clip((centroid - 3000.0) / 1500.0, 0.0, 1.0))
    return MouthTargets(level.astype(np.float32), wide.astype(np.float32), rms)


def mouth_track(
    samples: np.ndarray, sample_rate_hz: int, fps: float, n_frames: int | None = None
) -> MouthTrack:
    """Mouth opening and shape per video frame from mono float audio (targets, eased)."""
    t = mouth_targets(samples, sample_rate_hz, fps, n_frames)
    opening = ease(t.level, fps)
    wide_eased = ease(t.wide, fps, SHAPE_SMOOTH_S, SHAPE_SMOOTH_S)
    return MouthTrack(opening.astype(np.float32), wide_eased.astype(np.float32), t.rms, fps)


def blink_curve(n_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Eyelid closure per frame in [0, 1]: a blink (70 ms closing, 30 ms shut, 100 ms opening) every 2-5 s."""
    out = np.zeros(n_frames, np.float32)
    t_end = n_frames / fps
    t = rng.uniform(0.5, 2.0)
    times = np.arange(n_frames) / fps
    while t < t_end:
        closing = np.clip((times - t) / 0.07, 0, 1)
        opening = np.clip(1 - (times - t - 0.10) / 0.10, 0, 1)
        out = np.maximum(out, np.minimum(closing, opening) * (times >= t))
        t += rng.uniform(2.0, 5.0)
    return (out * out * (3 - 2 * out)).astype(np.float32)  # smoothstep: the lid accelerates and slows down


def head_motion(track: MouthTrack, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) float32: x shift, y shift (fractions of the face size) and roll (radians) per frame."""
    n = track.frames
    t = np.arange(n) / track.fps
    motion = np.zeros((n, 3), np.float32)
    amplitude = (0.006, 0.004, 0.012)  # about 1 px, 0.6 px and 0.7 degrees for a 150 px face
    for k, amp in enumerate(amplitude):
        for freq in (0.23, 0.41, 0.67):  # slow, incommensurate sways: never looks periodic
            motion[:, k] += (
                amp / 2 * np.sin(2 * np.pi * (freq * rng.uniform(0.8, 1.2)) * t + rng.uniform(0, 6.3))
            )
    # A small nod with the emphasis of the speech (slow envelope of the opening).
    motion[:, 1] += 0.008 * ease(track.open, track.fps, 0.25, 0.5)
    return motion


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


class FaceRig:
    """One avatar frame's landmarks and precomputed warp profiles; `render` draws the head region of a frame."""

    def __init__(self, frame: np.ndarray, box: FaceBox) -> None:
        self.frame = frame
        fw, fh = float(box.width), float(box.height)
        self.fw, self.fh = fw, fh
        self.cx = (box.x1 + box.x2) / 2
        self.seam_line = find_mouth_seam(frame, box)
        self.seam, self.photo_teeth = self.seam_line.y0, self.seam_line.photo_teeth
        self.mouth_hw = find_mouth_half_width(frame, box, self.seam_line)  # about a third of the box
        self.chin = max(box.y1 + 1.15 * fh, self.seam + 0.27 * fh)  # the chin's tip: a Haar box ends above it
        self.eyes = find_eyes(frame, box)
        # The photo's light: teeth and the mouth's interior follow the skin's brightness (a dim photo gets dim
        # teeth, not white ones). A photo that shows its teeth lends their colour to the lower row.
        skin = frame[
            int(box.y1 + 0.50 * fh) : int(box.y1 + 0.62 * fh),
            int(self.cx - 0.25 * fw) : int(self.cx + 0.25 * fw),
        ].reshape(-1, 3)
        skin_l = float(np.median(skin.mean(1))) if skin.size else 160.0
        # A quarter of the skin's hue: teeth reflect the same warm light the face is lit by.
        hue = np.median(skin, 0).astype(np.float32) / max(skin_l, 1.0) if skin.size else np.ones(3)
        tint = 0.75 * np.array(TEETH_TINT_BGR, np.float32) + 0.25 * hue
        self.teeth_bgr = tint * min(235.0, 1.1 * skin_l + 25.0)
        if self.photo_teeth:
            rows, cols = slice(int(self.seam - 0.025 * fh), int(self.seam)), slice(
                int(self.cx - 0.06 * fw), int(self.cx + 0.06 * fw)
            )
            t = frame[rows, cols]
            if t.size:
                self.teeth_bgr = np.median(t.reshape(-1, 3), 0).astype(np.float32) * 0.95
        self.cavity_gain = float(np.clip(skin_l / 170.0, 0.6, 1.2))
        H, W = frame.shape[:2]
        # The head region: everything the warp may move (hair to upper neck), clipped to the frame.
        y1, y2 = max(0, int(box.y1 - 0.6 * fh)), min(H, int(self.chin + 0.4 * fh))
        x1, x2 = max(0, int(self.cx - 0.9 * fw)), min(W, int(self.cx + 0.9 * fw))
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
        pivot_x, pivot_y = self.cx, self.chin  # the head rolls about the neck
        self.win = win
        self.win_dx, self.win_dy = (
            (win * (xs - pivot_x)).astype(np.float32),
            (win * (ys - pivot_y)).astype(np.float32),
        )
        # Jaw: full drop across the chin, fading over the cheeks (g) and from above the lips to the neck (s).
        dx = xs - self.cx
        self.jaw_g = np.where(np.abs(dx) < 0.55 * fw, np.cos(np.pi / 2 * dx / (0.55 * fw)) ** 2, 0).astype(
            np.float32
        )
        # Where the drop begins, per column: between the lips right at the seam (the lips part there, the
        # skull above holds still); past the corners the cheek skin stretches instead, from above the seam's
        # level to below the lower lip, a span long enough that the skin never folds. The seam follows the
        # photo's lip line (a smile's corners sit higher), clipped so the parabola cannot run off.
        m = self.mouth_hw
        rest = np.clip(1 - (dx / m) ** 2, 0, 1) ** 0.9  # (1, w): 1 mid-mouth, 0 at and past the corners
        seam_x = np.clip(self.seam_line.at(xs), self.seam - 0.06 * fh, self.seam + 0.06 * fh)
        s_rise = _smoothstep(seam_x - 0.15 * fh * (1 - rest), seam_x + (0.10 + 0.08 * (1 - rest)) * fh, ys)
        s_fall = 1.0 - _smoothstep(self.chin, self.chin + 0.35 * fh, ys)  # (h, 1)
        self.jaw_s = (s_rise * s_fall).astype(np.float32)  # (h, w)
        jr, jc = np.flatnonzero(self.jaw_s.max(1) > 0), np.flatnonzero(self.jaw_g[0] > 0)
        self.jbox = (jr[0], jr[-1] + 1, jc[0], jc[-1] + 1) if len(jr) and len(jc) else (0, 0, 0, 0)
        self.jaw_field = (self.jaw_s * self.jaw_g)[
            self.jbox[0] : self.jbox[1], self.jbox[2] : self.jbox[3]
        ].copy()
        # The mouth box: where the lip corners move in or out; inside it, the gap box where the lips part.
        my1, my2 = max(y1, int(self.seam - 0.24 * fh)), min(y2, int(self.seam + 0.16 * fh))
        mx1, mx2 = max(x1, int(self.cx - 2.2 * m)), min(x2, int(self.cx + 2.2 * m))
        self.mbox = (my1 - y1, my2 - y1, mx1 - x1, mx2 - x1)  # in region coordinates
        dxm = xs[:, mx1 - x1 : mx2 - x1] - self.cx
        vy = np.exp(-0.5 * ((ys[my1 - y1 : my2 - y1] - self.seam) / (0.05 * fh)) ** 2)
        self.spread = (dxm / m * np.exp(-((dxm / (1.2 * m)) ** 2)) * vy).astype(np.float32)  # corners in/out
        gx1, gx2 = max(mx1, int(self.cx - 1.2 * m)), min(mx2, int(self.cx + 1.2 * m) + 1)
        self.gcols = (gx1 - mx1, gx2 - mx1)  # in mouth-box coordinates
        gys, seam_x = ys[my1 - y1 : my2 - y1], self.seam_line.at(xs[:, gx1 - x1 : gx2 - x1])  # (h, 1), (1, w)
        # The lower lip drops by the full jaw wherever the lips part. A drop the same for every row (not a
        # step at the seam) keeps the lower map monotonic, so the opening tapers smoothly into the corners.
        full = s_fall[my1 - y1 : my2 - y1]  # (h, 1)
        self.jaw_full = np.broadcast_to(full, (len(gys), seam_x.shape[1])).astype(np.float32)
        self.lip_u = _smoothstep(seam_x - 0.10 * fh, seam_x, gys).astype(
            np.float32
        )  # how much the upper lip lifts
        self.gap_g = self.jaw_g[:, gx1 - x1 : gx2 - x1]
        self.gap_s = self.jaw_s[my1 - y1 : my2 - y1, gx1 - x1 : gx2 - x1]
        # Fixed detail for the interior, in gap-box pixels: band-limited noise (the wet, uneven surface of the
        # cavity and tongue; zero mean, unit std) and the dark gaps between teeth as a function of the column.
        gshape = (my2 - my1, gx2 - gx1)
        noise = np.random.default_rng(7).standard_normal(gshape).astype(np.float32)
        # Streaks longer across than down (the ridges of the palate, the tongue's surface): ~2 x 1 mm.
        noise = cv2.GaussianBlur(noise, (0, 0), sigmaX=max(1.0, 0.009 * fh), sigmaY=max(0.6, 0.004 * fh))
        self.grain = noise / max(float(noise.std()), 1e-6)
        u = (xs[:, gx1 - x1 : gx2 - x1] - self.cx) / self.mouth_hw  # (1, w): -1 .. 1 across the mouth
        self.gap_u = u.astype(np.float32)
        line = max(0.04, 1.2 / self.mouth_hw)  # a gap line about 1.2 px wide whatever the face size
        # Incisors are wide, the teeth towards the corners are seen edge on (narrower): gaps at these |u|.
        upper_gaps, lower_gaps = (0.0, 0.30, 0.56, 0.78), (0.0, 0.19, 0.37, 0.54)
        self.upper_gaps = np.max([np.exp(-(((np.abs(u) - g) / line) ** 2)) for g in upper_gaps], 0)
        self.lower_gaps = np.max([np.exp(-(((np.abs(u) - g) / line) ** 2)) for g in lower_gaps], 0)
        self._gaze: list[tuple[int, int, int, int, np.ndarray, float, float]] | None = None

    def _blink(self, map_y: np.ndarray, closure: float) -> list[tuple[int, int, int, int, np.ndarray]]:
        """Slide each upper lid down over its eye (in place on map_y); returns where to darken the lash line."""
        y0, _, x0, _ = self.roi
        lashes = []
        for eye in self.eyes:
            ew, eh = eye.half_width, eye.half_height
            top, rest = (
                eye.y - 3.0 * eh,
                eye.y - eh,
            )  # lid skin runs from under the brow to the open lid's edge
            r1, r2 = int(top) - y0, int(eye.y + 1.5 * eh) + 1 - y0
            c1, c2 = int(eye.x - 1.4 * ew) - x0, int(eye.x + 1.4 * ew) + 1 - x0
            if r1 < 0 or c1 < 0 or r2 > map_y.shape[0] or c2 > map_y.shape[1]:
                continue
            ys, xs = self.ys[r1:r2], self.xs[:, c1:c2]
            reach = (
                np.clip(1 - ((xs - eye.x) / (1.3 * ew)) ** 2, 0, 1) ** 0.5
            )  # (1, w): full mid-eye, none at corners
            edge = rest + closure * reach * 2.0 * eh  # where the lid's edge is now
            stretch = (rest - top) / np.maximum(edge - top, 1e-3)
            src = np.where((ys >= top) & (ys < edge), top + (ys - top) * stretch, ys)
            map_y[r1:r2, c1:c2] -= (ys - src).astype(np.float32)
            lashes.append(
                (r1, r2, c1, c2, (closure * reach * np.exp(-(((ys - edge) / 1.2) ** 2))).astype(np.float32))
            )
        return lashes

    def _gaze_masks(self) -> list[tuple[int, int, int, int, np.ndarray, float, float]]:
        """Per eye: its box in region coordinates and a soft elliptical mask (1 at the iris, 0 at the lids)."""
        if self._gaze is None:
            y0, _, x0, _ = self.roi
            masks = []
            for eye in self.eyes:
                ew, eh = eye.half_width, eye.half_height
                r1, r2 = int(eye.y - 1.6 * eh) - y0, int(eye.y + 1.6 * eh) + 1 - y0
                c1, c2 = int(eye.x - 1.2 * ew) - x0, int(eye.x + 1.2 * ew) + 1 - x0
                if r1 < 0 or c1 < 0 or r2 > self.map_y.shape[0] or c2 > self.map_y.shape[1]:
                    continue
                ys, xs = self.ys[r1:r2], self.xs[:, c1:c2]
                m = np.clip(1 - ((xs - eye.x) / (1.1 * ew)) ** 2 - ((ys - eye.y) / (1.5 * eh)) ** 2, 0, 1)
                masks.append((r1, r2, c1, c2, (m * m * (3 - 2 * m)).astype(np.float32), ew, eh))
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
        if gaze[0] or gaze[1]:
            for r1, r2, c1, c2, mask, ew, eh in self._gaze_masks():
                map_x[r1:r2, c1:c2] -= (0.30 * ew * gaze[0]) * mask
                map_y[r1:r2, c1:c2] -= (0.25 * eh * gaze[1]) * mask
        jaw = opening * JAW_DROP * fh  # px the chin drops
        lift = opening * LIP_LIFT * fh  # px the upper lip rises
        if jaw > 0.05:
            j1, j2, k1, k2 = self.jbox
            map_y[j1:j2, k1:k2] -= jaw * self.jaw_field
        lashes = self._blink(map_y, blink) if blink > 0.01 else []
        r1, r2, c1, c2 = self.mbox
        map_x[r1:r2, c1:c2] -= (SPREAD * self.mouth_hw * wide * (0.5 + 0.5 * opening)) * self.spread
        g1, g2 = c1 + self.gcols[0], c1 + self.gcols[1]
        gx, gy = map_x[r1:r2, g1:g2], map_y[r1:r2, g1:g2]
        if jaw > 0.05:
            # Lower lip: the full jaw drop right from the seam; upper lip: lifted; they part inside the mouth,
            # over a width that rounding narrows and spreading widens.
            gy_up = gy.copy()
            # A wide-open jaw pulls the corners in a little; the opening is an oval, pointed at the corners.
            hw = self.mouth_hw * (1.0 + ROUND_WIDTH * wide) * (1.0 - 0.08 * opening)
            cut = np.clip(1 - ((gx - self.cx) / hw) ** 2, 0, 1) ** 0.75
            jaw_cut = jaw * self.gap_g * cut
            gy -= jaw_cut * (self.jaw_full - self.gap_s)
            gy_up += jaw_cut * self.gap_s + lift * cut * self.lip_u
        image = self.frame if source is None else source  # another engine's mouth pasted into the photo
        out = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        for lr1, lr2, lc1, lc2, dark in lashes:
            out[lr1:lr2, lc1:lc2] = (out[lr1:lr2, lc1:lc2] * (1 - 0.5 * dark[..., None])).astype(np.uint8)
        if jaw > 0.05:
            out[r1:r2, g1:g2] = self._mouth(out[r1:r2, g1:g2], gx, gy, gy_up, cut, opening, image)
        return out

    def _mouth(
        self,
        lower: np.ndarray,
        mx: np.ndarray,
        my: np.ndarray,
        my_up: np.ndarray,
        cut: np.ndarray,
        opening: float,
        image: np.ndarray,
    ) -> np.ndarray:
        """Composite the lower lip (already warped), the lifted upper lip and the mouth interior (gap box).

        The interior is lit from the front: light enters through the opening, so the cavity is brightest just
        inside the lips and darkest deep in the middle and in the corners; the upper teeth cast a shadow under
        them; the tongue's dome catches light low in the mouth; the lower incisors' edges show above the lower
        lip as the jaw drops. Each surface carries a fixed grain and the teeth their gaps: nothing is flat.
        """
        upper = cv2.remap(
            image, np.ascontiguousarray(mx), my_up, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        seam = self.seam_line.at(mx)
        d_low = my - seam  # >= 0: this pixel shows the lower lip/chin
        d_up = seam - my_up  # > 0: this pixel shows the upper lip
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
        side = np.clip(np.abs(self.gap_u), 0, 1) * np.ones_like(f)  # 0 mid-mouth, 1 at a corner
        grain = self.grain
        # Cavity: dark, lit near the lips, darkest in the middle and the corners (light falls off with depth).
        near_lip = np.exp(-np.minimum(depth_top, depth_bot) / (0.18 * gap + 1.0))
        light = (0.30 + 0.40 * near_lip + 0.30 * f) * (1 - 0.65 * side**2)
        # Tongue: a dome low in the mouth (higher mid-mouth), brighter along its top, shown as the jaw drops.
        top = 0.60 + 0.30 * side**2 - 0.10 * opening
        tongue = _smoothstep(top, top + 0.12, f) * _smoothstep(0.2, 0.5, opening) * (1 - side**2)
        ridge = np.exp(-(((f - top - 0.10) / 0.10) ** 2))
        groove = 1 - 0.35 * np.exp(-((self.gap_u / 0.07) ** 2))  # the tongue's middle furrow
        t_light = (0.60 + 0.40 * ridge) * (1 - 0.5 * side**2) * groove
        interior = np.empty(mx.shape + (3,), np.float32)
        for ch in range(3):
            cav = CAVITY_BGR[ch] * light
            interior[..., ch] = cav + (TONGUE_BGR[ch] * t_light - cav) * tongue
        # Grain in proportion to the light, plus a floor: even the darkest depth is wet and uneven.
        interior = interior * (self.cavity_gain * (1 + 0.30 * grain))[..., None] + (4.0 * grain)[..., None]
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
        tooth_light = tooth_light * (1 - 0.45 * side**2) * (1 + 0.04 * grain)
        tooth = self.teeth_bgr * tooth_light[..., None]
        interior = interior * (1 - teeth) + tooth * teeth
        # The inner edges of the lips darken where they turn into the mouth.
        rim = min(1.0, opening * 4) * 0.25 * cut
        lower_f = lower * (1 - rim * np.exp(-np.maximum(d_low, 0) / 2.0))[..., None]
        upper_f = upper * (1 - rim * np.exp(-np.maximum(d_up, 0) / 2.0))[..., None]
        total = a_low + a_up + a_in
        out = (a_low * lower_f + a_up * upper_f + a_in * interior) / total
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


class LightTalkingHead:
    """The CPU talking head. Build once per avatar; `render` per utterance, one at a time (buffers are reused)."""

    name = "light"

    def __init__(
        self,
        avatar_image: str | Path | np.ndarray,
        settings: RenderSettings | None = None,
        face_box: FaceBox | None = None,
        detector: Callable[[np.ndarray], list[FaceBox]] = detect_faces,
        blinks: bool = True,
        sway: bool = True,
        seed: int = 0,
    ) -> None:
        self.settings = settings or RenderSettings()
        s = self.settings
        photo = avatar_image if isinstance(avatar_image, np.ndarray) else load_avatar(avatar_image)
        source = (
            "the avatar image" if isinstance(avatar_image, np.ndarray) else f"avatar image {avatar_image}"
        )
        self.frame, placement = fit_frame(photo, s.width, s.height)  # (H, W, 3) uint8, the still background
        if face_box is None:
            face_box = pick_face(detector(photo), source)  # NoFaceError for none, or two of a size
        # The face box in frame pixels (the photo was scaled and centred).
        self.face_box = face_box.scaled(placement.scale, placement.offset_x, placement.offset_y)
        self.rig = FaceRig(self.frame, self.face_box)
        self.blinks, self.sway, self.seed = blinks, sway, seed

    def track(self, audio_path: str | Path) -> MouthTrack:
        samples = load_audio(audio_path, ANALYSIS_RATE_HZ)
        return mouth_track(samples, ANALYSIS_RATE_HZ, self.settings.fps)

    def frames(self, track: MouthTrack) -> Iterator[np.ndarray]:
        """Yield the (H, W, 3) uint8 BGR frames for a mouth track. The same buffer is reused: copy to keep one."""
        rng = np.random.default_rng(self.seed + track.frames)
        blink = (
            blink_curve(track.frames, track.fps, rng) if self.blinks else np.zeros(track.frames, np.float32)
        )
        sway = head_motion(track, rng) if self.sway else np.zeros((track.frames, 3), np.float32)
        out = self.frame.copy()
        y1, y2, x1, x2 = self.rig.roi
        for i in range(track.frames):
            out[y1:y2, x1:x2] = self.rig.render(
                float(track.open[i]), float(track.wide[i]), float(blink[i]), tuple(sway[i])
            )
            yield out

    def render(self, audio_path: Path, output_path: Path) -> AvatarVideo:
        start = time.monotonic()
        s = self.settings
        track = self.track(audio_path)
        with FrameWriter(
            output_path, s.width, s.height, s.fps, audio_path=audio_path,
            audio_bitrate=s.audio_bitrate, crf=s.crf, preset=s.preset,
        ) as writer:  # fmt: skip
            for frame in self.frames(track):
                writer.write(frame)
        return video_from_writer(writer, Path(output_path), self.name, s, start)

    def close(self) -> None:
        """Nothing to free: the engine holds only arrays."""
