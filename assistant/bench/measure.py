"""Measure what a user hears and sees from the recording rig's output: sound onsets and extra silences at the
speaker, black, frozen and moving frames on screen, and the offset between mouth motion and loudness.

Pure analysis of numpy arrays (OpenCV for frame statistics). The only subprocess is decoding a recorded video through
`assistant.video` (`video_file_analysis`). Times are seconds from the first given sample or frame; levels are dBFS
of the RMS over 10 ms windows (a full-scale sine is -3 dBFS); frame differences are mean absolute differences of
8-bit luma (0-255).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import cv2
import numpy as np

WINDOW_MS = 10.0  # RMS window for every level measurement
FINE_HOP_MS = 1.0  # hop of the envelopes used to align audio and to time silences
SILENCE_DBFS = -45.0  # below this a 10 ms window is silence (speech sits around -30..-10 dBFS)
FROZEN_DIFF = (
    0.02  # mean |diff| below this = the same picture (a lossless capture of a repeated frame gives 0.0)
)
MOTION_DIFF = 0.05  # mean |diff| above this = something moved (a blink on a 256 px face gives ~0.3)
BLACK_MEAN_BELOW = 16.0  # video black is 16 in limited range, 0 in full range
MOUTH_DARK_LUMA = 70  # the open mouth's inside is darker than this; lips, teeth and tongue are not (the light
# engine on the default avatar: 0, 7 and 14 % of its mouth region at opening 0, 0.5 and 1)
BLACK_STD_BELOW = 5.0


# --- audio ---------------------------------------------------------------------------------------------------


class SoundInterval(NamedTuple):
    start_s: float
    end_s: float


def as_mono_float(samples: np.ndarray) -> np.ndarray:
    """int16/int32/float samples, mono (n,) or (n, channels), as float64 mono in [-1, 1]."""
    x = np.asarray(samples)
    if x.dtype == np.int16:
        x = x.astype(np.float64) / 32768.0
    elif x.dtype == np.int32:
        x = x.astype(np.float64) / 2147483648.0
    else:
        x = x.astype(np.float64)
    return x.mean(axis=1) if x.ndim == 2 else x


def rms_envelope(
    samples: np.ndarray, rate_hz: float, window_ms: float = WINDOW_MS, hop_ms: float = WINDOW_MS
) -> np.ndarray:
    """RMS of `window_ms` windows every `hop_ms`; value k covers [k * hop, k * hop + window). Linear, 1.0 = full scale."""
    x = as_mono_float(samples)
    win = max(1, round(window_ms * rate_hz / 1000))
    if len(x) < win:
        return np.zeros(0)
    count = int((len(x) - win) * 1000 / (hop_ms * rate_hz)) + 1
    starts = np.round(np.arange(count) * hop_ms * rate_hz / 1000).astype(np.int64)
    starts = starts[starts + win <= len(x)]
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    power = (csum[starts + win] - csum[starts]) / win
    return np.sqrt(np.maximum(power, 0.0))


def to_dbfs(rms: np.ndarray | float) -> np.ndarray:
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Index ranges [i0, i1) where `mask` is True."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def sound_onsets(
    samples: np.ndarray,
    rate_hz: float,
    threshold_dbfs: float = SILENCE_DBFS,
    min_silence_ms: float = 100.0,
    min_sound_ms: float = 0.0,
) -> list[SoundInterval]:
    """Intervals of sound: runs of 10 ms windows at or above `threshold_dbfs`, joined across silences shorter than
    `min_silence_ms`, dropping those shorter than `min_sound_ms`. Resolution: 10 ms."""
    step_s = WINDOW_MS / 1000
    loud = to_dbfs(rms_envelope(samples, rate_hz)) >= threshold_dbfs
    merged: list[list[int]] = []
    for i0, i1 in _runs(loud):
        if merged and (i0 - merged[-1][1]) * step_s < min_silence_ms / 1000:
            merged[-1][1] = i1
        else:
            merged.append([i0, i1])
    return [
        SoundInterval(i0 * step_s, i1 * step_s)
        for i0, i1 in merged
        if (i1 - i0) * step_s >= min_sound_ms / 1000
    ]


def first_sound_after(
    samples: np.ndarray,
    rate_hz: float,
    t_s: float,
    threshold_dbfs: float = SILENCE_DBFS,
    min_silence_ms: float = 100.0,
) -> float | None:
    """The first sound onset at or after `t_s` (windows aligned to t_s), or None. A sound already going on at
    `t_s` is not an onset: its end (a silence of `min_silence_ms`) is waited for first."""
    start = max(0, round(t_s * rate_hz))
    intervals = sound_onsets(samples[start:], rate_hz, threshold_dbfs, min_silence_ms)
    if intervals and intervals[0].start_s == 0.0:
        intervals = intervals[1:]
    return start / rate_hz + intervals[0].start_s if intervals else None


@dataclass(frozen=True)
class Gap:
    """A silence at the speaker that the reply's own audio does not have (or has shorter)."""

    at_s: float  # where the silence starts in the recording
    reference_at_s: float  # the matching point in the reference audio
    silence_ms: float  # the silence as recorded
    expected_ms: float  # the reference's own silence there (0 inside a sound)
    extra_ms: float  # silence_ms - expected_ms


@dataclass(frozen=True)
class SpeakerGaps:
    gaps: tuple[Gap, ...]  # extra silences longer than the tolerance, in order
    max_gap_ms: float  # the largest extra silence, 0.0 if none
    total_extra_ms: float
    lag_s: float  # where the reference's sample 0 falls in the recording
    alignment_correlation: float  # normalised envelope correlation of the coarse alignment (1.0 = same shape)
    gain_db: float  # recording level minus reference level
    reply_start_s: float  # first sound of the reply in the recording
    reply_end_s: float  # end of its last sound
    threshold_dbfs: float
    tolerance_ms: float


def _ncc_scan(signal: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of `template` at every position of `signal` (len(signal) - len(template) + 1)."""
    n = len(template)
    t = template - template.mean()
    t_norm = np.sqrt(np.sum(t * t))
    if n == 0 or len(signal) < n or t_norm == 0:
        return np.zeros(max(0, len(signal) - n + 1))
    size = 1 << int(np.ceil(np.log2(len(signal) + n)))
    num = np.fft.irfft(np.fft.rfft(signal, size) * np.conj(np.fft.rfft(t, size)), size)[: len(signal) - n + 1]
    csum = np.concatenate([[0.0], np.cumsum(signal)])
    csum2 = np.concatenate([[0.0], np.cumsum(signal * signal)])
    sums = csum[n:] - csum[:-n]
    var = np.maximum(csum2[n:] - csum2[:-n] - sums * sums / n, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / (np.sqrt(var) * t_norm)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _ncc_at(rec: np.ndarray, ref: np.ndarray, rec_start: int, ref_start: int, length: int) -> float:
    if rec_start < 0 or ref_start < 0:
        return -1.0
    a = rec[rec_start : rec_start + length]
    b = ref[ref_start : ref_start + length]
    m = min(len(a), len(b))
    if m < 20:
        return -1.0
    a, b = a[:m] - a[:m].mean(), b[:m] - b[:m].mean()
    denom = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / denom) if denom > 0 else -1.0


def _best_local_offset(
    rec: np.ndarray, ref: np.ndarray, rec_start: int, candidates: Sequence[int], radius: int, length: int
) -> int:
    """The offset (rec index - ref index) near one of `candidates` that best matches the next `length` samples
    after `rec_start`; the first candidate when nothing correlates."""
    best, best_c = candidates[0], 0.3  # below this the envelopes do not constrain the offset
    for center in candidates:
        for off in range(center - radius, center + radius + 1):
            c = _ncc_at(rec, ref, rec_start, rec_start - off, length)
            if c > best_c + 1e-6:
                best, best_c = off, c
    return best


@dataclass(frozen=True)
class _Walk:
    """One direction of the walk: envelopes (1 ms hop) of the recording and the reference, forwards or reversed."""

    rec_env: np.ndarray
    ref_env: np.ndarray
    rec_silent: list[tuple[int, int]]  # silent runs of the recording, as window index ranges
    ref_silent: list[tuple[int, int]]  # silent runs of the reference (threshold moved by the gain)
    ref_quiet: list[tuple[int, int]]  # quiet runs of the reference (6 dB above that)


def _match(runs: list[tuple[int, int]], r: int, length: int, tol: int, win: int) -> tuple[int | None, int]:
    """The run starting by r + tol that overlaps [r, r + length] most: (its end, the overlap), or (None, 0)."""
    best, expected = None, 0
    for q0, q1 in runs:
        if q0 > r + tol:
            break
        q_end = q1 - 1 + win
        overlap = min(q_end, r + length) - max(q0, r)
        if overlap > expected:
            best, expected = q_end, overlap
    return best, expected


def _walk(
    w: _Walk, offset: int, from_idx: int, ref_stop: int, tol: int, win: int, look: int, anchor_offset: int | None = None
) -> tuple[list[tuple[int, int, int, int]], int]:
    """Follow the recording's silences from `from_idx` until the mapped reference position reaches `ref_stop`.

    Returns (rec_start, length, ref_start, expected) of each silence longer than expected + tol, in ms indices,
    and the offset (rec index - ref index) after the last silence."""
    found = []
    for i0, i1 in w.rec_silent:
        if i0 < from_idx:
            continue
        r = i0 - offset
        if r >= ref_stop - tol:
            break  # the silence after the reply's last sound
        length = i1 - 1 + win - i0  # silent windows [i0, i1) span i0 .. (i1 - 1) + window
        # The reference's quiet run here starts where this silence starts: a hole inserted into or at either end
        # of a pause makes one longer silence from the pause's start; a hole inside a sound is silence where the
        # reference has none (a pause that begins later is heard after the delayed sound, not in this silence).
        # Its part inside the silence is what the silence should have been. Where the reference has no silence
        # but is quiet (a soft sound a gain error can put under the threshold), the quiet run stands in.
        best, expected = _match(w.ref_silent, r, length, tol, win)
        if best is None:
            best, expected = _match(w.ref_quiet, r, length, tol, win)
        if length - expected > tol and anchor_offset is not None and anchor_offset != offset:
            # The running offset can be misled by a local re-alignment. When the recording matches the reference at
            # the anchor's offset on both sides of this silence (so nothing was inserted or lost here), the
            # reference's own pause at that offset is what the silence should be.
            end = i1 - 1 + win
            ra = i0 - anchor_offset
            both_sides = (
                i0 - look >= 0 and ra - look >= 0
                and _ncc_at(w.rec_env, w.ref_env, i0 - look, ra - look, look) > 0.9
                and _ncc_at(w.rec_env, w.ref_env, end, end - anchor_offset, look) > 0.9
            )  # fmt: skip
            if both_sides:
                _, expected_anchor = _match(w.ref_silent, ra, length, tol, win)
                expected = max(expected, expected_anchor)
        if length - expected > tol:
            found.append((i0, length, r, expected))
        resume_at = i1 - 1 + win  # where sound comes back in the recording
        # After a pause the sound resumes with the pause's end; after a hole inside a sound, the audio was either
        # delayed by the hole or lost: the next 300 ms decide.
        candidates = [resume_at - best] if best is not None else [offset + length, offset]
        offset = _best_local_offset(w.rec_env, w.ref_env, resume_at, candidates, max(3, tol // 2), look)
    return found, offset


def speaker_gaps(
    recorded: np.ndarray,
    rate_hz: float,
    reference_segments: np.ndarray | Sequence[np.ndarray],
    reference_rate_hz: float | None = None,
    threshold_dbfs: float = SILENCE_DBFS,
    tolerance_ms: float = 20.0,
    search_from_s: float = 0.0,
    search_to_s: float | None = None,
) -> SpeakerGaps:
    """Silences inside a reply at the speaker that are not in the reply's own speech audio.

    `reference_segments`: what was sent to play, one array or several pieces played back to back, at
    `reference_rate_hz` (default `rate_hz`). The reply is searched for in the recording between `search_from_s` and
    `search_to_s`.

    Method: RMS envelopes (10 ms windows, 1 ms hop) of both. Coarse alignment: the whole reference against the
    recording at 10 ms steps by normalised cross-correlation (gain and noise floor drop out); its peak puts the
    largest undisturbed stretch in place. The anchor is the 0.4 s of reference that matches best there (refined at
    1 ms), and the recording's level over the reference's there gives the gain, which moves the reference's
    silence threshold. From the anchor the recording's silences are followed forwards to the reply's end and, on
    the time-reversed signals, backwards to its start: each is mapped onto the reference through the running
    offset; the reference's silence starting there is its expected length (or, where it has none, its quiet run:
    within 6 dB of the threshold, so soft sounds near the threshold are not counted as holes), and the excess
    beyond `tolerance_ms` is a gap. After each silence the offset is re-found from the next 300 ms (the audio after
    a hole may be delayed, or lost), so later silences map correctly. Silences are timed to ~1 ms."""
    ref_rate = reference_rate_hz or rate_hz
    pieces = [reference_segments] if isinstance(reference_segments, np.ndarray) else list(reference_segments)
    ref = np.concatenate([as_mono_float(p) for p in pieces]) if pieces else np.zeros(0)
    rec = as_mono_float(recorded)
    fit = _align(rec, rate_hz, ref, ref_rate, threshold_dbfs, search_from_s, search_to_s)
    return _follow_silences(rec, rate_hz, ref, ref_rate, fit, threshold_dbfs, tolerance_ms)


@dataclass(frozen=True)
class _Alignment:
    """Where the reference sits in the recording (indices of 1 ms envelope hops)."""

    r0: int  # the reference's first and last loud window, its end exclusive
    r1: int
    offset: int  # recording index - reference index at the anchor
    anchor: int  # the reference's loudest point in the best-matching 0.4 s
    correlation: float  # the coarse alignment's normalised correlation
    gain_db: float  # recording level minus reference level


def _align(
    rec: np.ndarray,
    rate_hz: float,
    ref: np.ndarray,
    ref_rate: float,
    threshold_dbfs: float,
    search_from_s: float,
    search_to_s: float | None,
) -> _Alignment:
    """`speaker_gaps`' coarse alignment, its anchor and the gain (see there)."""
    hop_s = FINE_HOP_MS / 1000
    coarse = round(WINDOW_MS / FINE_HOP_MS)  # fine hops per coarse step
    rec_env = rms_envelope(rec, rate_hz, WINDOW_MS, FINE_HOP_MS)
    ref_env = rms_envelope(ref, ref_rate, WINDOW_MS, FINE_HOP_MS)
    ref_loud = np.flatnonzero(to_dbfs(ref_env) >= threshold_dbfs)
    if len(ref_loud) == 0 or len(rec_env) == 0:
        raise ValueError("speaker_gaps needs a reference with sound and a non-empty recording")
    r0, r1 = int(ref_loud[0]), int(ref_loud[-1]) + 1

    # Coarse: the whole reference at 10 ms steps over the search range.
    lo = int(search_from_s / hop_s)
    hi = len(rec_env) if search_to_s is None else min(len(rec_env), int(search_to_s / hop_s))
    scores = _ncc_scan(rec_env[lo:hi:coarse], ref_env[r0:r1:coarse])
    if len(scores) == 0:
        raise ValueError("The recording's search range is shorter than the reference")
    correlation = float(scores.max())
    coarse_offset = lo + int(np.argmax(scores)) * coarse - r0  # rec index = ref index + offset
    # Anchor: the best-matching 0.4 s of the reference at that offset, refined at 1 ms.
    span = min(r1 - r0, int(0.4 / hop_s))
    starts = range(r0, max(r0, r1 - span) + 1, int(0.1 / hop_s))
    anchor = max(starts, key=lambda s: _ncc_at(rec_env, ref_env, s + coarse_offset, s, span))
    offset = _best_local_offset(rec_env, ref_env, anchor + coarse_offset, [coarse_offset], coarse, span)
    seg_ref = ref_env[anchor : anchor + span]
    seg_rec = rec_env[anchor + offset : anchor + offset + span]
    n = min(len(seg_ref), len(seg_rec))
    seg_ref, seg_rec = seg_ref[:n], seg_rec[:n]
    loud = seg_ref >= seg_ref.max() * 10 ** (-30 / 20)  # within 30 dB of the peak
    gain_db = float(
        to_dbfs(np.sqrt(np.mean(seg_rec[loud] ** 2))) - to_dbfs(np.sqrt(np.mean(seg_ref[loud] ** 2)))
    )
    anchor = int(anchor + np.argmax(seg_ref))  # the loudest point: never inside a silence of a good match
    return _Alignment(r0, r1, offset, anchor, correlation, gain_db)


def _follow_silences(
    rec: np.ndarray,
    rate_hz: float,
    ref: np.ndarray,
    ref_rate: float,
    fit: _Alignment,
    threshold_dbfs: float,
    tolerance_ms: float,
) -> SpeakerGaps:
    """`speaker_gaps`' walks from the anchor, forwards and (on the reversed signals) backwards (see there)."""
    hop_s = FINE_HOP_MS / 1000
    win = round(WINDOW_MS / FINE_HOP_MS)  # a window spans this many hops
    r0, r1, offset, anchor = fit.r0, fit.r1, fit.offset, fit.anchor
    tol = round(tolerance_ms / FINE_HOP_MS)
    look = round(0.3 / hop_s)
    ref_threshold = threshold_dbfs - fit.gain_db

    def walk_of(rec_x: np.ndarray, ref_x: np.ndarray) -> _Walk:
        rec_e = rms_envelope(rec_x, rate_hz, WINDOW_MS, FINE_HOP_MS)
        ref_e = rms_envelope(ref_x, ref_rate, WINDOW_MS, FINE_HOP_MS)
        ref_db = to_dbfs(ref_e)
        return _Walk(
            rec_e, ref_e, _runs(to_dbfs(rec_e) < threshold_dbfs), _runs(ref_db < ref_threshold),
            _runs(ref_db < ref_threshold + 6.0),
        )  # fmt: skip

    forward, fwd_offset = _walk(walk_of(rec, ref), offset, anchor + offset, r1, tol, win, look, offset)
    # Backwards: the same walk on the reversed signals. Times flip as t -> T - t (T: the signal's length in ms), so
    # the offset becomes T_rec - T_ref - offset and the reply's start r0 becomes the reversed reference's end.
    t_rec, t_ref = len(rec) / rate_hz / hop_s, len(ref) / ref_rate / hop_s
    rev_offset = round(t_rec - t_ref - offset)
    backward, bwd_rev_offset = _walk(
        walk_of(rec[::-1], ref[::-1]), rev_offset, round(t_rec - anchor - offset), round(t_ref - r0),
        tol, win, look, rev_offset,
    )  # fmt: skip
    start_offset = t_rec - t_ref - bwd_rev_offset
    gaps = [
        Gap(
            at_s=(t_rec - i0 - length) * hop_s,
            reference_at_s=(t_ref - r - length) * hop_s,
            silence_ms=length * FINE_HOP_MS,
            expected_ms=expected * FINE_HOP_MS,
            extra_ms=(length - expected) * FINE_HOP_MS,
        )
        for i0, length, r, expected in reversed(backward)
    ] + [
        Gap(i0 * hop_s, r * hop_s, length * FINE_HOP_MS, expected * FINE_HOP_MS, (length - expected) * FINE_HOP_MS)
        for i0, length, r, expected in forward
    ]
    extras = [g.extra_ms for g in gaps]
    return SpeakerGaps(
        gaps=tuple(gaps),
        max_gap_ms=max(extras, default=0.0),
        total_extra_ms=float(sum(extras)),
        lag_s=start_offset * hop_s,
        alignment_correlation=fit.correlation,
        gain_db=fit.gain_db,
        reply_start_s=(r0 + start_offset) * hop_s,
        reply_end_s=(r1 - 1 + win + fwd_offset) * hop_s,
        threshold_dbfs=threshold_dbfs,
        tolerance_ms=tolerance_ms,
    )


# --- video ---------------------------------------------------------------------------------------------------


class FrozenRun(NamedTuple):
    start_s: float
    duration_s: float  # from the first frame of the run until the next different frame
    frames: int


@dataclass(frozen=True)
class VideoAnalysis:
    """Per-frame statistics of a video; arrays have one value per frame. Differences are to the previous frame
    (NaN for the first); mouth values are NaN without a mouth box."""

    fps: float
    frame_times_s: np.ndarray  # (N,) seconds from the first frame
    mean_luma: np.ndarray  # (N,) 0-255
    std_luma: np.ndarray  # (N,)
    black: np.ndarray  # (N,) bool
    diff: np.ndarray  # (N,) mean |luma - previous luma| over the whole frame
    mouth_diff: np.ndarray  # (N,) the same over the mouth box
    mouth_mean_luma: np.ndarray  # (N,) the mouth box's mean luma
    mouth_box: tuple[int, int, int, int] | None
    mouth_dark: np.ndarray | None = None  # (N,) share of the mouth box darker than MOUTH_DARK_LUMA: the opening

    @property
    def frames(self) -> int:
        return len(self.mean_luma)

    def _window(self, after_s: float, before_s: float) -> np.ndarray:
        return (self.frame_times_s >= after_s) & (self.frame_times_s < before_s)

    def black_frames(self, after_s: float = 0.0, before_s: float = float("inf")) -> int:
        """How many black frames from `after_s` (e.g. after start-up) until `before_s`."""
        return int(np.count_nonzero(self.black & self._window(after_s, before_s)))

    def _series(self, region: Literal["frame", "mouth"]) -> np.ndarray:
        return self.mouth_diff if region == "mouth" else self.diff

    def frozen_runs(
        self,
        min_s: float = 0.5,
        threshold: float = FROZEN_DIFF,
        after_s: float = 0.0,
        before_s: float = float("inf"),
        region: Literal["frame", "mouth"] = "frame",
    ) -> list[FrozenRun]:
        """Runs of consecutive (nearly) identical frames lasting longer than `min_s`, within [after_s, before_s)."""
        t = self.frame_times_s
        same = self._series(region) < threshold  # frame i equals frame i - 1
        inside = self._window(after_s, before_s)
        out = []
        for i0, i1 in _runs(same & inside):
            first, last = i0 - 1 if i0 > 0 and inside[i0 - 1] else i0, i1 - 1
            end = t[last + 1] if last + 1 < len(t) else t[last] + 1.0 / self.fps
            duration = float(end - t[first])
            if duration > min_s:
                out.append(FrozenRun(float(t[first]), duration, last - first + 1))
        return out

    def max_frozen_s(self, **kwargs: object) -> float:
        return max((r.duration_s for r in self.frozen_runs(min_s=0.0, **kwargs)), default=0.0)  # type: ignore[arg-type]

    def motion_present(
        self,
        t0_s: float,
        t1_s: float,
        threshold: float = MOTION_DIFF,
        region: Literal["frame", "mouth"] = "frame",
    ) -> bool:
        """Whether any frame in [t0_s, t1_s) differs from the one before it by more than `threshold`."""
        values = self._series(region)[self._window(t0_s, t1_s)]
        return bool(np.any(values[~np.isnan(values)] > threshold))

    def mouth_opening(self) -> np.ndarray:
        """The share of the mouth box darker than MOUTH_DARK_LUMA (the open mouth's inside), 0-255: rises as the
        mouth opens; for av_offset_ms(mode="level"). Not the box's mean luma: teeth and a tongue that show as the
        mouth opens wide make that rise and fall again (a first reply measured 72 ms and -101 ms off with it)."""
        if self.mouth_dark is None:
            return 255.0 - self.mouth_mean_luma
        return 255.0 * self.mouth_dark


def video_frames_analysis(
    frames: Iterable[np.ndarray],
    fps: float,
    mouth_box: tuple[int, int, int, int] | None = None,
    frame_times_s: Sequence[float] | None = None,
    black_mean_below: float = BLACK_MEAN_BELOW,
    black_std_below: float = BLACK_STD_BELOW,
) -> VideoAnalysis:
    """Statistics of each frame ((H, W, 3) uint8 BGR or (H, W) gray), streamed: frames are not kept.

    `mouth_box` is (x, y, w, h) in frame pixels. `frame_times_s` are the frames' own times (e.g. a ScreenRecorder's
    `frame_offsets_s`); default i / fps."""
    means, stds, diffs, mouth_diffs, mouth_means, mouth_dark = [], [], [], [], [], []
    prev: np.ndarray | None = None
    for frame in frames:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else np.asarray(frame, np.uint8)
        mean, std = cv2.meanStdDev(gray)
        means.append(float(mean[0, 0]))
        stds.append(float(std[0, 0]))
        diffs.append(float(cv2.absdiff(gray, prev).mean()) if prev is not None else np.nan)
        if mouth_box is not None:
            x, y, w, h = mouth_box
            mouth = gray[y : y + h, x : x + w]
            mouth_means.append(float(mouth.mean()))
            mouth_dark.append(float(np.count_nonzero(mouth < MOUTH_DARK_LUMA)) / max(mouth.size, 1))
            mouth_diffs.append(
                float(cv2.absdiff(mouth, prev[y : y + h, x : x + w]).mean()) if prev is not None else np.nan
            )
        else:
            mouth_means.append(np.nan)
            mouth_dark.append(np.nan)
            mouth_diffs.append(np.nan)
        prev = gray
    count = len(means)
    times = np.arange(count) / fps if frame_times_s is None else np.asarray(frame_times_s, np.float64)[:count]
    if len(times) < count - 2:
        raise ValueError(f"{count} frames but only {len(times)} frame times")
    if len(times) < count:  # the recorder's last packet or two can be decoded without a timestamp listed
        count = len(times)
        means, stds, diffs = means[:count], stds[:count], diffs[:count]
        mouth_diffs, mouth_means, mouth_dark = mouth_diffs[:count], mouth_means[:count], mouth_dark[:count]
    mean_arr, std_arr = np.array(means), np.array(stds)
    return VideoAnalysis(
        fps=fps,
        frame_times_s=times,
        mean_luma=mean_arr,
        std_luma=std_arr,
        black=(mean_arr < black_mean_below) & (std_arr < black_std_below),
        diff=np.array(diffs),
        mouth_diff=np.array(mouth_diffs),
        mouth_mean_luma=np.array(mouth_means),
        mouth_box=mouth_box,
        mouth_dark=np.array(mouth_dark),
    )


def video_file_analysis(
    path: str | Path,
    mouth_box: tuple[int, int, int, int] | None = None,
    frame_times_s: Sequence[float] | None = None,
) -> VideoAnalysis:
    """`video_frames_analysis` of a video file, decoded with ffmpeg (needs ffmpeg/ffprobe)."""
    from assistant.video import probe, read_frames  # here: the rest of this module needs no ffmpeg

    return video_frames_analysis(read_frames(path), probe(path).fps, mouth_box, frame_times_s)


# --- audio against video -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AVOffset:
    offset_ms: float  # > 0: the mouth moves after the sound (video late)
    peak_correlation: float  # Pearson correlation at the best lag
    max_lag_ms: float
    at_limit: bool  # the best lag is at the edge of the search: the true offset may be larger
    mode: str


def av_offset_ms(
    mouth_series: np.ndarray,
    mouth_fps: float,
    audio_envelope: np.ndarray,
    env_rate_hz: float,
    max_lag_ms: float = 300.0,
    mode: Literal["level", "change"] = "level",
    mouth_times_s: Sequence[float] | None = None,
) -> AVOffset:
    """Offset between mouth activity on screen and loudness at the speaker, by cross-correlation.

    `mouth_series`: one value per frame that rises with mouth opening (`VideoAnalysis.mouth_opening()`), at
    `mouth_times_s` (default i / mouth_fps; a video file's frame i is on screen from i / fps to (i + 1) / fps, so
    give (i + 0.5) / fps: its start reads the mouth half a frame early. A screen grab's own times are right); with
    `mode="change"` a frame-difference series (`mouth_diff`) instead, compared with the change of loudness over one
    frame. `audio_envelope`: value k is the loudness over
    [k, k + 1) / env_rate_hz (what `rms_envelope` returns with window = hop), on the same time origin as the frames.

    Both are put on a 1 ms grid (frames linearly interpolated between their times) and the Pearson correlation is
    taken at every lag in +-max_lag_ms; the peak is refined by a parabola through its neighbours.

    Compare like with like. A frame difference (a change) against the loudness (a level) is biased: the change
    peaks where the mouth opens and where it closes, the loudness in between, and speech, like the mouth drawn from
    it, rises faster than it falls, so the change's weight sits at the syllables' starts and the peak comes out
    40-55 ms early with no delay at all (tests/unit/test_measure.py shows it on a known delay; on a recording of
    the app it read -44..-55 ms where the level read +13..+21). `av_onset_offsets` is the independent check."""
    step_s = 0.001
    m = np.asarray(mouth_series, np.float64)
    mt = (
        np.arange(len(m)) / mouth_fps
        if mouth_times_s is None
        else np.asarray(mouth_times_s, np.float64)[: len(m)]
    )
    keep = ~np.isnan(m)
    m, mt = m[keep], mt[keep]
    env = np.asarray(audio_envelope, np.float64)
    et = (np.arange(len(env)) + 0.5) / env_rate_hz
    if len(m) < 3 or len(env) < 3:
        raise ValueError("av_offset_ms needs at least 3 frames and 3 envelope values")
    t0, t1 = max(mt[0], et[0]), min(mt[-1], et[-1])
    if t1 - t0 < 2 * max_lag_ms / 1000:
        raise ValueError(
            f"The video and audio overlap for {max(t1 - t0, 0):.2f} s: too short for +-{max_lag_ms} ms"
        )
    grid = np.arange(t0, t1, step_s)
    video = np.interp(grid, mt, m)
    audio = np.interp(grid, et, env)
    if mode == "change":
        frame = max(1, round(1.0 / (mouth_fps * step_s)))
        audio = np.abs(audio - np.concatenate([np.full(frame, audio[0]), audio[:-frame]]))
    max_lag = round(max_lag_ms)
    lags = np.arange(-max_lag, max_lag + 1)
    corr = np.empty(len(lags))
    for k, lag in enumerate(lags):
        # video(t) against audio(t - lag): a late video matches earlier audio.
        v = video[max(lag, 0) : len(video) + min(lag, 0)]
        a = audio[max(-lag, 0) : len(audio) - max(lag, 0)]
        v, a = v - v.mean(), a - a.mean()
        denom = np.sqrt(np.sum(v * v) * np.sum(a * a))
        corr[k] = np.sum(v * a) / denom if denom > 0 else 0.0
    best = int(np.argmax(corr))
    shift = 0.0
    if 0 < best < len(corr) - 1:
        y0, y1, y2 = corr[best - 1], corr[best], corr[best + 1]
        denom = y0 - 2 * y1 + y2
        shift = 0.5 * (y0 - y2) / denom if denom < 0 else 0.0
    return AVOffset(
        offset_ms=float(lags[best] + shift) * step_s * 1000,
        peak_correlation=float(corr[best]),
        max_lag_ms=float(max_lag_ms),
        at_limit=best in (0, len(corr) - 1),
        mode=mode,
    )


@dataclass(frozen=True)
class AVOnsets:
    """Mouth against sound at each onset after a silence (the clapperboard's way: no correlation involved)."""

    offsets_ms: tuple[float, ...]  # per onset: the mouth's half-rise minus the sound's half-rise (> 0: video late)
    median_ms: float | None  # None without a usable onset
    fraction: float  # the share of each rise at which both are timed

    @property
    def count(self) -> int:
        return len(self.offsets_ms)


def _rise_time(y: np.ndarray, t: np.ndarray, base: float, peak: float, fraction: float, i0: int, i1: int):
    """The first time in y[i0:i1] (on grid t) that reaches base + fraction * (peak - base), interpolated between
    samples; None if it never does."""
    level = base + fraction * (peak - base)
    hits = np.flatnonzero(y[i0:i1] >= level)
    if not len(hits):
        return None
    k = i0 + int(hits[0])
    if k == 0 or y[k] <= y[k - 1]:
        return float(t[k])
    return float(t[k - 1] + (level - y[k - 1]) / (y[k] - y[k - 1]) * (t[k] - t[k - 1]))


def av_onset_offsets(
    mouth_series: np.ndarray,
    mouth_times_s: Sequence[float],
    samples: np.ndarray,
    rate_hz: float,
    min_silence_ms: float = 150.0,
    rise_ms: float = 150.0,
    max_lag_ms: float = 100.0,
    fraction: float = 0.5,
    threshold_dbfs: float = SILENCE_DBFS,
) -> AVOnsets:
    """Mouth against sound timed at onsets: each sound that follows at least `min_silence_ms` of silence (at
    `threshold_dbfs`) and the mouth's opening around it, each timed where it has risen `fraction` of the way from
    its level in the silence to its first peak, the sound's loudness first put on the mouth's scale by matching
    their distributions (the highest point within `rise_ms` of where each clearly starts:
    the sound above `threshold_dbfs`, the mouth a quarter of its range above its level in the silence, searched
    within `max_lag_ms` of the sound). Independent of `av_offset_ms`: no correlation, only the rises, and from the
    samples themselves (10 ms RMS at a 1 ms hop, centred) rather than a 10 ms envelope.

    `mouth_series` (e.g. `VideoAnalysis.mouth_opening()`) at `mouth_times_s`, and `samples`, share a time
    origin. An onset whose mouth barely moves (less than a quarter of the series' 5-95 % range) is left out:
    the mouth may rightly stay shut for a soft sound."""
    env = rms_envelope(samples, rate_hz, WINDOW_MS, FINE_HOP_MS)
    et = np.arange(len(env)) * FINE_HOP_MS / 1000 + WINDOW_MS / 2000  # each window's centre
    m = np.asarray(mouth_series, np.float64)
    mt = np.asarray(mouth_times_s, np.float64)[: len(m)]
    keep = ~np.isnan(m)
    m, mt = m[keep], mt[keep]
    if len(m) < 3:
        return AVOnsets((), None, fraction)
    mouth = np.interp(et, mt, m, left=np.nan, right=np.nan)  # on the envelope's 1 ms grid
    moves = float(np.percentile(m, 95) - np.percentile(m, 5))
    # The loudness on the mouth's own scale: each value replaced by the mouth's value of the same rank (their
    # distributions matched). A mouth that opens more than linearly with loudness (the light engine compresses
    # it, a gate keeps it shut for soft sound) is half open before the sound is half loud on a slow rise; in the
    # same units the two rises compare.
    both = ~np.isnan(mouth)
    if both.sum() > 10:
        ranks = np.argsort(np.argsort(env[both], kind="stable")) / (both.sum() - 1)
        env = env.copy()
        env[both] = np.quantile(mouth[both], ranks)
    sil, rise, lag = (round(v / FINE_HOP_MS) for v in (min_silence_ms, rise_ms, max_lag_ms))
    offsets = []
    prev_end = -np.inf
    for sound in sound_onsets(samples, rate_hz, threshold_dbfs, min_silence_ms):
        quiet_s, prev_end = sound.start_s - prev_end, sound.end_s
        k = round(sound.start_s * 1000 / FINE_HOP_MS)
        if quiet_s < min_silence_ms / 1000 or k - sil < 0 or k + rise + lag >= len(env):
            continue
        kp = k + int(np.argmax(env[k : k + rise]))  # the sound's first peak
        quiet = float(np.median(env[k - sil : k - 20]))
        heard = _rise_time(env, et, quiet, float(env[kp]), fraction, k - 10, kp + 1)
        before, around = mouth[k - sil : k - lag], mouth[k - lag : k + lag + rise]
        if heard is None or np.isnan(before).any() or np.isnan(around).any():
            continue
        base = float(np.median(before))
        opens = np.flatnonzero(around > base + 0.25 * moves)  # the mouth clearly opening: its own start
        if not len(opens):
            continue
        j = k - lag + int(opens[0])
        jp = j + int(np.argmax(mouth[j : j + rise]))  # its first peak, over as long as the sound's
        seen = _rise_time(mouth, et, base, float(mouth[jp]), fraction, k - lag, jp + 1)
        if seen is not None:
            offsets.append((seen - heard) * 1000.0)
    return AVOnsets(tuple(offsets), float(np.median(offsets)) if offsets else None, fraction)


def first_motion_after(
    mouth_diff_series: np.ndarray,
    fps: float,
    t_s: float,
    threshold: float | None = None,
    frame_times_s: Sequence[float] | None = None,
    idle_window_s: float = 2.0,
    min_threshold: float = 0.5,
) -> float | None:
    """The time of the first frame at or after `t_s` whose mouth-region difference exceeds idle-level motion, or None.

    Idle level, unless `threshold` is given: 1.5 x the largest difference in the `idle_window_s` before `t_s`
    (breathing and head sway move the mouth box a little), and at least `min_threshold` gray levels."""
    d = np.asarray(mouth_diff_series, np.float64)
    times = (
        np.arange(len(d)) / fps if frame_times_s is None else np.asarray(frame_times_s, np.float64)[: len(d)]
    )
    if threshold is None:
        idle = d[(times >= t_s - idle_window_s) & (times < t_s)]
        idle = idle[~np.isnan(idle)]
        threshold = max(1.5 * float(idle.max()) if len(idle) else 0.0, min_threshold)
    hits = np.flatnonzero((times >= t_s) & (np.nan_to_num(d, nan=0.0) > threshold))
    return float(times[hits[0]]) if len(hits) else None
