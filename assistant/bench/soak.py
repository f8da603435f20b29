"""`assistant bench soak`: a long conversation in one session, the way the desktop app keeps one: does the language
model's first sentence stay fast once the history budget fills, and does memory level off?

Typed turns through the real pipeline (the configured language model and TTS; the talking head off unless --video),
one Session for the whole run, like the app. Reports, per turn and summarised:
- the first-sentence time, as medians of 20-turn windows and the ratio of the last window to the first one after the
  warm-up (on a shared machine the seconds move with the load; the ratio of windows says whether it stays flat);
- the prompt tokens llama.cpp had to evaluate (the rest came from its cache) and the tokens shifted out of its
  cache when the history was trimmed: the cause of a slow first sentence, independent of the machine's load;
- the process's RSS (VmRSS) after the warm-up turns and at the end, and Python's allocated blocks (a leak of
  Python objects shows there; native memory only in the RSS).
Needs nothing beyond the session's models.
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
WINDOW_TURNS = 20  # first-sentence medians are taken over windows of this many turns
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
                dialogue = session.dialogue
                records.append({
                    "turn": i + 1,
                    "first_sentence_s": result.timings_s.get("llm_first_sentence", float("nan")),
                    "turn_s": time.monotonic() - started,
                    "rss_mb": rss_mb(),
                    "py_blocks": sys.getallocatedblocks(),
                    "history_turns": len(getattr(dialogue, "history", ())),
                    "prompt_tokens": getattr(dialogue, "last_prompt_tokens", None),
                    "prompt_eval_tokens": getattr(dialogue, "last_prompt_eval_tokens", None),
                    "cache_shift_tokens": getattr(dialogue, "last_cache_shift_tokens", 0),
                })  # fmt: skip
                if progress and (i + 1) % 10 == 0:
                    r = records[-1]
                    progress(
                        f"turn {i + 1}: first sentence {r['first_sentence_s']:.2f} s, prompt {r['prompt_tokens']} "
                        f"tokens ({r['prompt_eval_tokens']} evaluated), RSS {r['rss_mb']:.0f} MB"
                    )
        finally:
            session.close()
    return summarize(records)


def _median_s(records: list[dict[str, Any]]) -> float:
    values = [r["first_sentence_s"] for r in records if r["first_sentence_s"] == r["first_sentence_s"]]
    return round(statistics.median(values), 3) if values else float("nan")


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    firsts = [r["first_sentence_s"] for r in records if r["first_sentence_s"] == r["first_sentence_s"]]
    window = max(1, min(WINDOW_TURNS, len(records) // 4))
    warmup = min(WARMUP_TURNS, len(records))
    base = records[warmup - 1]["rss_mb"]
    end = records[-1]["rss_mb"]
    # Medians of consecutive windows after the warm-up (turns 21-40, 41-60, ...): flat means the last is about the
    # first; the ratio is what to compare between runs on a loaded machine, not the seconds.
    windows = [
        {"turns": f"{records[a]['turn']}-{records[min(a + window, len(records)) - 1]['turn']}",
         "median_s": _median_s(records[a : a + window])}
        for a in range(warmup, len(records) - window + 1, window)
    ]  # fmt: skip
    after = [r for r in records[warmup:] if r.get("prompt_eval_tokens") is not None]
    shifted = [r for r in after if r.get("cache_shift_tokens")]
    return {
        "turns": len(records),
        "first_sentence_s": {
            "median_first_window": _median_s(records[:window]),
            "median_last_window": _median_s(records[-window:]),
            "p95": round(sorted(firsts)[int(0.95 * (len(firsts) - 1))], 3),
            "max": round(max(firsts), 3),
            "window_turns": window,
            "windows_after_warmup": windows,
            "last_to_first_after_warmup": (
                round(windows[-1]["median_s"] / windows[0]["median_s"], 2) if len(windows) >= 2 else None
            ),
        },
        "prompt_eval_tokens": {  # None: the model's chat template is not one the dialogue can follow
            "max_after_warmup": max((r["prompt_eval_tokens"] for r in after), default=None),
            "median_after_warmup": statistics.median([r["prompt_eval_tokens"] for r in after]) if after else None,
            "max_at_trims": max((r["prompt_eval_tokens"] for r in shifted), default=None),
            "trims": len(shifted),
            "max_prompt_tokens": max((r["prompt_tokens"] for r in after), default=None),
        },
        "rss_mb": {
            "after_warmup": round(base, 1),
            "end": round(end, 1),
            "peak": round(max(r["rss_mb"] for r in records), 1),
            "growth_after_warmup_pct": round(100 * (end - base) / base, 2),
            "warmup_turns": warmup,
            "py_blocks_after_warmup": records[warmup - 1].get("py_blocks"),
            "py_blocks_end": records[-1].get("py_blocks"),
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
    print(report(summary))
    return 0


def report(summary: dict[str, Any]) -> str:
    """The summary in a few lines for a person."""
    fs, rss, ev = summary["first_sentence_s"], summary["rss_mb"], summary["prompt_eval_tokens"]
    lines = [
        f"{summary['turns']} turns: first sentence median {fs['median_first_window']:.2f} s (first "
        f"{fs['window_turns']}) -> {fs['median_last_window']:.2f} s (last {fs['window_turns']}), "
        f"p95 {fs['p95']:.2f} s, max {fs['max']:.2f} s"
    ]
    if fs["windows_after_warmup"]:
        medians = ", ".join(f"{w['turns']}: {w['median_s']:.2f}" for w in fs["windows_after_warmup"])
        ratio = fs["last_to_first_after_warmup"]
        tail = f"; last/first {ratio:.2f}" if ratio else ""
        lines.append(f"first-sentence medians by window (s): {medians}{tail}")
    if ev["max_after_warmup"] is not None:
        lines.append(
            f"prompt tokens evaluated per turn after the warm-up: median {ev['median_after_warmup']:.0f}, max "
            f"{ev['max_after_warmup']} (of prompts up to {ev['max_prompt_tokens']}); {ev['trims']} history trims"
            + (f", at most {ev['max_at_trims']} evaluated at one" if ev["trims"] else "")
        )
    lines.append(
        f"RSS {rss['after_warmup']:.0f} MB after {rss['warmup_turns']} turns -> {rss['end']:.0f} MB at the end "
        f"({rss['growth_after_warmup_pct']:+.1f} %), peak {rss['peak']:.0f} MB; Python blocks "
        f"{rss['py_blocks_after_warmup']} -> {rss['py_blocks_end']}"
    )
    return "\n".join(lines)
