"""Probes into the light engine's frames shared by its tests: the whole frame at a mouth state, and where the
drawn inside of the mouth shows."""

from __future__ import annotations

import numpy as np

from assistant.talking_head.light import LightTalkingHead

STILL = (0.0, 0.0, 0.0)


def render(head: LightTalkingHead, opening: float, wide: float = 0.0) -> np.ndarray:
    """The whole frame with the head drawn at this mouth state (no blink, no sway)."""
    frame = head.frame.copy()
    y1, y2, x1, x2 = head.rig.roi
    frame[y1:y2, x1:x2] = head.rig.render(opening, wide, 0.0, STILL)
    return frame


def interior_mask(head: LightTalkingHead, opening: float, wide: float = 0.0) -> np.ndarray:
    """(H, W) bool: where the drawn interior (cavity and tongue) shows at this mouth state, not teeth: the
    pixels that change when the interior's colours do and do not when the teeth's do."""
    rig = head.rig
    saved = rig.cavity_up, rig.cavity_low, rig.tongue_bgr, rig.teeth_bgr
    plain = render(head, opening, wide).astype(int)
    try:
        rig.cavity_up, rig.cavity_low, rig.tongue_bgr = (np.zeros_like(a) for a in saved[:3])
        no_interior = render(head, opening, wide).astype(int)
        rig.cavity_up, rig.cavity_low, rig.tongue_bgr = saved[:3]
        rig.teeth_bgr = np.zeros_like(saved[3])
        no_teeth = render(head, opening, wide).astype(int)
    finally:
        rig.cavity_up, rig.cavity_low, rig.tongue_bgr, rig.teeth_bgr = saved
    return (np.abs(plain - no_interior).max(2) > 8) & (np.abs(plain - no_teeth).max(2) <= 2)
