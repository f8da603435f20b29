"""Idle motion for the live avatar: one continuous pose per frame tick, the same whether it talks or not.

A face at rest is never still: it breathes (a slow rise and fall, ~12-17 breaths a minute), blinks at irregular
human intervals (a gamma-distributed 2-6 s, now and then a double blink), sways slightly (three incommensurate
slow sines per axis, so the motion never repeats and has no loop point) and glances around (small saccades every
1-4 s, held, then back). While it talks the head nods a little with the emphasis of the speech. Every term is a
function of the stream's frame number or of eased state, so idle -> talking -> idle never jumps.

Needs numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Sway amplitudes as fractions of the face size: about 1 px, 0.6 px and 0.7 degrees of roll for a 150 px face.
SWAY_AMPLITUDE = (0.006, 0.004, 0.012)
SWAY_FREQS_HZ = (0.23, 0.41, 0.67)  # slow and incommensurate: the sum never looks periodic
BREATH_HZ = (0.22, 0.28)  # 13-17 breaths a minute; each breath picks its own rate in this range
BREATH_AMPLITUDE = 0.004  # of the face height: the head rises ~0.6 px on a 150 px face
BLINK_MEAN_S = 3.6  # ~17 blinks a minute at rest (people blink 15-20 times a minute)
BLINK_MIN_S = 1.2
DOUBLE_BLINK_P = 0.12
BLINK_CLOSE_S, BLINK_HOLD_S, BLINK_OPEN_S = 0.07, 0.03, 0.10
GLANCE_EVERY_S = (1.0, 4.0)
GLANCE_MOVE_S = 0.05  # a saccade is fast: ~50 ms
NOD_GAIN = 0.008  # of the face height at full speech emphasis


@dataclass(frozen=True)
class Pose:
    """Everything but the mouth for one frame."""

    sway: tuple[float, float, float]  # x shift, y shift (fractions of the face size), roll (radians)
    blink: float  # eyelid closure in [0, 1]
    gaze: tuple[float, float]  # iris offset in fractions of the eye's half width / half height


def _smooth(t: float) -> float:
    t = min(1.0, max(0.0, t))
    return t * t * (3 - 2 * t)


class IdleMotion:
    """The pose at each frame of a session-long stream. Call `pose(n, emphasis)` with n = 0, 1, 2, ... in order."""

    def __init__(self, fps: float, seed: int = 0) -> None:
        self.fps = float(fps)
        self.rng = np.random.default_rng(seed)
        r = self.rng
        self._sway = [
            [(f * r.uniform(0.8, 1.2), r.uniform(0, 2 * math.pi)) for f in SWAY_FREQS_HZ] for _ in range(3)
        ]
        self._breath_phase = 0.0
        self._breath_hz = r.uniform(*BREATH_HZ)
        self._next_blink_s = r.uniform(0.8, 2.5)
        self._blinks: list[float] = []  # start times of blinks still in progress
        self._gaze_from = (0.0, 0.0)
        self._gaze_to = (0.0, 0.0)
        self._gaze_at_s = 0.0
        self._next_glance_s = r.uniform(*GLANCE_EVERY_S)
        self._nod = 0.0
        self._last_n = -1

    def _blink_at(self, t: float) -> float:
        while t >= self._next_blink_s:
            self._blinks.append(self._next_blink_s)
            if self.rng.random() < DOUBLE_BLINK_P:
                self._blinks.append(self._next_blink_s + 0.32)
            gap = self.rng.gamma(4.0, (BLINK_MEAN_S - BLINK_MIN_S) / 4.0)
            self._next_blink_s += BLINK_MIN_S + gap
        closure = 0.0
        total = BLINK_CLOSE_S + BLINK_HOLD_S + BLINK_OPEN_S
        self._blinks = [b for b in self._blinks if t - b < total]
        for b in self._blinks:
            dt = t - b
            if dt < 0:
                continue
            if dt < BLINK_CLOSE_S:
                c = dt / BLINK_CLOSE_S
            elif dt < BLINK_CLOSE_S + BLINK_HOLD_S:
                c = 1.0
            else:
                c = 1.0 - (dt - BLINK_CLOSE_S - BLINK_HOLD_S) / BLINK_OPEN_S
            closure = max(closure, _smooth(c))
        return closure

    def _gaze(self, t: float) -> tuple[float, float]:
        if t >= self._next_glance_s:
            self._gaze_from = self._gaze_now(t)
            self._gaze_at_s = t
            # Mostly back to the viewer; sometimes a small look aside or down.
            if self.rng.random() < 0.5 and self._gaze_to != (0.0, 0.0):
                self._gaze_to = (0.0, 0.0)
            else:
                self._gaze_to = (float(self.rng.uniform(-1, 1)), float(self.rng.uniform(-0.6, 0.4)))
            self._next_glance_s = t + self.rng.uniform(*GLANCE_EVERY_S)
        return self._gaze_now(t)

    def _gaze_now(self, t: float) -> tuple[float, float]:
        k = _smooth((t - self._gaze_at_s) / GLANCE_MOVE_S)
        return (
            self._gaze_from[0] + k * (self._gaze_to[0] - self._gaze_from[0]),
            self._gaze_from[1] + k * (self._gaze_to[1] - self._gaze_from[1]),
        )

    def pose(self, n: int, emphasis: float = 0.0) -> Pose:
        """The pose of frame `n`; `emphasis` in [0, 1] is how strongly the avatar is speaking right now."""
        if n <= self._last_n:
            raise ValueError(f"frames must come in order: got {n} after {self._last_n}")
        steps = n - self._last_n
        self._last_n = n
        t = n / self.fps
        dt = steps / self.fps
        sway = [0.0, 0.0, 0.0]
        for k, amp in enumerate(SWAY_AMPLITUDE):
            for freq, phase in self._sway[k]:
                sway[k] += amp / 2 * math.sin(2 * math.pi * freq * t + phase)
        # Breathing: a phase that advances at a rate re-drawn once per breath, so no two breaths are the same.
        before = self._breath_phase
        self._breath_phase += self._breath_hz * dt
        if int(self._breath_phase) != int(before):
            self._breath_hz = float(self.rng.uniform(*BREATH_HZ))
        breath = 0.5 - 0.5 * math.cos(2 * math.pi * self._breath_phase)  # 0 = out, 1 = in
        sway[1] -= BREATH_AMPLITUDE * breath  # the head rises when breathing in
        # A slow nod follows the speech emphasis (rise 0.25 s, fall 0.5 s), so it fades out after speech.
        tau = 0.25 if emphasis > self._nod else 0.5
        self._nod += (1 - math.exp(-dt / tau)) * (emphasis - self._nod)
        sway[1] += NOD_GAIN * self._nod
        return Pose((sway[0], sway[1], sway[2]), self._blink_at(t), self._gaze(t))
