"""`assistant bench turn --json` on the real pipeline: one turn, and the report has every field the README table uses."""

from __future__ import annotations

import json

import pytest

from assistant.cli.main import main

pytestmark = pytest.mark.integration


def test_bench_turn_json(capsys):
    assert main(["bench", "turn", "--runs", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs"] == 1
    assert set(report["ttff_s"]) == {"median", "max"} and report["ttff_s"]["median"] > 0
    assert {"early_start", "eos_detect", "asr", "llm_first_sentence", "tts_first_audio",
            "talking_head_first_segment"} <= set(report["stages_s"])  # fmt: skip
    assert report["stages_s"]["asr"] > 0 and report["peak_rss_mb"] > 100
    assert report["segment_gap_ms"]["max"] >= 0 and report["av_offset_ms"]["max"] <= 40
    turn = report["turns"][0]
    assert "capital" in turn["transcript"].lower() and turn["reply"]
    # The reply was prepared from the pause and shown only once the end of speech was confirmed.
    assert turn["early_start_s"] < turn["eos_detect_s"] <= report["ttff_s"]["max"]
