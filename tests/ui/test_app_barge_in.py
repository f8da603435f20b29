"""Barge-in in the real app under Xvfb: `python -m ui.app` with its hands-free microphone, echo canceller, direct
player and bundled models, in a private PulseAudio room whose speaker the microphone hears (100 ms, -6 dB). A long
reply is asked for and a spoken question interrupts it, over the session's first reply and over a later one. Judged
from the recordings of the speaker and the microphone and from what the app wrote down (`assistant.bench.echo_app`);
recordings and the app's log are kept in test-artifacts/echo-app/."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.bench.echo_app import run_app_barge_in

pytestmark = [pytest.mark.integration, pytest.mark.ui]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "echo-app"


def test_a_question_said_over_the_reply_stops_it_is_heard_and_answered():
    report = run_app_barge_in(ARTIFACTS, at_s=(1.0, 3.0))
    for run in report.runs:
        print(run)
        assert run.interrupted, run  # the app cut its reply (and kept only what was said)
        # The reply went quiet at the speaker while the user was still asking (the figure itself is a benchmark's:
        # `assistant bench echo`), and nothing of the cut voice came back before the answer.
        assert run.stop_latency_ms is not None and 0 < run.stop_latency_ms < run.question_s * 1000, run
        assert run.scrap_ms == 0, run
        # The question was heard whole, over the avatar's voice, and answered.
        words = run.transcript.lower()
        assert "capital" in words and "japan" in words, run
        assert run.answer == "The capital of Japan is Tokyo.", run
