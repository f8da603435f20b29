"""The speech the live stream is to say, on the stream's own sample timeline, with the mouth targets for each frame.

Each clip (one reply segment's audio) is placed on the stream's absolute sample clock: right after the clip before
it when that one is still playing (no gap between sentences), else at the next frame tick. When it is queued its
mouth targets (opening and shape per video frame, `assistant.talking_head.light.mouth_targets`) are computed for
exactly the frames it overlaps, so a clip that starts between two ticks still moves the mouth in step with its
sound. The stream's clock then takes one frame's audio and targets at a time (`take`). A cancel fades the sound
out over a few milliseconds from the current frame and drops the rest (`cancel`), reporting how much of each clip
was really said.

Needs numpy and the light engine's audio analysis.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assistant.audio.io import resample
from assistant.talking_head.light import ANALYSIS_RATE_HZ, mouth_targets


@dataclass
class Clip:
    """One piece of speech on the stream timeline."""

    key: Any  # who it belongs to, e.g. (turn_id, segment_index)
    text: str
    samples: np.ndarray = field(repr=False)  # (n,) float32 at the stream's audio rate
    start: int  # absolute sample index of its first sample
    end: int  # one past its last sample (moves earlier on a cancel)
    started: bool = False
    finished: bool = False

    @property
    def length(self) -> int:
        return len(self.samples)


@dataclass(frozen=True)
class ClipEvent:
    """A clip began or ended within a frame. `played_s` is how much of it was said (all of it unless cancelled)."""

    kind: str  # "started" or "finished"
    key: Any
    text: str
    frame: int
    played_s: float
    duration_s: float
    cancelled: bool = False


@dataclass(frozen=True)
class FrameSpeech:
    """One frame's share of the speech: its audio and the mouth targets the audio asks for."""

    audio: np.ndarray  # (samples_per_frame,) float32
    level: float  # mouth opening target in [0, 1]
    wide: float  # mouth shape target in [-1, 1]
    events: tuple[ClipEvent, ...]
    speaking: bool  # some clip sounds in this frame
    clip: tuple[Any, int] | None = None  # (key, frame within the clip) of the clip sounding at this frame's middle


class SpeechQueue:
    """Thread-safe: `add` and `cancel` from any thread, `take` from the stream's clock thread."""

    def __init__(self, sample_rate_hz: int, fps: float) -> None:
        spf = sample_rate_hz / fps
        if abs(spf - round(spf)) > 1e-9:
            raise ValueError(
                f"audio rate {sample_rate_hz} Hz is not a whole number of samples per frame at {fps} fps; "
                "use 48000 Hz with 24, 25, 30, 50 or 60 fps"
            )
        self.rate = int(sample_rate_hz)
        self.fps = float(fps)
        self.spf = int(round(spf))
        self._lock = threading.Lock()
        self._clips: list[Clip] = []
        self._targets: dict[int, tuple[float, float]] = {}  # frame -> (level, wide)
        self._next_frame = 0  # the frame `take` will hand out next
        self._fade: tuple[int, int] | None = None  # (first sample, samples) of a fade-out in progress

    @property
    def pending(self) -> bool:
        with self._lock:
            return any(not c.finished for c in self._clips)

    def queued_s(self) -> float:
        """Seconds of speech queued from the current frame on."""
        with self._lock:
            now = self._next_frame * self.spf
            end = max((c.end for c in self._clips if not c.finished), default=now)
            return max(0, end - now) / self.rate

    def add(self, samples: np.ndarray, key: Any, text: str = "") -> Clip:
        """Queue mono float32 audio already at the stream rate; returns the clip with its place on the timeline."""
        x = np.ascontiguousarray(samples, np.float32).reshape(-1)
        # Mouth targets from a 16 kHz copy: the analysis constants (FFT size, bands) are tuned for that rate.
        analysis = resample(x, self.rate, ANALYSIS_RATE_HZ) if self.rate != ANALYSIS_RATE_HZ else x
        with self._lock:
            now = self._next_frame * self.spf
            busy_until = max((c.end for c in self._clips if not c.finished), default=0)
            start = max(now, busy_until)
            clip = Clip(key, text, x, start, start + len(x))
            self._clips.append(clip)
            f0 = start // self.spf
            f1 = max(f0 + 1, math.ceil(clip.end / self.spf))
            offset_s = (start - f0 * self.spf) / self.rate
            t = mouth_targets(analysis, ANALYSIS_RATE_HZ, self.fps, f1 - f0, offset_s)
            for k in range(f1 - f0):
                old = self._targets.get(f0 + k)
                level, wide = float(t.level[k]), float(t.wide[k])
                if old is None or level > old[0]:
                    self._targets[f0 + k] = (level, wide)
        return clip

    def cancel(self, fade_samples: int) -> list[ClipEvent]:
        """Fade out from the next frame over `fade_samples` and drop everything after; returns a "finished"
        event (cancelled=True) for every clip that had not finished, with how much of it was said."""
        with self._lock:
            now = self._next_frame * self.spf
            stop = now + fade_samples
            events = []
            for c in self._clips:
                if c.finished:
                    continue
                played = min(max(0, stop - c.start), c.length)
                c.end = c.start + played
                if played == 0:  # never reached the speaker: gone
                    c.finished = True
                    events.append(
                        ClipEvent("finished", c.key, c.text, self._next_frame, 0.0, c.length / self.rate, True)
                    )
            self._fade = (now, fade_samples)
            for f in [f for f in self._targets if f * self.spf >= now]:
                del self._targets[f]
            self._clips = [c for c in self._clips if not c.finished]
            return events

    def take(self) -> FrameSpeech:
        """The next frame's audio, mouth targets and clip events."""
        with self._lock:
            n = self._next_frame
            self._next_frame += 1
            a, b = n * self.spf, (n + 1) * self.spf
            audio = np.zeros(self.spf, np.float32)
            events: list[ClipEvent] = []
            speaking = False
            clip = None
            middle = a + self.spf // 2
            for c in self._clips:
                if c.start <= middle < c.end:
                    clip = (c.key, int(round((a - c.start) / self.spf)))
                if c.end <= a and c.started:
                    continue
                lo, hi = max(a, c.start), min(b, c.end)
                if not c.started and c.start < b:
                    c.started = True
                    events.append(ClipEvent("started", c.key, c.text, n, 0.0, c.length / self.rate))
                if hi > lo:
                    audio[lo - a : hi - a] += c.samples[lo - c.start : hi - c.start]
                    speaking = True
                if c.end <= b and c.started:
                    c.finished = True
                    cancelled = c.end < c.start + c.length
                    events.append(
                        ClipEvent(
                            "finished", c.key, c.text, n, (c.end - c.start) / self.rate, c.length / self.rate,
                            cancelled,
                        )
                    )  # fmt: skip
            if self._fade is not None:
                start, length = self._fade
                pos = np.arange(a, b) - start
                gain = np.clip(1.0 - pos / max(1, length), 0.0, 1.0).astype(np.float32)
                audio *= gain
                if b >= start + length:
                    self._fade = None
            self._clips = [c for c in self._clips if not c.finished]
            # Targets are only ever added for frames >= the one being taken, so popping frame n leaves none behind.
            level, wide = self._targets.pop(n, (0.0, 0.0))
            return FrameSpeech(audio, level, wide, tuple(events), speaking, clip)
