"""bench soak's summary: windows of first-sentence times and RSS growth measured from the end of the warm-up."""

from __future__ import annotations

from assistant.bench.soak import WARMUP_TURNS, summarize


def test_summary_windows_and_growth_after_warmup() -> None:
    records = [
        {"turn": i + 1, "first_sentence_s": 0.2 if i < 80 else 2.0, "turn_s": 1.0,
         "rss_mb": 500.0 + (i if i < WARMUP_TURNS else WARMUP_TURNS + (i - WARMUP_TURNS) * 0.1), "history_turns": 3}
        for i in range(100)
    ]  # fmt: skip
    s = summarize(records)
    assert s["first_sentence_s"]["median_first_window"] == 0.2
    assert s["first_sentence_s"]["median_last_window"] == 2.0  # a slowdown at the end shows
    base = records[WARMUP_TURNS - 1]["rss_mb"]
    assert s["rss_mb"]["after_warmup"] == round(base, 1)
    assert s["rss_mb"]["growth_after_warmup_pct"] == round(100 * (records[-1]["rss_mb"] - base) / base, 2)
