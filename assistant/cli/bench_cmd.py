"""`assistant bench ...`: speed measurements on this machine. Each benchmark module registers its own subcommand."""

from __future__ import annotations

import argparse

# Benchmark modules, each with register(bench_subparsers) that sets `func` on its parser.
_BENCH_MODULES = (
    "assistant.bench.lipsync",
    "assistant.bench.turn",
    "assistant.bench.live",
    "assistant.bench.stream",
    "assistant.bench.echo",
    "assistant.bench.soak",
    "assistant.bench.asr",
    "assistant.bench.answers",
    "assistant.bench.tiers",
    "assistant.bench.serve",
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="measure speed on this machine")
    bsub = parser.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    from assistant.cli.main import register_modules  # main imports this module while building its parser

    register_modules(bsub, _BENCH_MODULES)
