"""`assistant bench soak`: a long conversation in one session, the way the desktop app keeps one: does the language
model's first sentence stay fast once the history budget fills, and does memory level off?

Typed turns through the real pipeline (the configured language model and TTS; the talking head off unless --video),
one Session for the whole run, like the app. Reports the first-sentence time per window of turns and the process's
RSS (VmRSS) after the warm-up turns and at the end. Needs nothing beyond the session's models.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from assistant.errors import AssistantError

WARMUP_TURNS = 20  # RSS growth is measured from here: model buffers, caches and the history fill first
QUESTIONS = (
    "What is the capital of France?", "Name a fruit that is yellow.", "How many days are in a week?",
    "What colour is the sky on a clear day?", "Tell me one fact about the moon.", "What do bees make?",
    "Which ocean is the largest?", "What is two plus three?", "Name an animal that can fly.",
    "What is the boiling point of water?", "Who wrote Romeo and Juliet?", "What language is spoken in Spain?",
    "How many legs does a spider have?", "What is the opposite of hot?", "Name a planet near the sun.",
    "What season comes after winter?", "What do plants need to grow?", "What is the largest mammal?",
)  # fmt: skip


def rss_mb() -> float:
    """This process's resident memory in MB (VmRSS from /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_soak(settings, turns: int, progress=None) -> dict[str, Any]:
    from assistant.session import Session

    records: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        settings.paths.data_dir = Path(tmp)
        session = Session(settings, lambda event: None)
        session.load()
        try:
            for i in range(turns):
                question = f"{QUESTIONS[i % len(QUESTIONS)]} (question {i + 1})"
                started = time.monotonic()
                result = session.run_turn(text=question)
                records.append({
                    "turn": i + 1,
                    "first_sentence_s": result.timings_s.get("llm_first_sentence", float("nan")),
                    "turn_s": time.monotonic() - started,
                    "rss_mb": rss_mb(),
                    "history_turns": len(getattr(session.dialogue, "history", ())),
                })  # fmt: skip
                if progress and (i + 1) % 10 == 0:
                    r = records[-1]
                    progress(f"turn {i + 1}: first sentence {r['first_sentence_s']:.2f} s, RSS {r['rss_mb']:.0f} MB")
        finally:
            session.close()
    return summarize(records)


def summarize(records: list[dict[str, float]]) -> dict[str, Any]:
    firsts = [r["first_sentence_s"] for r in records if r["first_sentence_s"] == r["first_sentence_s"]]
    window = max(1, min(20, len(records) // 4))
    base = records[min(WARMUP_TURNS, len(records)) - 1]["rss_mb"]
    end = records[-1]["rss_mb"]
    return {
        "turns": len(records),
        "first_sentence_s": {
            "median_first_window": round(statistics.median(firsts[:window]), 3),
            "median_last_window": round(statistics.median(firsts[-window:]), 3),
            "p95": round(sorted(firsts)[int(0.95 * (len(firsts) - 1))], 3),
            "max": round(max(firsts), 3),
            "window_turns": window,
        },
        "rss_mb": {
            "after_warmup": round(base, 1),
            "end": round(end, 1),
            "peak": round(max(r["rss_mb"] for r in records), 1),
            "growth_after_warmup_pct": round(100 * (end - base) / base, 2),
            "warmup_turns": min(WARMUP_TURNS, len(records)),
        },
        "per_turn": records,
    }


def register(bsub: argparse._SubParsersAction) -> None:
    parser = bsub.add_parser("soak", help="a long session: first-sentence time and RSS over many turns")
    parser.add_argument("--turns", type=int, default=200, help="typed turns in one session (default 200)")
    parser.add_argument("--video", action="store_true", help="render the talking head too (slower)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (with every turn)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from assistant.config import load_settings

    if args.turns < 2:
        raise AssistantError("--turns must be at least 2")
    settings = load_settings(args.config)
    settings.talking_head.enabled = bool(args.video)
    summary = run_soak(settings, args.turns, progress=lambda s: print(s, file=sys.stderr))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    fs, rss = summary["first_sentence_s"], summary["rss_mb"]
    print(
        f"{summary['turns']} turns: first sentence median {fs['median_first_window']:.2f} s (first "
        f"{fs['window_turns']}) -> {fs['median_last_window']:.2f} s (last {fs['window_turns']}), p95 {fs['p95']:.2f} s, "
        f"max {fs['max']:.2f} s\nRSS {rss['after_warmup']:.0f} MB after {rss['warmup_turns']} turns -> "
        f"{rss['end']:.0f} MB at the end ({rss['growth_after_warmup_pct']:+.1f} %), peak {rss['peak']:.0f} MB"
    )
    return 0
