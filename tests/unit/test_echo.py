"""The echo canceller stage: a real AEC3 (pywebrtc-audio) on a synthetic room, the residual-echo guard, and the
fallback to half-duplex when no canceller can run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.capture import rms_dbfs
from assistant.audio.echo import LINEAR_MIN_ERLE_DB, EchoCanceller, EchoSettings, barge_in_setup
from assistant.audio.io import load_audio
from assistant.config import AudioSettings
from assistant.turn_taking import HANDS_FREE, TurnState, TurnTaking
from tests.unit.test_turn_taking import Recorder, segment

RATE = 16000


def _voice_like(seconds: float, seed: int) -> np.ndarray:
    """Noise shaped like speech: bursts of 150-400 ms at syllable rate, band-limited by a short moving sum."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 48000)
    x = rng.normal(0, 1, n)
    x = np.convolve(x, np.ones(6) / 6, mode="same")
    env = np.zeros(n)
    i = 0
    while i < n:
        length = int(rng.uniform(0.15, 0.4) * 48000)
        env[i : i + length] = np.hanning(min(length, n - i))
        i += length + int(rng.uniform(0.03, 0.12) * 48000)
    return (0.3 * x * env).astype(np.float32)  # (n,) float32 at 48 kHz


def _run_room(
    echo: EchoCanceller, far48: np.ndarray, delay_s: float, gain: float, near_extra=None, stall=None, asr=None, far=None
):
    """The stream writes one 40 ms frame per tick from t=100; the microphone hears it `delay_s` later; `asr` (a
    list) gets each chunk as the recogniser would hear it, `far` (a list) whether the guard took the avatar for speaking.

    `stall` = (side, at_s, for_s): the stream's ticks ("stream") or the microphone's chunks ("mic") due in that
    span arrive together at its end, as on a machine that stalled."""
    import soxr

    t = [100.0]
    echo.reference._clock = lambda: t[0]
    far16 = soxr.resample(far48, 48000, RATE)
    n = len(far16) // 480 * 480
    mic = np.zeros(n, np.float32)
    d = int(delay_s * RATE)
    mic[d:] = gain * far16[: n - d]
    if near_extra is not None:
        mic[: len(near_extra)] += near_extra[:n]
    mic += np.random.default_rng(1).normal(0, 3e-4, n).astype(np.float32)
    mic16 = (np.clip(mic, -1, 1) * 32767).astype(np.int16)
    frames = [(far48[i : i + 1920] * 32767).astype(np.int16) for i in range(0, len(far48) - 1919, 1920)]
    out, voiced, fi = [], [], 0
    side, s0, s1 = stall if stall is not None else ("", 0.0, 0.0)
    s0, s1 = 100.0 + s0, 100.0 + s0 + s1
    for j in range(0, n, 480):
        captured = 100.0 + (j + 480) / RATE
        if side == "mic" and s0 <= captured < s1:
            captured = s1  # held up, delivered late (its samples are all there)
        while fi < len(frames) and 100.0 + fi * 0.04 <= captured:
            due = 100.0 + fi * 0.04
            if side == "stream" and s0 <= due < s1:
                if captured < s1:
                    break
                due = s1  # the tick ran late
            t[0] = due
            echo.reference.write(np.zeros(0, np.uint8), frames[fi])
            fi += 1
        chunk = echo.process(mic16[j : j + 480], captured)
        out.append(chunk)
        if asr is not None:
            asr.append(echo.for_asr)
        if far is not None:
            far.append(echo.far_active)
        voiced.append(echo.is_speech(chunk))
    return mic16, np.concatenate(out), np.array(voiced)


def test_aec3_removes_the_avatars_echo_and_the_guard_hears_no_user() -> None:
    echo = EchoCanceller(EchoSettings(delay_ms=250))
    far = _voice_like(12.0, 0)
    mic, out, voiced = _run_room(echo, far, delay_s=0.33, gain=0.5)
    half = len(mic) // 2  # after convergence
    erle = 10 * np.log10(np.mean(mic[half:].astype(float) ** 2) / np.mean(out[half:].astype(float) ** 2))
    assert erle >= 20.0
    assert echo.far_active
    # The residual echo never looks like a user: no run of voiced frames long enough to interrupt (120 ms).
    runs, longest = 0, 0
    for v in voiced[50:]:
        runs = runs + 1 if v else 0
        longest = max(longest, runs)
    assert longest * 30 < AudioSettings().barge_in_min_speech_ms


def test_the_guard_holds_while_a_long_rooms_echo_still_arrives() -> None:
    """The avatar's last words still echo in a 450 ms room after the reference has gone quiet: every chunk that holds
    that echo is judged as the avatar speaking (the full guard), not by webrtcvad alone."""
    echo = EchoCanceller(EchoSettings(delay_ms=250))
    far48 = np.concatenate([_voice_like(4.0, 0), np.zeros(2 * 48000, np.float32)])
    flags: list[bool] = []
    mic, _, _ = _run_room(echo, far48, delay_s=0.45, gain=0.5, far=flags)
    levels = np.array([rms_dbfs(mic[j : j + 480]) for j in range(0, len(mic) - 479, 480)])
    echoing = np.flatnonzero(levels > -40.0)
    tail = echoing[echoing * 480 > 4.0 * RATE]  # the echo of the last words, after the reference ended
    assert len(tail) >= 5  # the room's delay puts some there
    assert all(flags[j] for j in echoing[echoing > 30])


SPEECH = Path(__file__).parents[1] / "data" / "speech" / "question-en-us.wav"  # a real voice (README there)


def _over_the_echo(near: np.ndarray, settings: EchoSettings | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`near` (16 kHz float32, peak ~0.5) said 8 s into 10 s of the avatar's echo; the guard's frames before and
    during it."""
    echo = EchoCanceller(settings or EchoSettings(delay_ms=250))
    user = np.zeros(10 * RATE, np.float32)
    user[8 * RATE : 8 * RATE + len(near)] = near[: 2 * RATE]
    _, _, voiced = _run_room(echo, _voice_like(10.0, 0), delay_s=0.33, gain=0.5, near_extra=user)
    end = 8 * RATE + min(len(near), 2 * RATE)
    return voiced[int(4 * RATE / 480) : int(8 * RATE / 480)], voiced[int(8 * RATE / 480) : end // 480]


def _longest_run(voiced: np.ndarray) -> int:
    runs, longest = 0, 0
    for v in voiced:
        runs = runs + 1 if v else 0
        longest = max(longest, runs)
    return longest


def test_a_user_speaking_over_the_echo_passes_the_guard() -> None:
    speech = load_audio(SPEECH, RATE)
    before, during = _over_the_echo(speech * (0.5 / np.abs(speech).max()))
    assert during.mean() > 0.4  # most of the question counts as speech
    assert _longest_run(during) * 30 >= 180  # long enough to interrupt (audio.barge_in_min_speech_ms, 90)
    assert before.mean() < 0.1  # the avatar alone does not


def test_coughs_and_knocks_over_the_echo_do_not_pass_the_guard(tmp_path: Path) -> None:
    from assistant.bench.echo import _noise_bursts

    webrtc_alone = []
    for burst in _noise_bursts(tmp_path):  # cough-like bursts of 150 and 400 ms, a knock: loud, broadband
        noise = load_audio(burst, RATE)
        noise = noise * (0.5 / np.abs(noise).max())
        _, during = _over_the_echo(noise)
        assert _longest_run(during) * 30 < AudioSettings().barge_in_min_speech_ms, burst.name  # never interrupts
        _, alone = _over_the_echo(noise, EchoSettings(delay_ms=250, speech_threshold=0.0))
        webrtc_alone.append(_longest_run(alone) * 30)
    # webrtcvad alone (Silero off) takes the long cough for speech long enough to interrupt: the second opinion is
    # what rejects it
    assert max(webrtc_alone) >= 180


def _user_to_error_db(user: np.ndarray, heard: np.ndarray) -> float:
    """How far above what is not the user's voice (echo left, noise, damage to the voice) the voice is, in dB."""
    return 10 * float(np.log10(np.sum(user.astype(np.float64) ** 2) / np.sum((heard - user).astype(np.float64) ** 2)))


def test_the_recogniser_hears_the_users_first_sounds_under_the_echo() -> None:
    """AEC3's suppressor damages a question's start under the avatar's voice (the "H" of "How tall" in bench
    echo); the recogniser hears the linear canceller's output there instead, once that one cancels the echo."""
    speech = load_audio(SPEECH, RATE)
    near = (speech * (0.5 / np.abs(speech).max())).astype(np.float32)
    echo = EchoCanceller(EchoSettings(delay_ms=250))
    at = 14 * RATE  # the linear filter (512 ms long) has converged by then
    user = np.zeros(16 * RATE, np.float32)
    user[at : at + len(near)] = near
    asr: list[np.ndarray] = []
    mic, out, _ = _run_room(echo, _voice_like(16.0, 0), delay_s=0.33, gain=0.5, near_extra=user, asr=asr)
    assert echo.linear_erle_db is not None and echo.linear_erle_db >= LINEAR_MIN_ERLE_DB
    heard = np.concatenate(asr).astype(np.float32) / 32767
    lag = len(echo._linear_hold)  # both outputs trail the microphone by AEC3's own delay (128 samples)
    assert lag == 128
    first = at + int(np.argmax(np.abs(near) > 0.05))  # the first sound of the question, over the avatar's voice
    span = slice(first, first + int(0.3 * RATE))
    late = slice(span.start + lag, span.stop + lag)
    raw_db = _user_to_error_db(user[span], mic[span].astype(np.float32) / 32767)
    aec3_db = _user_to_error_db(user[span], out[late].astype(np.float32) / 32767)
    asr_db = _user_to_error_db(user[span], heard[late])
    # measured: raw 10.7, AEC3 8.5 (its suppressor takes some of the voice with the echo), recogniser's 15.8 dB
    assert asr_db >= aec3_db + 4.0 and asr_db >= raw_db + 3.0, (raw_db, aec3_db, asr_db)


def test_the_recogniser_hears_aec3_until_the_linear_filter_cancels() -> None:
    echo = EchoCanceller(EchoSettings(delay_ms=250))
    asr: list[np.ndarray] = []
    _, out, _ = _run_room(echo, _voice_like(3.0, 0), delay_s=0.33, gain=0.5, asr=asr)
    chunks = np.split(out, len(asr))
    assert all(np.array_equal(a, o) for a, o in zip(asr[:60], chunks[:60]))  # its first 1.8 s: not converged
    assert echo.linear_erle_db is not None and echo.linear_erle_db < LINEAR_MIN_ERLE_DB


def test_without_libspeexdsp_the_recogniser_hears_aec3(monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant.audio import speex

    monkeypatch.setattr(speex, "LIBRARY_NAMES", ("no-such-speexdsp-library",))  # as if it were not installed
    echo = EchoCanceller(EchoSettings(delay_ms=250))
    asr: list[np.ndarray] = []
    _, out, _ = _run_room(echo, _voice_like(8.0, 0), delay_s=0.33, gain=0.5, asr=asr)
    assert echo.linear_erle_db is None
    assert np.array_equal(np.concatenate(asr), out)


def test_no_canceller_gives_a_notice_and_half_duplex(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pywebrtc_audio", None)  # import fails as if the package were missing
    setup = barge_in_setup(AudioSettings(barge_in=True))
    assert setup.echo is None and not setup.enabled
    assert setup.notice is not None and "pip install pywebrtc-audio" in setup.notice and "half-duplex" in setup.notice

    rec = Recorder()
    tt = TurnTaking(rec, HANDS_FREE, loaded=True, barge_in=setup.enabled)
    tt.turn_started(tt.typed("hello"))
    tt.segment_ready(segment(7, 0))
    tt.playback_started(7)
    assert tt.state is TurnState.SPEAKING and not tt.listening  # the microphone pauses while the avatar speaks
    assert rec.take()[-1] == ("listening", False)


def test_barge_in_switched_off_needs_no_canceller() -> None:
    setup = barge_in_setup(AudioSettings(barge_in=False))
    assert (setup.echo, setup.enabled, setup.notice) == (None, False, None)
    assert barge_in_setup(AudioSettings(barge_in=True)).enabled  # the package is installed here


def _fed_reference(echo: EchoCanceller, seconds: float) -> list[float]:
    """The stream writes `seconds` of loud noise, one 40 ms frame per tick from t=100; returns the tick times."""
    t = [100.0]
    echo.reference._clock = lambda: t[0]
    rng = np.random.default_rng(5)
    ticks = []
    for k in range(int(seconds / 0.04)):
        t[0] = 100.0 + k * 0.04
        echo.reference.write(np.zeros(0, np.uint8), (rng.normal(0, 3000, 1920)).astype(np.int16))
        ticks.append(t[0])
    return ticks


def test_the_reference_is_never_read_past_what_the_stream_wrote() -> None:
    # A tick that comes late must not leave holes (zeros) in the reference AEC3 gets: they are echo it cannot
    # cancel, in the middle of the avatar's voice.
    echo = EchoCanceller(EchoSettings(delay_ms=0))  # the shortest alignment (MIN_ALIGN_MS)
    ticks = _fed_reference(echo, 2.0)
    silent = np.zeros(480, np.int16)
    captured = np.arange(ticks[-1] - 0.5, ticks[-1] + 0.04, 0.03)  # up to the last tick, on time
    for at in captured:
        echo.process(silent, float(at))
        assert np.count_nonzero(echo.last_far == 0) == 0
    assert echo.reference_late_chunks == 0
    for at in captured[-1] + np.arange(1, 8) * 0.03:  # the next ticks are 210 ms late: nothing new written
        echo.process(silent, float(at))
        assert np.count_nonzero(echo.last_far == 0) == 0  # an older reference (a longer lead), never zeros
    assert echo.reference_late_chunks > 0


def test_late_microphone_stamps_do_not_move_the_reference() -> None:
    # A loaded machine holds up the microphone thread; it then catches up with several chunks stamped at once.
    # The reference must still be read as one unbroken signal (AEC3 re-adapts after every jump).
    echo = EchoCanceller(EchoSettings(delay_ms=250))
    _fed_reference(echo, 3.0)
    silent = np.zeros(480, np.int16)
    positions = []
    for j in range(60):
        captured = 100.5 + (j + 1) * 0.03
        if 20 <= j < 26:
            captured = 100.5 + 27 * 0.03  # six chunks held up, then delivered together up to 180 ms late
        echo.process(silent, captured)
        positions.append(echo._read_pos)
    assert set(np.diff(positions)) == {480}



def _drifting_session(
    echo: EchoCanceller, seconds: float, speak_s: float, cycle_s: float, seed: int, linear: list | None = None
):
    """The stream speaks `speak_s` of every `cycle_s` (a reply, then a pause) while the microphone's sample clock
    runs 500 ppm fast against time.monotonic(). Returns, per microphone chunk, the read position and how far the
    clocks put the reference from it, and per 40 ms tick whether the avatar spoke; `linear` (a list) gets the
    linear canceller's next read position after each chunk."""
    t = [0.0]
    echo.reference._clock = lambda: t[0]
    rng = np.random.default_rng(seed)
    silent = np.zeros(480, np.int16)
    ticks = [(100.0 + k * 0.04, "tick", k) for k in range(int(seconds / 0.04))]
    chunks = [(100.5 + (j + 1) * 0.03 / (1 + 500e-6), "mic", j) for j in range(int((seconds - 1) / 0.03))]
    positions, off, spoken = [], [], []
    for at, kind, k in sorted(ticks + chunks):
        if kind == "tick":
            t[0] = at
            speaking = (k * 0.04) % cycle_s < speak_s
            spoken.append(speaking)
            audio = rng.normal(0, 3000, 1920) if speaking else np.zeros(1920)
            echo.reference.write(np.zeros(0, np.uint8), audio.astype(np.int16))
            continue
        echo.process(silent, at)
        target, pos, _ = echo.last_read
        positions.append(pos)
        if linear is not None:
            linear.append(echo._linear_pos)
        off.append(abs(target - pos))
    return np.array(positions), off, spoken


def test_a_drift_of_the_clocks_never_makes_the_reference_jump() -> None:
    # The microphone's sample clock runs 500 ppm fast against time.monotonic() (bench echo saw 100 ppm: the sound
    # server's clock): the echo drifts with the microphone, so the reference must stay one unbroken signal (AEC3
    # lost the echo after every jump, slip or re-aim) until the clocks are RESYNC_MS apart.
    echo = EchoCanceller(EchoSettings(delay_ms=250))
    positions, off, _ = _drifting_session(echo, 60, speak_s=2.0, cycle_s=3.0, seed=5)  # 2 s of speech, 1 s pause
    assert max(off) > 0.025 * RATE  # the clocks did drift apart (30 ms in the minute) ...
    assert set(np.diff(positions) - 480) == {0}  # ... and the reference was read without a jump


def test_drift_is_followed_between_replies_with_a_fresh_canceller() -> None:
    # The same 500 ppm drift over two minutes of replies (8 s) with the user's turns between them (4 s): the read
    # follows the clocks only in those silences, never in the middle of a reply, and AEC3 starts afresh each time.
    from assistant.audio import echo as echo_mod

    echo = EchoCanceller(EchoSettings(delay_ms=250))
    resets = []
    real_reset = echo._aec.reset
    echo._aec = type("Aec", (), {"process": echo._aec.process, "reset": lambda self: (resets.append(1), real_reset())})()
    linear: list[int] = []
    positions, off, spoken = _drifting_session(echo, 120, speak_s=8.0, cycle_s=12.0, seed=6, linear=linear)
    jumps_at = [int(p) for p, step in zip(positions[1:], np.diff(positions)) if step != 480]
    assert echo.reaims == len(jumps_at) == len(resets) >= 2  # 60 ms of drift, followed in 30 ms steps
    # the linear canceller keeps its unbroken reference (it follows a slow drift by itself; LINEAR_REAIM_MS)
    assert echo.linear_reaims == 0 and set(np.diff(linear)) == {480}
    for pos in jumps_at:  # each re-aim landed where the reference had been silent for REAIM_QUIET_S and more
        first, last_frame = (pos - int(echo_mod.REAIM_QUIET_S * RATE)) // 640, pos // 640
        assert not any(spoken[max(first, 0) : last_frame + 1])
    assert max(off) < (echo_mod.REAIM_MS + 8 * 0.5 + 5) / 1000 * RATE  # never more than one reply's drift behind


def test_the_linear_canceller_follows_a_long_drift_between_replies() -> None:
    # 500 ppm for five minutes: 150 ms, past LINEAR_REAIM_MS; the linear canceller's read then follows AEC3's in a
    # silence between replies, afresh (its filter learnt the echo where it no longer is)
    from assistant.audio import echo as echo_mod

    echo = EchoCanceller(EchoSettings(delay_ms=250))
    linear: list[int] = []
    positions, _, spoken = _drifting_session(echo, 300, speak_s=8.0, cycle_s=12.0, seed=7, linear=linear)
    jumps = [(i, int(p)) for i, (p, step) in enumerate(zip(linear[1:], np.diff(linear))) if step != 480]
    assert echo.linear_reaims == len(jumps) >= 1 and echo.reaims > len(jumps)
    for i, _ in jumps:
        assert linear[i + 1] == positions[i + 1] + 480  # it now reads where AEC3 reads
        pos = int(positions[i + 1])
        first, last_frame = (pos - int(echo_mod.REAIM_QUIET_S * RATE)) // 640, pos // 640
        assert not any(spoken[max(first, 0) : last_frame + 1])  # in a silence between replies
    apart = [abs(a - b) for a, b in zip(linear, positions)]
    assert max(apart) <= (echo_mod.LINEAR_REAIM_MS + 8 * 0.5 + 5) / 1000 * RATE + 480


@pytest.mark.parametrize("side", ["stream", "mic"])
def test_no_barge_in_just_after_the_machine_stalled(side: str) -> None:
    # A loaded machine holds up the stream's ticks (the player runs dry: the echo moves against its reference) or
    # the microphone thread; AEC3 needs a moment to find the echo again. For STALL_HOLD_S nothing counts as the
    # user; a user who speaks then is heard once the hold ends.
    from assistant.audio import echo as echo_mod

    echo = EchoCanceller(EchoSettings(delay_ms=250))
    far = _voice_like(10.0, 0)
    speech = load_audio(SPEECH, RATE)
    user = np.zeros(10 * RATE, np.float32)
    user[8 * RATE : 8 * RATE + len(speech)] = speech * (0.5 / np.abs(speech).max())
    _, _, voiced = _run_room(echo, far, delay_s=0.33, gain=0.5, near_extra=user, stall=(side, 7.9, 0.2))
    assert echo.stall_holds >= 1
    frame = lambda s: int(s * RATE / 480)  # noqa: E731
    # The hold runs from the last chunk or tick that came STALL_MS late: at least STALL_HOLD_S less that margin
    # after the stall ended (8.1 s), to the chunk.
    hold_end = 8.1 + echo_mod.STALL_HOLD_S - echo_mod.STALL_MS / 1000 - 0.03  # less one 30 ms chunk
    assert not voiced[frame(8.1) : frame(hold_end)].any()
    assert voiced[frame(8.1 + echo_mod.STALL_HOLD_S) + 1 : frame(9.5)].mean() > 0.4  # the user, heard after it
    assert voiced[frame(4.0) : frame(7.9)].mean() < 0.1  # the avatar alone, before the stall


def _through_the_player(heard_time: bool, stall: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The avatar's voice played by a real `AudioPlayout` (a fake device pulls 10 ms blocks, heard 30 ms later) and
    echoed into the microphone 100 ms after that. The stream's ticks due in `stall` (seconds from the start) come
    together at its end, as on a machine that stalled: the player runs dry, primes again and later trims silence, so
    the sound reaches the speaker at another delay after the stream released it. The canceller's reference is the
    player's sound (`heard_time`) or the stream's. Returns the microphone and the canceller's output (16 kHz)."""
    import soxr

    from assistant.live.playout import AudioPlayout, PlayoutSettings
    from tests.unit.test_playout import FakeDevice

    t = [100.0]
    devices: list[FakeDevice] = []
    playout = AudioPlayout(PlayoutSettings(), lambda r, b, cb: devices.append(FakeDevice(r, b, cb)) or devices[-1],
                           lambda: t[0])  # fmt: skip
    playout.start()
    far48 = _voice_like(8.0, 3)
    ticks = [(far48[i : i + 1920] * 32767).astype(np.int16) for i in range(0, len(far48) - 1919, 1920)]
    events: list[tuple[float, str, np.ndarray, float]] = []  # (time, what, samples, heard at)
    listener = lambda samples, at: events.append((t[0], "played", samples, at))  # noqa: E731
    playout.add_listener(listener)
    speaker, tick = [], 0
    for step in range(int(len(far48) / 480)):
        t[0] = 100.0 + step * 0.01
        while tick < len(ticks) and (due := tick * 0.04) <= t[0] - 100.0:
            if stall[0] <= due < stall[1] and t[0] - 100.0 < stall[1]:
                break
            playout.write(np.zeros(0, np.uint8), ticks[tick])
            events.append((t[0], "write", ticks[tick], 0.0))
            tick += 1
        speaker.append(devices[0].pull(t[0]))  # heard from t + 30 ms (FakeDevice's reported delay)
    spk16 = soxr.resample(np.concatenate(speaker).astype(np.float32) / 32768.0, 48000, RATE)
    lag = int((0.03 + 0.10) * RATE)
    mic = np.zeros(len(spk16), np.float32)
    mic[lag:] = 0.5 * spk16[: len(spk16) - lag]
    mic += np.random.default_rng(1).normal(0, 3e-4, len(mic)).astype(np.float32)
    mic16 = (np.clip(mic, -1, 1) * 32767).astype(np.int16)
    echo = EchoCanceller(EchoSettings(delay_ms=250))
    if heard_time:
        echo.attach(None, playout)  # as the window attaches the direct player (the events below are its calls)
    echo.reference._clock = lambda: t[0]
    out, k = [], 0
    for j in range(0, len(mic16) - 479, 480):
        captured = 100.0 + (j + 480) / RATE
        while k < len(events) and events[k][0] <= captured:
            at, what, samples, heard_at = events[k]
            t[0] = at
            if heard_time and what == "played":
                echo.reference.played(samples, heard_at)
            elif not heard_time and what == "write":
                echo.reference.write(np.zeros(0, np.uint8), samples)
            k += 1
        out.append(echo.process(mic16[j : j + 480], captured))
    return mic16[: len(out) * 480], np.concatenate(out)


def _erle(mic: np.ndarray, out: np.ndarray, a_s: float, b_s: float) -> float:
    m, o = mic[int(a_s * RATE) : int(b_s * RATE)].astype(float), out[int(a_s * RATE) : int(b_s * RATE)].astype(float)
    return float(10 * np.log10(np.mean(m**2) / max(np.mean(o**2), 1e-12)))


def test_the_players_own_sound_keeps_the_echo_cancelled_when_the_player_catches_up_after_a_stall() -> None:
    stall = (4.0, 4.3)
    mic, heard = _through_the_player(True, stall)
    _, released = _through_the_player(False, stall)
    before = _erle(mic, heard, 2.5, 4.0)
    assert before >= 20.0 and _erle(mic, released, 2.5, 4.0) >= 20.0  # both converged while nothing changed
    # After the stall the player's sound reaches the speaker later than the stream released it (it primed again,
    # then trims silence back to its target): the stream's release times no longer say when the echo comes.
    after_heard, after_released = _erle(mic, heard, 4.4, 6.4), _erle(mic, released, 4.4, 6.4)
    assert after_heard >= 18.0, (after_heard, after_released)
    assert after_heard >= after_released + 6.0, (after_heard, after_released)
    print(f"ERLE before {before:.1f} dB; after the stall: player's sound {after_heard:.1f}, stream's {after_released:.1f}")


def test_silence_the_device_played_between_blocks_goes_into_the_reference() -> None:
    # An underrun in the sound server: the device plays silence the player never wrote, and every later block is
    # heard that much later. The reference keeps what the speaker played, silence included, on one clock.
    from assistant.audio.echo import EchoReference

    reference = EchoReference()
    block = 480  # 10 ms at 48 kHz

    def heard(i: int, late_s: float = 0.0) -> None:
        reference.played(np.full(block, 300 * (i + 1), np.int16), 100.0 + i * 0.01 + late_s)

    for i in range(50):
        heard(i)
    for i in range(50, 80):
        heard(i, late_s=0.1)  # 100 ms of the device's own silence before block 50
    for i, late in ((40, 0.0), (60, 0.1), (75, 0.1)):  # mid-block, clear of the resampler's edges
        at = reference.position_at(100.0 + i * 0.01 + late + 0.005)
        assert np.allclose(reference.samples(at, 16), 300 * (i + 1) / 32768, atol=0.002), i
    at = reference.position_at(100.0 + 50 * 0.01 + 0.05)  # inside the gap: what the speaker played was silence
    assert np.abs(reference.samples(at, 16)).max() < 0.002
    assert reference.gaps == 1  # one silence, filled once


class _Player:
    """The direct player's listener hook (AudioPlayout.add_listener), called here as its device callback would."""

    def __init__(self) -> None:
        self.listener = None

    def add_listener(self, listener) -> None:
        self.listener = listener

    def remove_listener(self, listener) -> None:
        self.listener = None

    def play(self, first: int, count: int) -> None:  # 10 ms blocks at 48 kHz, heard from t=100
        for i in range(first, first + count):
            self.listener(np.full(480, 1000 + i, np.int16), 100.0 + i * 0.01)


@pytest.mark.parametrize("arrives", [True, False])
def test_the_read_waits_for_the_players_next_block_instead_of_jumping(arrives: bool) -> None:
    """The microphone's chunk needs the player's sound up to 30 ms past what the player has handed over: its next
    blocks come a moment later (they come in bursts) and the read goes on unbroken. If they never come, the read
    jumps back to what is there, as before (and has waited REFERENCE_WAIT_MS for it)."""
    import threading

    echo = EchoCanceller(EchoSettings(delay_ms=250))
    player = _Player()
    echo.attach(None, player)
    player.play(0, 100)  # heard up to 101.0
    silence = np.zeros(480, np.int16)
    for j in range(25):  # the read ends 20 ms before each chunk's capture: up to 101.0 at the last
        echo.process(silence, 100.30 + 0.03 * j)
    before = echo.last_read[1]
    if arrives:
        threading.Timer(0.01, player.play, (100, 3)).start()
    echo.process(silence, 100.30 + 0.03 * 25)  # needs up to 101.03
    jumped = echo.last_read[1] != before + 480
    assert jumped is not arrives
