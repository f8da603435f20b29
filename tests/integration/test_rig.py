"""The recording rig for real: Xvfb + a private PulseAudio daemon; what is played into the speaker sink and drawn on
the screen is recorded, stamped on time.monotonic(), and the analysis of assistant.bench.measure finds it."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from assistant.bench.measure import (
    first_sound_after,
    speaker_gaps,
    video_file_analysis,
)
from assistant.bench.rig import (
    ScreenRecorder,
    SpeakerRecorder,
    start_pulse,
    start_xvfb,
)

pytestmark = pytest.mark.integration

RATE = 22050  # the played file's rate: the daemon resamples it to the sinks' 48 kHz


def speechish(seconds: float, seed: int) -> np.ndarray:
    """Voiced syllables of 120-260 ms, back to back or with 80-200 ms pauses, 50 ms of silence at both ends."""
    rng = np.random.default_rng(seed)
    out, total = [np.zeros(int(0.05 * RATE))], 0.05
    while total < seconds:
        dur = rng.uniform(0.12, 0.26)
        t = np.arange(int(dur * RATE)) / RATE
        f0 = rng.uniform(110, 160)
        voiced = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
        out.append(0.25 * rng.uniform(0.5, 1.0) * np.sin(np.pi * t / dur) ** 0.6 * voiced)
        total += dur
        if rng.random() < 0.4:
            pause = rng.uniform(0.08, 0.2)
            out.append(np.zeros(int(pause * RATE)))
            total += pause
    out.append(np.zeros(int(0.05 * RATE)))
    return np.concatenate(out)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


def test_speaker_recording_shows_an_inserted_hole_and_a_clean_copy_has_none(tmp_path: Path) -> None:
    pieces = [speechish(1.2, seed=1), speechish(1.2, seed=2)]
    # 100 ms of silence in the middle of the second piece's loudest syllable.
    env = np.abs(resample_poly(pieces[1], 1, 50))
    hole_at = len(pieces[0]) + int(np.argmax(env)) * 50
    with_hole = np.concatenate([pieces[0], pieces[1]])
    with_hole = np.concatenate([with_hole[:hole_at], np.zeros(int(0.1 * RATE)), with_hole[hole_at:]])
    holed_wav = write_wav(tmp_path / "holed.wav", with_hole, RATE)
    clean_wav = write_wav(tmp_path / "clean.wav", np.concatenate(pieces), RATE)

    with (
        start_pulse(tmp_path / "pulse") as pulse,
        SpeakerRecorder(pulse, tmp_path / "speaker.wav") as recorder,
    ):
        recorder.start()
        time.sleep(0.2)
        clean_started = time.monotonic()
        pulse.play(clean_wav, sink=pulse.speaker_sink)
        time.sleep(0.3)
        holed_started = time.monotonic()
        pulse.play(holed_wav, sink=pulse.speaker_sink)
        time.sleep(0.3)
        path = recorder.stop()
        started_at = recorder.started_at
    assert not pulse.alive

    recorded, rate = read_wav(path)
    assert rate == 48000
    clean_from = clean_started - started_at
    holed_from = holed_started - started_at
    # The recording's clock: a sound played at a known moment is recorded after it, within paplay's start-up.
    onset = first_sound_after(recorded, rate, clean_from)
    assert onset is not None and 0.0 < onset - clean_from < 0.6, (onset, clean_from)

    clean = speaker_gaps(recorded, rate, pieces, RATE, search_from_s=clean_from, search_to_s=holed_from)
    holed = speaker_gaps(recorded, rate, pieces, RATE, search_from_s=holed_from)
    assert clean.alignment_correlation > 0.9
    assert clean.max_gap_ms == 0.0, clean.gaps
    assert len(holed.gaps) == 1, holed.gaps
    assert holed.gaps[0].extra_ms == pytest.approx(100, abs=10)
    assert holed.gaps[0].reference_at_s == pytest.approx(hole_at / RATE, abs=0.02)


def test_screen_recording_sees_the_root_window_change_at_the_right_time(tmp_path: Path) -> None:
    if shutil.which("xsetroot") is None:
        pytest.fail("xsetroot not found; install it: sudo apt-get install x11-xserver-utils", pytrace=False)
    with start_xvfb(320, 240) as x:
        env = {**os.environ, **x.env}

        def root(color: str) -> tuple[float, float]:
            before = time.monotonic()
            subprocess.run(["xsetroot", "-solid", color], env=env, check=True, timeout=10)
            return before, time.monotonic()

        root("black")
        with ScreenRecorder(x.display, (40, 40, 160, 120), 25, tmp_path / "screen.mkv") as screen:
            screen.start()
            time.sleep(0.6)
            gray_before, gray_after = root("#808080")
            time.sleep(0.8)
            root("#808080")  # the same picture again: the screen stays still
            time.sleep(0.6)
            stopping = time.monotonic()
            path = screen.stop()
        assert x.alive
    assert not x.alive

    times = np.array(screen.frame_offsets_s)
    # One frame every 40 ms from the first grab (ffmpeg probes a few before start() returns) until stop().
    assert len(times) == pytest.approx((stopping - screen.started_at) * 25, abs=3)
    assert np.median(np.diff(times)) == pytest.approx(0.04, abs=0.002)
    a = video_file_analysis(path, frame_times_s=times)
    assert a.frames == len(times)
    change = gray_before - screen.started_at
    first_gray = float(times[np.flatnonzero(a.mean_luma > 100)[0]])
    # The first gray frame was grabbed after xsetroot started and at most a frame period (+ margin) after it ended.
    assert change - 0.005 <= first_gray <= gray_after - screen.started_at + 0.04 + 0.03, (change, first_gray)
    assert a.black_frames(before_s=change) >= 10
    assert a.black_frames(after_s=first_gray) == 0
    assert a.motion_present(first_gray - 0.01, first_gray + 0.01)
    assert not a.motion_present(first_gray + 0.01, times[-1] + 1)
    runs = a.frozen_runs(min_s=0.5, after_s=first_gray)
    assert len(runs) == 1 and runs[0].duration_s > 0.9


def test_a_relative_folder_starts_the_daemon(tmp_path: Path, monkeypatch) -> None:
    # `assistant bench live --out bench-live` (the README's form, a relative folder) once failed: pulseaudio wants
    # an absolute HOME and runtime path.
    monkeypatch.chdir(tmp_path)
    with start_pulse(Path("relative") / "pulse") as pulse:
        assert pulse.root.is_absolute() and pulse.root == (tmp_path / "relative" / "pulse").resolve()
        assert pulse.server.startswith(f"unix:{tmp_path.resolve()}")
