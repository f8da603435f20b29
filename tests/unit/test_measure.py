"""assistant.bench.measure on synthetic signals with known answers: sound onsets, extra silences at the speaker
(holes inserted into a delayed, gain-changed, noisy copy), black/frozen/moving frames, A/V offsets, first motion."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import resample_poly

from assistant.bench.measure import (
    av_offset_ms,
    av_onset_offsets,
    first_motion_after,
    first_sound_after,
    rms_envelope,
    sound_onsets,
    speaker_gaps,
    video_frames_analysis,
)

REF_RATE = 22050  # what a TTS engine sends
REC_RATE = 48000  # what the rig records


def tone(seconds: float, rate: int, dbfs: float = -20.0, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return 10 ** ((dbfs + 3.0) / 20) * np.sin(2 * np.pi * hz * t)  # RMS of a sine = peak - 3 dB


def silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(round(seconds * rate))


def speechish(seconds: float, rate: int, seed: int) -> np.ndarray:
    """Syllables (voiced harmonics, 120-260 ms, smooth attack/decay) joined back to back or by 80-200 ms pauses."""
    rng = np.random.default_rng(seed)
    out = [silence(0.05, rate)]
    total = 0.05
    while total < seconds:
        dur = rng.uniform(0.12, 0.26)
        t = np.arange(int(dur * rate)) / rate
        f0 = rng.uniform(110, 160)
        voiced = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 8))
        shape = np.sin(np.pi * t / dur) ** 0.6
        out.append(0.25 * rng.uniform(0.4, 1.0) * shape * voiced)
        total += dur
        if rng.random() < 0.4:
            pause = rng.uniform(0.08, 0.2)
            out.append(silence(pause, rate))
            total += pause
    out.append(silence(0.05, rate))
    return np.concatenate(out)


def loud_points(x: np.ndarray, rate: int, margin_s: float = 0.06) -> list[float]:
    """Times where the signal is loud for `margin_s` on both sides: a hole there is inside a sound."""
    db = 20 * np.log10(np.maximum(rms_envelope(x, rate, 10, 1), 1e-10))
    m = int(margin_s * 1000)
    return [i / 1000 for i in range(m, len(db) - m, 5) if db[i - m : i + m].min() > -30]


def at_speaker(
    played: np.ndarray,
    delay_s: float,
    gain_db: float,
    noise_dbfs: float = -65.0,
    tail_s: float = 0.5,
    seed: int = 1,
) -> np.ndarray:
    """What the rig would record: resampled to 48 kHz, delayed, scaled, with white noise."""
    x = resample_poly(played, 320, 147)  # 22050 -> 48000
    x = np.concatenate([silence(delay_s, REC_RATE), x * 10 ** (gain_db / 20), silence(tail_s, REC_RATE)])
    noise = np.random.default_rng(seed).normal(0, 10 ** (noise_dbfs / 20), len(x))
    return np.clip(x + noise, -1, 1)


def with_hole(x: np.ndarray, at_s: float, hole_s: float, rate: int = REF_RATE) -> np.ndarray:
    i = round(at_s * rate)
    return np.concatenate([x[:i], silence(hole_s, rate), x[i:]])


# --- sound onsets -------------------------------------------------------------------------------------------


def test_sound_onsets_finds_each_tone_within_one_window() -> None:
    rate = 16000
    x = np.concatenate([silence(0.5, rate), tone(0.3, rate), silence(0.4, rate), tone(0.2, rate, -30)])
    got = sound_onsets(x, rate)
    assert len(got) == 2
    for (start, end), (want_start, want_end) in zip(got, [(0.5, 0.8), (1.2, 1.4)], strict=True):
        assert start == pytest.approx(want_start, abs=0.011)
        assert end == pytest.approx(want_end, abs=0.011)


def test_sound_onsets_joins_short_silences_and_ignores_quiet_sound() -> None:
    rate = 16000
    x = np.concatenate([tone(0.2, rate), silence(0.05, rate), tone(0.2, rate), silence(0.3, rate),
                        tone(0.3, rate, -55)])  # fmt: skip
    assert len(sound_onsets(x, rate, min_silence_ms=100)) == 1  # the -55 dBFS tone is below -45
    assert len(sound_onsets(x, rate, min_silence_ms=30)) == 2
    assert len(sound_onsets(x, rate, threshold_dbfs=-60, min_silence_ms=100)) == 2


def test_first_sound_after_skips_a_sound_already_playing() -> None:
    rate = 16000
    x = np.concatenate([silence(0.3, rate), tone(0.4, rate), silence(0.6, rate), tone(0.2, rate),
                        silence(0.1, rate)])  # fmt: skip
    assert first_sound_after(x, rate, 0.0) == pytest.approx(0.3, abs=0.011)
    assert first_sound_after(x, rate, 0.5) == pytest.approx(1.3, abs=0.011)  # inside the first tone
    assert first_sound_after(x, rate, 0.8) == pytest.approx(1.3, abs=0.011)
    assert first_sound_after(x, rate, 1.45) is None


# --- speaker gaps -------------------------------------------------------------------------------------------


def two_pieces() -> list[np.ndarray]:
    return [speechish(2.0, REF_RATE, seed=3), speechish(2.5, REF_RATE, seed=4)]


def test_clean_copy_with_delay_gain_and_noise_has_no_gap() -> None:
    pieces = two_pieces()
    rec = at_speaker(np.concatenate(pieces), delay_s=0.437, gain_db=-7.0)
    result = speaker_gaps(rec, REC_RATE, pieces, REF_RATE)
    assert result.gaps == ()
    assert result.max_gap_ms == 0.0
    assert result.lag_s == pytest.approx(0.437, abs=0.003)
    assert result.gain_db == pytest.approx(-7.0, abs=0.5)
    assert result.alignment_correlation > 0.9


def test_inserted_hole_inside_a_sound_is_reported_at_its_size() -> None:
    pieces = two_pieces()
    ref = np.concatenate(pieces)
    at = next(t for t in loud_points(ref, REF_RATE) if t > 2.6)  # in the second piece
    rec = at_speaker(with_hole(ref, at, 0.100), delay_s=0.25, gain_db=3.0)
    result = speaker_gaps(rec, REC_RATE, pieces, REF_RATE)
    assert len(result.gaps) == 1, result.gaps
    gap = result.gaps[0]
    assert gap.extra_ms == pytest.approx(100, abs=8)
    assert gap.at_s == pytest.approx(0.25 + at, abs=0.02)
    assert result.max_gap_ms == gap.extra_ms


def test_hole_at_the_junction_of_two_pieces_adds_to_the_pieces_own_pause() -> None:
    pieces = two_pieces()
    junction = len(pieces[0]) / REF_RATE  # piece 1 ends, piece 2 begins, each with 50 ms of its own silence
    rec = at_speaker(with_hole(np.concatenate(pieces), junction, 0.100), delay_s=0.6, gain_db=-3.0)
    result = speaker_gaps(rec, REC_RATE, pieces, REF_RATE)
    assert [round(g.extra_ms / 10) for g in result.gaps] == [10], result.gaps
    assert result.gaps[0].expected_ms >= 100  # the two pieces' own silences (and soft syllable edges)


def test_several_holes_each_found_with_later_audio_realigned() -> None:
    pieces = two_pieces()
    ref = np.concatenate(pieces)
    points = loud_points(ref, REF_RATE)
    first = next(t for t in points if t > 0.8)
    second = next(t for t in points if t > first + 1.5)
    played = with_hole(with_hole(ref, second, 0.060), first, 0.150)  # the later one first: indices stay valid
    rec = at_speaker(played, delay_s=0.3, gain_db=0.0)
    result = speaker_gaps(rec, REC_RATE, pieces, REF_RATE)
    assert [g.extra_ms for g in result.gaps] == [pytest.approx(150, abs=8), pytest.approx(60, abs=8)]
    assert result.gaps[1].at_s == pytest.approx(0.3 + second + 0.150, abs=0.02)
    assert result.max_gap_ms == pytest.approx(150, abs=8)
    last_sound_end_s = sound_onsets(ref, REF_RATE)[-1].end_s
    assert result.reply_end_s == pytest.approx(0.3 + 0.21 + last_sound_end_s, abs=0.015)


def test_dropped_audio_is_a_gap_and_does_not_shift_what_follows() -> None:
    pieces = two_pieces()
    ref = np.concatenate(pieces)
    points = loud_points(ref, REF_RATE)
    first = next(t for t in points if t > 1.0)
    second = next(t for t in points if t > first + 1.5)
    i = int(first * REF_RATE)
    played = ref.copy()
    played[i : i + int(0.08 * REF_RATE)] = 0.0  # an underrun that lost 80 ms instead of delaying it
    played = with_hole(played, second, 0.070)
    result = speaker_gaps(at_speaker(played, 0.2, 0.0), REC_RATE, pieces, REF_RATE)
    assert [g.extra_ms for g in result.gaps] == [pytest.approx(80, abs=10), pytest.approx(70, abs=8)]
    assert result.gaps[1].at_s == pytest.approx(0.2 + second, abs=0.02)


# --- video frames -------------------------------------------------------------------------------------------

FPS = 25.0
MOUTH = (40, 60, 30, 16)  # x, y, w, h


def frame_sequence() -> list[np.ndarray]:
    """0.2 s black, 1.0 s moving, 1.0 s frozen (with 1-gray-level noise on 20 pixels), 0.8 s moving."""
    rng = np.random.default_rng(0)
    base = np.tile(np.linspace(40, 200, 120, dtype=np.float64), (96, 1))
    frames = [np.zeros((96, 120, 3), np.uint8) for _ in range(5)]
    for i in range(25):
        frames.append(np.repeat(np.roll(base, i * 2, axis=1)[..., None], 3, axis=2).astype(np.uint8))
    still = frames[-1]
    for _ in range(25):
        f = still.copy()
        ys, xs = rng.integers(0, 96, 20), rng.integers(0, 120, 20)
        f[ys, xs] = np.clip(f[ys, xs].astype(int) + 1, 0, 255).astype(np.uint8)
        frames.append(f)
    for i in range(20):
        f = still.copy()
        x, y, w, h = MOUTH
        f[y : y + h, x : x + w] = 30 + 40 * (i % 3)  # only the mouth moves
        frames.append(f)
    return frames


def test_black_frozen_and_moving_frames_are_found() -> None:
    a = video_frames_analysis(iter(frame_sequence()), FPS, MOUTH)
    assert a.frames == 75
    assert a.black_frames() == 5
    assert a.black_frames(after_s=0.2) == 0
    runs = a.frozen_runs(min_s=0.5)
    assert len(runs) == 1, runs
    assert runs[0].start_s == pytest.approx(1.16, abs=0.001)  # the last moving frame is the still picture
    assert runs[0].duration_s == pytest.approx(1.04, abs=0.001)
    assert a.max_frozen_s(after_s=0.2) == pytest.approx(1.04, abs=0.001)
    assert a.motion_present(0.3, 1.1)
    assert not a.motion_present(1.25, 2.15)
    assert a.motion_present(2.25, 3.0)
    assert a.motion_present(2.25, 3.0, region="mouth")
    assert not a.motion_present(1.25, 2.15, region="mouth")
    # The frames' own times are honoured.
    late = video_frames_analysis(iter(frame_sequence()), FPS, MOUTH, frame_times_s=np.arange(75) / FPS + 10.0)
    assert late.frozen_runs()[0].start_s == pytest.approx(11.16, abs=0.001)


def test_black_needs_dark_and_flat() -> None:
    dark_textured = np.zeros((32, 32, 3), np.uint8)
    dark_textured[::2] = 30  # mean 15, std 15: a dark picture, not a black frame
    gray_16 = np.full((32, 32, 3), 20, np.uint8)
    a = video_frames_analysis([np.zeros((32, 32, 3), np.uint8), dark_textured, gray_16], FPS)
    assert a.black.tolist() == [True, False, False]


# --- A/V offset ---------------------------------------------------------------------------------------------


def syllable_envelope(seconds: float, rate: float, seed: int) -> np.ndarray:
    """A loudness envelope: syllables of 100-300 ms with pauses, smoothed; value k at (k + 0.5) / rate."""
    rng = np.random.default_rng(seed)
    t = (np.arange(int(seconds * rate)) + 0.5) / rate
    env = np.zeros_like(t)
    pos = 0.3
    while pos < seconds - 0.5:
        dur = rng.uniform(0.1, 0.3)
        inside = (t >= pos) & (t < pos + dur)
        env[inside] = rng.uniform(0.3, 1.0) * np.sin(np.pi * (t[inside] - pos) / dur)
        pos += dur + rng.choice([0.0, rng.uniform(0.05, 0.3)])
    return env


@pytest.mark.parametrize("delay_ms", [40.0, -80.0, 0.0, 130.0, -17.0])
def test_av_offset_recovers_a_known_delay_within_a_quarter_frame(delay_ms: float) -> None:
    env_rate = 1000.0
    env = syllable_envelope(20.0, env_rate, seed=5)
    env_t = (np.arange(len(env)) + 0.5) / env_rate
    frame_t = np.arange(int(19.5 * FPS)) / FPS
    # The mouth opening at frame time t shows the loudness of t - delay (video late for delay > 0).
    mouth = np.interp(frame_t - delay_ms / 1000, env_t, env)
    mouth += np.random.default_rng(6).normal(0, 0.02, len(mouth))
    got = av_offset_ms(mouth, FPS, rms_like(env), env_rate)
    assert got.offset_ms == pytest.approx(delay_ms, abs=10.0)  # one frame is 40 ms
    assert got.peak_correlation > 0.8
    assert not got.at_limit


def rms_like(env: np.ndarray) -> np.ndarray:
    return env * 0.3 + 1e-4  # a level scale and a noise floor must not matter


def test_av_offset_change_mode_and_an_offset_beyond_the_search() -> None:
    env_rate = 100.0
    env = syllable_envelope(20.0, env_rate, seed=8)
    env_t = (np.arange(len(env)) + 0.5) / env_rate
    frame_t = np.arange(int(19.5 * FPS)) / FPS
    mouth = np.interp(frame_t - 0.06, env_t, env)
    diff = np.abs(np.diff(mouth, prepend=mouth[0]))
    assert av_offset_ms(diff, FPS, env, env_rate, mode="change").offset_ms == pytest.approx(60, abs=20)
    far = np.interp(frame_t - 0.45, env_t, env)
    wide = av_offset_ms(far, FPS, env, env_rate, max_lag_ms=600)
    narrow = av_offset_ms(far, FPS, env, env_rate)  # the true offset is outside +-300 ms
    assert wide.offset_ms == pytest.approx(450, abs=10)
    assert narrow.peak_correlation < wide.peak_correlation - 0.3


# --- first motion -------------------------------------------------------------------------------------------


def test_first_motion_after_rises_above_idle_motion() -> None:
    rng = np.random.default_rng(2)
    diffs = rng.uniform(0.1, 0.8, 100)  # idle: breathing moves the mouth box a little
    diffs[0] = np.nan
    diffs[62:80] = rng.uniform(4, 12, 18)  # talking from frame 62 (2.48 s)
    assert first_motion_after(diffs, FPS, 2.0) == pytest.approx(2.48)
    assert (
        first_motion_after(diffs, FPS, 3.3) is None
    )  # only idle motion after the talking (idle window: talking)
    assert first_motion_after(diffs[:62], FPS, 1.0) is None
    assert first_motion_after(diffs, FPS, 0.5, threshold=0.75) is not None


def test_hole_at_the_very_start_and_a_late_segment_are_both_found() -> None:
    pieces = [
        speechish(2.0, REF_RATE, seed=7),
        speechish(1.5, REF_RATE, seed=8),
        speechish(2.0, REF_RATE, seed=9),
    ]
    ref = np.concatenate(pieces)
    early = next(t for t in loud_points(ref, REF_RATE) if t > 0.1)  # inside the first syllable
    junction = (len(pieces[0]) + len(pieces[1])) / REF_RATE
    played = with_hole(with_hole(ref, junction, 2.2), early, 0.100)  # the third piece came 2.2 s late
    result = speaker_gaps(at_speaker(played, 0.4, -5.0), REC_RATE, pieces, REF_RATE)
    assert [g.extra_ms for g in result.gaps] == [pytest.approx(100, abs=8), pytest.approx(2200, abs=8)]
    assert result.lag_s == pytest.approx(0.4, abs=0.003)  # the reply's start, not the largest stretch's
    assert result.reply_start_s == pytest.approx(0.4 + sound_onsets(ref, REF_RATE)[0].start_s, abs=0.012)


def test_mouth_opening_follows_the_dark_inside_not_the_mean_luma() -> None:
    # As the light engine opens the mouth wide, teeth and a tongue show: the box's mean luma falls and rises again,
    # the share of dark pixels keeps rising.
    import numpy as np

    from assistant.bench import measure

    frames = []
    for opening in (0.0, 0.25, 0.5, 0.75, 1.0):
        f = np.full((60, 80), 150, np.uint8)  # lips and skin
        h = int(30 * opening)
        f[20 : 20 + h, 10:70] = 25  # the dark inside
        teeth = int(h * opening)  # lower teeth below it, brighter than the skin, more of them as it opens wide
        f[20 + h : 20 + h + teeth, 10:70] = 235
        frames.append(f)
    video = measure.video_frames_analysis(frames, 25.0, mouth_box=(0, 0, 80, 60))
    assert np.all(np.diff(video.mouth_opening()) > 0)
    assert video.mouth_opening()[0] == 0  # closed: nothing dark in the box


# --- A/V: a synthetic recording of known offset, measured two independent ways --------------------------------

SPEECH_RATE = 16000
GRAB_FPS = 50.0  # the rig grabs the screen at 50 fps


def speech_recording(
    delay_ms: float, seconds: float = 20.0, seed: int = 3, rise_s: float = 0.012, power: float = 0.7
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Speech-like sound and the mouth a screen grab would see with it, the mouth `delay_ms` late.

    Sound: syllables of 80-300 ms on a 180 Hz carrier, rising in `rise_s` and dying away in ~50 ms (as voices do),
    mostly run together, a quarter of them after a pause of 250-600 ms. Mouth: the loudness `delay_ms` earlier,
    through a gate and a compression to `power` (a mouth shut for soft sound, wide for quiet syllables: what the
    light engine does, a monotone map), grabbed at 50 fps with a little noise. Returns (samples, mouth series,
    grab times)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SPEECH_RATE)
    env = np.zeros(n)
    t = 0.4
    while t < seconds - 0.8:
        length, loud = rng.uniform(0.08, 0.3), rng.uniform(0.3, 1.0)
        k = np.arange(int((length + 0.3) * SPEECH_RATE)) / SPEECH_RATE
        syllable = loud * (1 - np.exp(-k / rise_s)) * np.where(k < length, 1.0, np.exp(-(k - length) / 0.05))
        i0 = int(t * SPEECH_RATE)
        env[i0 : i0 + len(k)] = np.maximum(env[i0 : i0 + len(k)], syllable[: n - i0])
        t += length + (rng.uniform(0.25, 0.6) if rng.random() < 0.25 else rng.uniform(0.02, 0.08))
    carrier = np.sin(2 * np.pi * 180 * np.arange(n) / SPEECH_RATE)
    samples = 0.5 * env * carrier + 1e-4 * rng.standard_normal(n)
    grab_t = np.arange(int(seconds * GRAB_FPS)) / GRAB_FPS
    seen = np.interp(grab_t - delay_ms / 1000, np.arange(n) / SPEECH_RATE, env)
    mouth = np.clip(seen / 0.5 - 0.2, 0.0, None) ** power + rng.normal(0, 0.01, len(grab_t))
    return samples, mouth, grab_t


@pytest.mark.parametrize("delay_ms", [30.0, -30.0, 0.0])
def test_a_known_offset_comes_back_by_correlation_and_by_onsets(delay_ms: float) -> None:
    samples, mouth, grab_t = speech_recording(delay_ms)
    env = rms_envelope(samples, SPEECH_RATE, 10.0, 10.0)

    level = av_offset_ms(mouth, GRAB_FPS, env, 100.0, mouth_times_s=grab_t)
    onsets = av_onset_offsets(mouth, grab_t, samples, SPEECH_RATE)

    assert level.offset_ms == pytest.approx(delay_ms, abs=3.0)
    assert level.peak_correlation > 0.9
    assert onsets.count >= 6  # the pauses of 20 s of speech
    assert onsets.median_ms == pytest.approx(delay_ms, abs=4.0)
    assert abs(onsets.median_ms - level.offset_ms) <= 5.0
    assert max(onsets.offsets_ms) - min(onsets.offsets_ms) < 20.0  # each onset, not just their median


def test_onsets_are_not_fooled_by_a_mouth_that_opens_more_than_linearly() -> None:
    """Slow rises (40 ms) and a mouth that follows loudness to the power 0.4: half open when the sound is a fifth
    of the way up. Timed on the loudness's own scale the onsets would read the mouth 10 ms or more early; on the
    mouth's scale they come back right."""
    samples, mouth, grab_t = speech_recording(20.0, rise_s=0.04, power=0.4)
    onsets = av_onset_offsets(mouth, grab_t, samples, SPEECH_RATE)
    assert onsets.count >= 6
    assert onsets.median_ms == pytest.approx(20.0, abs=4.0)


def test_change_against_level_reads_early_and_change_against_change_does_not() -> None:
    """The disagreement of issue 23: a frame difference correlated with the loudness put the mouth 45-50 ms ahead
    of the voice where the project's mouth opening against the loudness read +4 ms. On a recording with no offset
    at all the change-against-level pairing reads tens of ms early; a change against the loudness's own change
    does not."""
    samples, mouth, grab_t = speech_recording(0.0)
    env = rms_envelope(samples, SPEECH_RATE, 10.0, 10.0)
    change = np.abs(np.diff(mouth, prepend=np.nan))

    mixed = av_offset_ms(change, GRAB_FPS, env, 100.0, mouth_times_s=grab_t, mode="level")
    matched = av_offset_ms(change, GRAB_FPS, env, 100.0, mouth_times_s=grab_t, mode="change")

    assert mixed.offset_ms < -30.0
    assert matched.offset_ms == pytest.approx(0.0, abs=8.0)


def test_onsets_without_pauses_or_without_mouth_motion_give_no_figure() -> None:
    samples, mouth, grab_t = speech_recording(0.0)
    still = np.full_like(mouth, 0.2)
    assert av_onset_offsets(still, grab_t, samples, SPEECH_RATE).median_ms is None
    tone_only = np.sin(2 * np.pi * 200 * np.arange(5 * SPEECH_RATE) / SPEECH_RATE) * 0.3  # no silence anywhere
    got = av_onset_offsets(mouth[: int(5 * GRAB_FPS)], grab_t[: int(5 * GRAB_FPS)], tone_only, SPEECH_RATE)
    assert got.count == 0 and got.median_ms is None
