"""`assistant bench tiers`: what each dialogue model of the CPU tiers costs on this machine, and which tier it keeps
quick, measured rather than guessed.

Each candidate runs assistant.capability's workload (a 60-token prompt, then a 16-token first sentence): the
downloaded model where it is on disk, else its speed twin (`assistant models twin NAME`, built once; same shape,
vocabulary size and quantisation, random weights). Rounds alternate the bundled SmolLM2-135M and the candidate, so
a busy machine slows both alike; each candidate's figure is its median seconds and its ratio to the bundled
model's median in the same rounds. That ratio, times the reference machine's bundled workload, is the reference
cost assistant.recommend keeps (REFERENCE_LLM_S), so this command is how that table is made and checked.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from assistant.capability import open_for_workload, run_workload
from assistant.errors import AssistantError
from assistant.models import locate, state
from assistant.recommend import BUNDLED_LLM, CPU_TIERS, REFERENCE_LLM_S, REFERENCE_MACHINE_S


@dataclass(frozen=True)
class TierModelTime:
    name: str
    source: str  # "downloaded" or "twin"
    median_s: float  # the workload's seconds, median over the rounds
    bundled_median_s: float  # the bundled model's, in the same rounds
    ratio: float  # median_s / bundled_median_s
    reference_s: float  # ratio x REFERENCE_MACHINE_S: what assistant.recommend's table should hold
    table_s: float | None  # what it holds now


def candidates() -> list[str]:
    seen: list[str] = []
    for tier in CPU_TIERS[1:]:
        if tier.dialogue_model not in seen:
            seen.append(tier.dialogue_model)
    return seen


def model_file(name: str, models_dir: Path, twins_dir: Path) -> tuple[Path, str]:
    """The downloaded model when it is usable, else its twin (built when missing)."""
    if state(name, models_dir).usable:
        return locate(name, models_dir), "downloaded"
    from assistant.twins import build_twin

    return build_twin(name, twins_dir).path, "twin"


def time_candidate(name: str, path: Path, source: str, bundled: Path, rounds: int) -> TierModelTime:
    """Both models loaded and warmed up once, then `rounds` rounds alternating between them: a busy machine's
    load falls on both alike."""
    ours_llm, base_llm = open_for_workload(path), open_for_workload(bundled)
    try:
        run_workload(ours_llm), run_workload(base_llm)
        ours, theirs = [], []
        for _ in range(rounds):
            theirs.append(run_workload(base_llm).total_s)
            ours.append(run_workload(ours_llm).total_s)
    finally:
        ours_llm.close()
        base_llm.close()
    median, base = statistics.median(ours), statistics.median(theirs)
    ratio = median / base
    return TierModelTime(name, source, median, base, ratio, ratio * REFERENCE_MACHINE_S, REFERENCE_LLM_S.get(name))


def run_tiers(models_dir: Path, twins_dir: Path, names: list[str], rounds: int) -> list[TierModelTime]:
    bundled = locate(BUNDLED_LLM, models_dir)
    results = []
    for name in names:
        path, source = model_file(name, models_dir, twins_dir)
        print(f"timing {name} ({source}) ...", file=sys.stderr)
        results.append(time_candidate(name, path, source, bundled, rounds))
    return results


def register(bsub: argparse._SubParsersAction) -> None:
    parser = bsub.add_parser("tiers", help="what each CPU tier's dialogue model costs here (twins stand in)")
    parser.add_argument("--models", nargs="+", metavar="NAME", help="registry names (default: every tier's)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per model (default 5)")
    parser.add_argument("--twins-dir", type=Path, default=None,
                        help="where twins are built (default: paths.models_dir)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON array")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from assistant.config import load_settings

    settings = load_settings(getattr(args, "config", None))
    twins = (args.twins_dir or settings.models_dir).absolute()
    try:
        results = run_tiers(settings.models_dir, twins, args.models or candidates(), max(1, args.rounds))
    except AssistantError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"load_1min": load, "models": [asdict(r) for r in results]}, indent=2))
        return 0
    print(f"{'model':14s} {'source':10s} {'median s':>9s} {'bundled s':>9s} {'ratio':>6s} {'ref s':>6s} {'table':>6s}")
    for r in results:
        table = f"{r.table_s:.3f}" if r.table_s is not None else "-"
        print(f"{r.name:14s} {r.source:10s} {r.median_s:9.3f} {r.bundled_median_s:9.3f} {r.ratio:6.2f} "
              f"{r.reference_s:6.3f} {table:>6s}")  # fmt: skip
    print(f"load average (1 min) at the end: {load:.2f}")
    return 0
