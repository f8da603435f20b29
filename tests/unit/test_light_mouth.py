"""The light engine's audio -> mouth mapping and its face warp, on synthetic audio and a drawn face (no models)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from assistant.talking_head.base import RenderSettings
from assistant.talking_head.face import FaceBox
from assistant.talking_head.light import LightTalkingHead, blink_curve, ease, frame_count, mouth_track
from assistant.talking_head.light_rig import find_mouth_half_width, find_mouth_seam

RATE, FPS = 16000, 25.0


def _harmonic(seconds: float, f0: float, n_harmonics: int, amp: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, n_harmonics + 1))
    return (amp * x / np.abs(x).max()).astype(np.float32)


def _hiss(seconds: float, amp: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(int(seconds * RATE) + 1)
    x = np.diff(noise)  # first difference: energy pushed to high frequencies, like "s"
    return (amp * x / np.abs(x).max()).astype(np.float32)


def _rms_match(x: np.ndarray, rms: float) -> np.ndarray:
    return (x * rms / np.sqrt(np.mean(x**2))).astype(np.float32)


# ---- audio features ----
def test_ease_opens_faster_than_it_closes() -> None:
    step = np.r_[np.ones(10), np.zeros(10)]
    out = ease(step, FPS, attack_s=0.03, release_s=0.09)
    frames_to_open = int(np.argmax(out[:10] > 0.9))
    frames_to_close = int(np.argmax(out[10:] < 0.1))
    assert 0 < frames_to_open < frames_to_close
    assert out.min() >= 0 and out.max() <= 1


def test_silence_keeps_the_mouth_shut() -> None:
    track = mouth_track(np.zeros(RATE * 2, np.float32), RATE, FPS)
    assert track.frames == 50
    assert np.all(track.open == 0)


def test_opening_follows_syllables_and_closes_in_pauses() -> None:
    syllable, pause = _harmonic(0.24, 140, 12, 0.5), np.zeros(int(0.2 * RATE), np.float32)
    audio = np.concatenate([pause] + [syllable, pause] * 5)
    track = mouth_track(audio, RATE, FPS)
    assert track.frames == frame_count(len(audio) / RATE, FPS)
    assert np.corrcoef(track.open, track.rms)[0, 1] > 0.8
    times = (np.arange(track.frames) + 0.5) / FPS
    in_syllable = [(0.2 + k * 0.44 + 0.06, 0.2 + k * 0.44 + 0.2) for k in range(5)]
    speaking = np.zeros(track.frames, bool)
    for a, b in in_syllable:
        speaking |= (times > a) & (times < b)
    assert track.open[speaking].min() > 0.5
    assert track.open[times < 0.15].max() == 0.0  # the leading pause
    # Mid-pause the mouth has closed again (the release is slower than the attack, but not that slow).
    late_in_pauses = [0.2 + k * 0.44 + 0.24 + 0.14 for k in range(4)]  # 140 ms into each 200 ms pause
    assert max(track.open[int(t * FPS)] for t in late_in_pauses) < 0.25


def test_bright_sounds_spread_the_lips_and_dark_sounds_round_them() -> None:
    ee = _rms_match(_harmonic(0.5, 220, 1, 1) + _harmonic(0.5, 2600, 1, 1), 0.1)  # "ee": strong high formant
    oo = _rms_match(_harmonic(0.5, 120, 3, 1), 0.1)  # "oo": energy low down
    wide_ee = mouth_track(ee, RATE, FPS).wide[5:-3].mean()
    wide_oo = mouth_track(oo, RATE, FPS).wide[5:-3].mean()
    assert wide_ee > 0.3
    assert wide_oo < -0.3


def test_a_hiss_opens_less_than_a_vowel_of_the_same_loudness() -> None:
    vowel, hiss = _rms_match(_harmonic(0.6, 150, 10, 1), 0.1), _rms_match(_hiss(0.6, 1), 0.1)
    audio = np.concatenate([vowel, hiss])
    track = mouth_track(audio, RATE, FPS)
    assert track.open[20:28].mean() < 0.8 * track.open[5:13].mean()


def test_frame_count_covers_the_audio_without_an_extra_frame() -> None:
    assert frame_count(2.0, 25) == 50
    assert frame_count(2.01, 25) == 51
    assert frame_count(0.0, 25) == 1


def test_blinks_are_short_and_occasional() -> None:
    curve = blink_curve(int(20 * FPS), FPS, np.random.default_rng(1))
    assert curve.min() == 0 and curve.max() == pytest.approx(1.0, abs=0.05)
    closed = curve > 0.5
    starts = np.flatnonzero(closed[1:] & ~closed[:-1])
    assert 3 <= len(starts) <= 10  # one every 2-5 s over 20 s
    assert closed.sum() / len(starts) <= 0.2 * FPS  # each blink shut for under 200 ms


# ---- the face warp ----
SKIN, LIP, EYE = (150, 170, 215), (90, 80, 170), (40, 30, 30)


def _drawn_face() -> tuple[np.ndarray, FaceBox]:
    """A 400x400 cartoon face whose features sit where a Haar box of (100, 80)-(300, 280) expects them."""
    img = np.full((400, 400, 3), (200, 200, 200), np.uint8)
    cv2.ellipse(img, (200, 190), (95, 125), 0, 0, 360, SKIN, -1)  # chin at y = 315 = box top + 1.18 * 200
    for x in (158, 242):
        cv2.ellipse(img, (x, 154), (16, 7), 0, 0, 360, EYE, -1)
    cv2.ellipse(img, (200, 240), (36, 10), 0, 0, 360, LIP, -1)
    cv2.line(img, (166, 240), (234, 240), (40, 40, 90), 2)  # the line between the lips, rows 239-241
    return img, FaceBox(100, 80, 300, 280)


@pytest.fixture(scope="module")
def head() -> LightTalkingHead:
    img, box = _drawn_face()
    return LightTalkingHead(img, RenderSettings(400, 400, FPS), face_box=box, sway=False)


def test_the_seam_is_found_on_the_lip_line() -> None:
    img, box = _drawn_face()
    seam = find_mouth_seam(img, box)
    assert abs(seam.y0 - 240) <= 2
    assert not seam.photo_teeth


def test_the_mouth_width_is_measured_along_the_lip_line() -> None:
    img, box = _drawn_face()
    # The drawn line between the lips runs from x = 166 to 234: 34 px either side of the middle.
    assert 31 <= find_mouth_half_width(img, box, find_mouth_seam(img, box)) <= 38
    # Wider lips on the same face box are measured wider; no line at all falls back to a third of the box.
    wide = img.copy()
    cv2.ellipse(wide, (200, 240), (52, 10), 0, 0, 360, LIP, -1)
    cv2.line(wide, (150, 240), (250, 240), (40, 40, 90), 2)
    assert 47 <= find_mouth_half_width(wide, box, find_mouth_seam(wide, box)) <= 48  # clipped at 0.24 of the box
    flat = np.full_like(img, 150)
    assert find_mouth_half_width(flat, box, find_mouth_seam(flat, box)) == pytest.approx(0.17 * 200)


def test_a_closed_mouth_leaves_the_photo_unchanged(head: LightTalkingHead) -> None:
    y1, y2, x1, x2 = head.rig.roi
    still = head.rig.render(0.0, 0.0, 0.0, (0.0, 0.0, 0.0))
    assert np.abs(still.astype(int) - head.frame[y1:y2, x1:x2]).max() <= 1


def _mouth_dark(head: LightTalkingHead, opening: float) -> int:
    y1, _, x1, _ = head.rig.roi
    roi = head.rig.render(opening, 0.0, 0.0, (0.0, 0.0, 0.0))
    mouth = roi[225 - y1 : 275 - y1, 165 - x1 : 235 - x1]
    return int((cv2.cvtColor(mouth, cv2.COLOR_BGR2GRAY) < 60).sum())


def test_opening_paints_a_mouth_that_grows_with_the_opening(head: LightTalkingHead) -> None:
    shut, half, wide = _mouth_dark(head, 0.0), _mouth_dark(head, 0.5), _mouth_dark(head, 1.0)
    assert shut < half < wide
    assert wide - shut > 400  # a real hole, not a line: 70 px wide mouth opened ~20 px


def test_the_jaw_drops(head: LightTalkingHead) -> None:
    def chin_row(opening: float) -> int:
        y1, _, x1, _ = head.rig.roi
        column = head.rig.render(opening, 0.0, 0.0, (0.0, 0.0, 0.0))[:, 200 - x1]
        skin = np.abs(column.astype(int) - SKIN).sum(1) < 30
        return y1 + int(np.flatnonzero(skin)[-1])

    assert chin_row(1.0) - chin_row(0.0) >= 0.06 * 200  # up to 10 % of the face height at full opening


def test_a_blink_covers_the_eyes(head: LightTalkingHead) -> None:
    def eye_dark(closure: float) -> int:
        y1, _, x1, _ = head.rig.roi
        roi = head.rig.render(0.0, 0.0, closure, (0.0, 0.0, 0.0))
        eyes = roi[140 - y1 : 170 - y1, 130 - x1 : 270 - x1]
        return int((cv2.cvtColor(eyes, cv2.COLOR_BGR2GRAY) < 60).sum())

    assert eye_dark(1.0) < 0.3 * eye_dark(0.0)


def test_frames_cover_the_track(head: LightTalkingHead) -> None:
    audio = np.concatenate([np.zeros(RATE // 5, np.float32), _harmonic(0.5, 150, 8, 0.4)])
    track = mouth_track(audio, RATE, FPS)
    frames = [f.copy() for f in head.frames(track)]
    assert len(frames) == track.frames == 18
    assert frames[0].shape == (400, 400, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[12])  # it moves while speaking
