"""`assistant bench turn`: how its computed segment lateness is worked out; one real turn through `--json`.

`segment_late_ms` and `av_offset_metadata_ms` are computed (ready times plus nominal durations; ffprobe stream
metadata), not measured at a player: the first test pins the computation down on hand-made segments, the
second checks the real report is consistent with the reply it describes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from assistant.bench.turn import segment_late_ms
from assistant.cli.main import main
from assistant.events import SegmentReady, SpeechAudio
from assistant.sentences import split_sentences


def _segment(index: int, ready_at_s: float, duration_s: float) -> SegmentReady:
    speech = SpeechAudio(Path(f"seg-{index}.wav"), 22050, duration_s, "piper")
    return SegmentReady(turn_id=1, at_s=ready_at_s, index=index, speech=speech, video=None)


def test_segment_late_ms_is_the_worst_wait_when_played_back_to_back() -> None:
    # Segment 0 plays 10.0-11.0; segment 1 is ready at 10.5, plays 11.0-13.0; segment 2 is ready at 13.25:
    # 250 ms after segment 1 ends. Segment 3 was ready long before its turn: not late.
    segs = [_segment(0, 10.0, 1.0), _segment(2, 13.25, 0.5), _segment(1, 10.5, 2.0), _segment(3, 10.1, 1.0)]
    assert segment_late_ms(segs) == pytest.approx(250.0)
    # The wait pushes playback on: segment 3 starts at 13.75 (after 2), so being ready at 14.0 is 250 ms late.
    segs[3] = _segment(3, 14.0, 1.0)
    assert segment_late_ms(segs) == pytest.approx(250.0)
    segs[3] = _segment(3, 14.5, 1.0)
    assert segment_late_ms(segs) == pytest.approx(750.0)
    assert segment_late_ms([_segment(0, 5.0, 3.0)]) == 0.0  # a single segment is never late


@pytest.mark.integration
def test_bench_turn_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "turn", "--runs", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs"] == 1
    assert set(report["ttff_s"]) == {"median", "max"} and report["ttff_s"]["median"] > 0
    assert {"early_start", "eos_detect", "asr", "llm_first_sentence", "tts_first_audio",
            "talking_head_first_segment"} <= set(report["stages_s"])  # fmt: skip
    assert report["stages_s"]["asr"] > 0 and report["peak_rss_mb"] > 100
    assert "segment_gap_ms" not in report and "av_offset_ms" not in report  # no figure posing as measured

    turn = report["turns"][0]
    assert "capital" in turn["transcript"].lower() and turn["reply"]
    # Every reply sentence becomes at least one segment (the first may be cut into pieces).
    assert turn["segments"] >= len(split_sentences(turn["reply"])) >= 1
    late = turn["segment_late_ms_max"]
    assert math.isfinite(late) and late >= 0
    if turn["segments"] == 1:
        assert late == 0.0  # nothing to wait for
    assert report["segment_late_ms"]["max"] == pytest.approx(late, abs=0.05)  # the summary is this turn's
    offset = turn["av_offset_metadata_ms_max"]
    assert 0 <= offset <= 40 and report["av_offset_metadata_ms"]["max"] == pytest.approx(offset, abs=0.05)
    # The reply was prepared from the pause and shown only once the end of speech was confirmed.
    assert turn["early_start_s"] < turn["eos_detect_s"] <= report["ttff_s"]["max"]
