"""`assistant bench answers --limit 3 --json` through the real command: espeak-ng and Piper ask, the bundled Whisper,
SmolLM2 and Piper answer. The report has every figure per voice, the follow-up was asked with its lead in the
history, and each verdict agrees with the reply the model really wrote (checked here by plain regular
expressions, not by the benchmark's own scorer)."""

from __future__ import annotations

import json
import re
import statistics

import pytest

from assistant.bench.answers import format_text
from assistant.bench.asr import word_errors
from assistant.cli.main import main

pytestmark = pytest.mark.integration

# The first three questions of data/answers.yaml, and what a right reply says (digits or words).
RIGHT = {
    "What is the capital of Japan?": r"\btokyo\b",
    "What currency do they use there?": r"\byen\b",
    "What is seven times eight?": r"\b(56|fifty[- ]six)\b",
}


def test_bench_answers_scores_real_replies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "answers", "--limit", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)

    assert {"asr", "llm", "tts"} <= set(report["engines"]) and "whisper" in report["engines"]["asr"]
    assert report["settings"]["voices"] == ["espeak-en-us", "piper-joe"]
    assert "COMPUTED" in report["settings"]["first_audio_computed_s"] and "temperature" in report["settings"]
    rows = report["questions"]
    assert [(r["voice"], r["question"]) for r in rows] == [
        (v, q) for v in ("espeak-en-us", "piper-joe") for q in RIGHT
    ]

    for row in rows:
        assert row["reply"], row  # the bundled models answer every one of these
        assert row["answer_right"] == bool(re.search(RIGHT[row["question"]], row["reply"].lower())), row
        assert (row["matched"] is not None) == row["answer_right"]
        assert row["heard_exactly"] == (row["wer"] == 0.0), row  # exact after normalising, so no word errors
        assert row["wer"] == pytest.approx(word_errors([row["question"]], [row["transcript"]]).wer, abs=1e-4)
        assert 0.0 < row["first_audio_computed_s"] < 30.0 and 1.0 < row["speech_s"] < 5.0
        # The follow-up is asked with the turn before it in the history; every other question starts afresh.
        assert row["history_turns"] == (1 if row["follow_up"] else 0), row

    for name, group in [*report["voices"].items(), ("all", report["overall"])]:
        mine = [r for r in rows if name == "all" or r["voice"] == name]
        assert group["questions"] == len(mine) == (6 if name == "all" else 3)
        assert group["heard_exactly"] == sum(r["heard_exactly"] for r in mine)
        assert group["answers_right"] == sum(r["answer_right"] for r in mine)
        errors = word_errors([r["question"] for r in mine], [r["transcript"] for r in mine])
        assert group["wer"] == pytest.approx(errors.wer, abs=1e-4)
        first = [r["first_audio_computed_s"] for r in mine]
        assert group["first_audio_computed_s"]["median"] == pytest.approx(statistics.median(first), abs=1e-3)
        assert group["first_audio_computed_s"]["max"] == pytest.approx(max(first), abs=1e-3)

    # tiny.en hears the lead question word for word in both voices, and SmolLM2 knows Japan's capital.
    leads = [r for r in rows if r["question"] == "What is the capital of Japan?"]
    assert all(r["heard_exactly"] for r in leads)
    assert report["overall"]["answers_right"] >= 1
    table = format_text(report)
    assert "| all | 6 |" in table and "| piper-joe | What is the capital of Japan? |" in table
