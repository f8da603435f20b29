"""`assistant bench asr` on three spoken questions with the real espeak-ng, Piper, VAD and Whisper: the report has
every figure, per voice, and its WER comes from the transcripts Whisper really wrote."""

from __future__ import annotations

import json

import pytest

from assistant.bench.asr import QUESTIONS, VOICES, format_text, normalise, run_bench, word_errors
from assistant.config import load_settings

pytestmark = pytest.mark.integration


def test_bench_asr_reports_wer_cutoffs_and_early_starts_from_real_transcripts() -> None:
    settings = load_settings()
    settings.audio.early_start_ms, settings.audio.end_silence_ms = 120, 500
    questions = [QUESTIONS[0], QUESTIONS[1], QUESTIONS[8]]  # paused "weather ... Berlin", "timer", "capital"
    voices = [v for v in VOICES if v.name in ("espeak-en-us", "piper-joe")]
    report = run_bench(settings, questions, voices)
    json.dumps(report)  # --json prints it as is

    assert report["settings"]["early_start_ms"] == 120 and report["settings"]["end_silence_ms"] == 500
    assert report["settings"]["asr_model"].startswith("whisper")
    assert set(report["voices"]) == {"espeak-en-us", "piper-joe"}
    overall = report["overall"]
    assert overall["questions"] == 6 and report["with_pause"]["questions"] == 2
    assert {"wer", "words", "false_cutoffs", "missed", "early_starts", "asr_s", "audio_s"} <= set(overall)
    assert overall["words"] == 2 * sum(len(q.reference.split()) for q in questions)
    assert overall["asr_s"]["max"] > 0 and 1.0 < overall["audio_s"]["median"] < 5.0
    assert report["rss_mb"]["peak"] >= report["rss_mb"]["end"] > 100
    assert "| espeak-en-us | 3 |" in format_text(report)

    rows = report["questions"]
    assert len(rows) == 6
    for row in rows:
        assert len(row["transcripts"]) == row["utterances"] >= 1
        hypothesis = " ".join(row["transcripts"])
        assert row["hypothesis_normalised"] == normalise(hypothesis)
        errors = word_errors([row["question"]], [hypothesis])
        assert row["wer"] == pytest.approx(errors.wer, abs=1e-4)
        assert row["early_starts"] >= 1  # at 120 ms one fires at least at the end of the question
        assert row["early_starts_wasted"] <= row["early_starts"]
    clean = next(r for r in rows if r["voice"] == "espeak-en-us" and r["question"].startswith("What is the capital"))
    assert clean["wer"] < 0.5 and "australia" in clean["hypothesis_normalised"]
    # The 400 ms pause is longer than the 120 ms early start: speech resumes after it, a wasted early start.
    paused = [r for r in rows if r["pause_ms"]]
    assert all(r["early_starts_wasted"] >= 1 for r in paused if not r["false_cutoff"])
    assert overall["wer"] < 0.5  # tiny.en hears these clean voices nearly word for word
