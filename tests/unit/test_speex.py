"""The linear echo canceller: the real libspeexdsp (Debian libspeexdsp1) through its ctypes binding, on a synthetic
room with a real voice over the echo."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from assistant.audio import speex
from assistant.audio.io import load_audio
from assistant.audio.speex import LinearEchoCanceller, SpeexUnavailable, load_linear_canceller

RATE = 16000
SPEECH = Path(__file__).parents[1] / "data" / "speech" / "question-en-us.wav"  # a real voice (README there)


def _avatar(seconds: float) -> np.ndarray:
    """The avatar's voice: the speech clip time-reversed and repeated (speech-like spectrum, not the user's words)."""
    clip = load_audio(SPEECH, RATE)[::-1]
    x = np.tile(clip, int(seconds * RATE) // len(clip) + 1)[: int(seconds * RATE)]
    return (x * (0.5 / np.abs(x).max())).astype(np.float32)


def _room(far: np.ndarray, delay_s: float, gain: float, near: np.ndarray | None = None) -> np.ndarray:
    """What the microphone hears: the far end `delay_s` later through a short decaying path, plus the user."""
    d = int(delay_s * RATE)
    path = np.zeros(d + 64, np.float32)
    path[d], path[d + 17], path[d + 45] = gain, -0.3 * gain, 0.1 * gain
    mic = np.convolve(far, path)[: len(far)]
    if near is not None:
        mic = mic + near
    mic = mic + np.random.default_rng(3).normal(0, 3e-4, len(mic)).astype(np.float32)
    return mic


def _i16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1, 1) * 32767).round().astype(np.int16)


def _run(ec: LinearEchoCanceller, mic: np.ndarray, far: np.ndarray, chunk: int = 480) -> np.ndarray:
    m, f = _i16(mic), _i16(far)
    return np.concatenate([ec.process(m[i : i + chunk], f[i : i + chunk]) for i in range(0, len(m), chunk)])


def _db(x: np.ndarray) -> float:
    return 10 * float(np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-12))


def test_it_cancels_a_delayed_echo_within_its_reach() -> None:
    far = _avatar(12.0)
    mic = _room(far, delay_s=0.25, gain=0.5)
    out = _run(LinearEchoCanceller(RATE), mic, far)
    assert len(out) == len(mic)
    late = slice(6 * RATE, None)  # converged
    assert _db(_i16(mic)[late]) - _db(out[late]) >= 15.0


def test_the_users_voice_over_the_echo_comes_through_whole() -> None:
    """Double talk: what AEC3's suppressor damages (the user's weak sounds under the echo) is left alone here."""
    far = _avatar(12.0)
    user = load_audio(SPEECH, RATE)
    user = (user * (0.5 / np.abs(user).max())).astype(np.float32)
    near = np.zeros_like(far)
    at = 8 * RATE
    near[at : at + len(user)] = user[: len(far) - at]
    mic = _room(far, delay_s=0.25, gain=0.5, near=near)
    out = _run(LinearEchoCanceller(RATE), mic, far).astype(np.float32) / 32767
    span = slice(at, at + min(len(user), len(far) - at))
    error = out[span] - near[span]
    # the user over what is left (residual echo and any distortion of the voice) against the user over the echo:
    # 13.4 against 5.2 dB here
    assert _db(near[span]) - _db(error) >= _db(near[span]) - _db(mic[span] - near[span]) + 6.0
    assert _db(near[span]) - _db(error) >= 10.0


def test_any_chunk_size_gives_one_unbroken_signal() -> None:
    far = _avatar(4.0)
    mic = _room(far, delay_s=0.1, gain=0.5)
    whole = _run(LinearEchoCanceller(RATE), mic, far, chunk=160)
    odd = _run(LinearEchoCanceller(RATE), mic, far, chunk=333)  # not a multiple of the 10 ms frame
    assert len(odd) == len(mic)
    lag = 160 - 1  # from the first chunk that is not whole frames, by a frame less a sample, and never more
    assert not odd[:lag].any() and np.array_equal(odd[lag:], whole[: len(whole) - lag])
    assert np.array_equal(_run(LinearEchoCanceller(RATE), mic, far, chunk=480), whole)  # whole frames: no delay


def test_chunks_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        LinearEchoCanceller(RATE).process(np.zeros(480, np.int16), np.zeros(320, np.int16))


def test_reset_forgets_the_echo_path() -> None:
    far = _avatar(6.0)
    mic = _room(far, delay_s=0.2, gain=0.5)
    ec = LinearEchoCanceller(RATE)
    _run(ec, mic, far)
    ec.reset()
    again = _run(ec, mic[: RATE // 2], far[: RATE // 2])  # the first half second: nothing learnt yet
    assert _db(_i16(mic[RATE // 4 : RATE // 2])) - _db(again[RATE // 4 : RATE // 2]) < 3.0


def test_without_the_library_there_is_none_and_a_warning(monkeypatch, caplog) -> None:
    monkeypatch.setattr(speex, "LIBRARY_NAMES", ("no-such-speexdsp-library",))
    with pytest.raises(SpeexUnavailable, match="apt install libspeexdsp1"):
        LinearEchoCanceller(RATE)
    with caplog.at_level(logging.WARNING, logger="assistant.audio.speex"):
        assert load_linear_canceller(RATE) is None
    assert "no linear echo canceller" in caplog.text and "libspeexdsp" in caplog.text


def test_a_rate_not_in_whole_frames_is_refused() -> None:
    with pytest.raises(SpeexUnavailable, match="11025 Hz"):
        LinearEchoCanceller(11025)
