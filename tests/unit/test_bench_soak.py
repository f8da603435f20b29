"""bench soak's summary: windows of first-sentence times and RSS growth measured from the end of the warm-up."""

from __future__ import annotations

from assistant.bench.soak import WARMUP_TURNS, report, summarize


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


def _records(first_s, eval_tokens, shifts) -> list[dict]:
    return [
        {"turn": i + 1, "first_sentence_s": first_s(i), "turn_s": 1.0, "rss_mb": 600.0, "py_blocks": 1000,
         "history_turns": 5, "prompt_tokens": 900, "prompt_eval_tokens": eval_tokens(i),
         "cache_shift_tokens": 400 if i in shifts else 0}
        for i in range(200)
    ]  # fmt: skip


def test_flatness_is_the_ratio_of_window_medians_and_trims_show_what_they_evaluated() -> None:
    flat = summarize(_records(lambda i: 0.3 + 0.01 * (i % 3), lambda i: 20, {60, 120, 180}))
    fs = flat["first_sentence_s"]
    assert [w["turns"] for w in fs["windows_after_warmup"]][:2] == ["21-40", "41-60"]
    assert fs["windows_after_warmup"][-1]["turns"] == "181-200"
    assert fs["last_to_first_after_warmup"] == 1.0
    assert flat["prompt_eval_tokens"]["trims"] == 3 and flat["prompt_eval_tokens"]["max_at_trims"] == 20
    # A trim that re-evaluates the history, and a slowing model: both show, in tokens and in the ratio.
    slow = summarize(_records(lambda i: 0.3 + 0.01 * i, lambda i: 700 if i in (60, 120) else 20, {60, 120}))
    assert slow["prompt_eval_tokens"]["max_at_trims"] == 700 and slow["prompt_eval_tokens"]["max_after_warmup"] == 700
    assert slow["first_sentence_s"]["last_to_first_after_warmup"] > 3
    text = report(slow)
    assert "last/first" in text and "2 history trims, at most 700 evaluated at one" in text
