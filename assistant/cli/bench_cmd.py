"""`assistant bench ...`: speed measurements on this machine. Each benchmark module registers its own subcommand."""

from __future__ import annotations

import argparse
import importlib

# Benchmark modules, each with register(bench_subparsers) that sets `func` on its parser.
_BENCH_MODULES = (
    "assistant.bench.lipsync",
    "assistant.bench.turn",
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="measure speed on this machine")
    bsub = parser.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    for name in _BENCH_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that benchmark is not written yet
                continue
            raise
        module.register(bsub)
