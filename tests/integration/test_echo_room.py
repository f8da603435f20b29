"""Barge-in through the path a user has: the virtual room (a private PulseAudio, its speaker looped into its
microphone at 100 ms and -6 dB, room noise) with the app's own objects in it, `assistant bench echo`'s harness: the
direct player's `AudioPlayout` playing the real `LiveStream` into the room's speaker through PortAudio, the
microphone's `LiveListener` reading the room's microphone through PortAudio with the canceller of `barge_in_setup`
wired as the window wires it, the real `TurnTaking`, and the bundled Whisper on what the listener cut.

Outcomes only: how fast the reply stops is a benchmark figure (`assistant bench echo`, docs/benchmarks.md)."""

from __future__ import annotations

import shutil

import pytest

from assistant.bench.echo import NOISE_AT_S, run_echo

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (shutil.which("pulseaudio") and shutil.which("espeak-ng")), reason="needs PulseAudio"),
]


def test_a_question_over_the_reply_stops_it_and_is_understood(tmp_path) -> None:
    # The user speaks with the bundled Piper voice: espeak-ng's formant voice is at the edge of what Whisper tiny.en
    # hears even without the room. The first question comes 1 s into the session's first reply (the canceller has
    # heard little of the avatar yet), the second 3 s into the next; a third reply nobody interrupts has two coughs
    # and a knock played into it.
    report = run_echo(1, 100.0, -6.0, tmp_path, progress=lambda m: None, user_voice="piper-joe", noises=True,
                      at_s=(1.0, 3.0))  # fmt: skip
    cut = [r for r in report.runs if r.interrupted]
    assert len(cut) == 2 and cut[0].first_reply
    for run in cut:
        assert run.scrap_ms == 0.0, run  # nothing of the cut reply came back after it stopped
        assert run.silent_ok, run  # the same question in the silent room, through the same path, is heard
        if run.stopped_early:
            # Open (docs/benchmarks.md, "Talking over the avatar"): the avatar's own residual echo can still stop a
            # reply by itself after the machine stalls (on a fresh clone 1 of 25 plain replies and 1 interrupted
            # one, both right after one 109 ms stall; more on a loaded machine); the recogniser then answers the
            # echo and hears the question as a second utterance. Measured by `bench echo`, not asserted here.
            continue
        assert run.detected, run  # the user's voice stopped the reply ...
        assert run.stop_latency_ms is not None, run  # ... and the speaker fell silent after the question began
        # the question asked over the reply is heard, every key word
        assert all(k in run.transcript.lower() for k in run.keys), (run.question, run.transcript)
    (plain,) = [r for r in report.runs if not r.interrupted]
    if plain.false_barge_in:  # the coughs and the knock never interrupt; the echo still may (above)
        assert plain.false_at_s is not None and not _near_a_noise(plain.false_at_s), plain
    assert report.erle_db and min(report.erle_db) >= 15.0  # the canceller removes the echo


def _near_a_noise(at_s: float) -> bool:
    """Whether a false onset came with one of the noises played into the reply (a cough or the knock)."""
    return any(abs(at_s - noise) < 0.6 for noise in NOISE_AT_S)
