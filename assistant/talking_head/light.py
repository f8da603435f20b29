"""The light talking head: no weights, faster than real time on a CPU. Animates the avatar photo from the audio alone.

Per video frame the audio gives a mouth opening (RMS energy, compressed, gated, eased with a fast attack and a
slower release) and a mouth shape (spectral centroid: bright sounds like "ee"/"s" spread the lips, dark ones
like "oo" round them). The face (`light_rig.FaceRig`) then warps the photo: the jaw and lips move along the
head's own axis, only the gap between the lips is drawn, in the photo's own colour and light. At rest (opening
0) the photo is shown untouched. Eyes blink now and then and the head sways slightly.

Needs numpy, OpenCV, the face detector (`assistant.talking_head.face`) and ffmpeg (through `assistant.video`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from assistant.audio.io import load_audio
from assistant.events import AvatarVideo
from assistant.talking_head.base import RenderSettings, fit_frame, load_avatar, video_from_writer
from assistant.talking_head.face import FaceBox, detect_faces, pick_face
from assistant.talking_head.light_rig import FaceRig
from assistant.video import FrameWriter

log = logging.getLogger(__name__)

ANALYSIS_RATE_HZ = 16000
LEAD_S = 0.01  # the mouth moves a little before the sound it makes
WINDOW_FRAMES = 0.75  # RMS window length in video frames: 30 ms at 25 fps (a longer one opens the mouth early)
ATTACK_S = 0.02  # opening time constant
RELEASE_S = 0.04  # closing time constant: lips close more slowly than they open
SHAPE_SMOOTH_S = 0.06
GATE_DB = -22.0  # below the loud speech level by this much the mouth stays shut (breath, room noise)
COMPRESS = 0.7  # opening = level ** 0.7: quiet syllables still open the mouth visibly
FFT_SIZE = 512  # 32 ms at 16 kHz for the spectral centroid


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
