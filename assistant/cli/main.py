"""Parse the command line, set up logging, dispatch to a subcommand module."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from assistant.errors import AssistantError
from assistant.redact import mask_text

# Subcommand modules, each with register(subparsers) that sets `func` on its parser.
_COMMAND_MODULES = (
    "assistant.cli.config_cmd",
    "assistant.cli.models_cmd",
    "assistant.cli.doctor_cmd",
    "assistant.cli.turn_cmd",
    "assistant.cli.lipsync_cmd",
    "assistant.cli.video_cmd",
    "assistant.cli.bench_cmd",
    "assistant.cli.shortcut_cmd",
    "assistant.cli.stream_cmd",
    "assistant.cli.present_cmd",
    "assistant.cli.serve_cmd",
)


def register_modules(sub: argparse._SubParsersAction, names: tuple[str, ...]) -> None:
    """Let each module in `names` add its subcommand; a module not written yet is skipped."""
    for name in names:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        module.register(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assistant", description="Local voice assistant with a talking-head avatar."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--config", metavar="FILE", help="use this config file instead of the user overlay")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    register_modules(sub, _COMMAND_MODULES)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from assistant.logging_setup import setup_logging

    setup_logging(verbose=args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (AssistantError, OSError) as e:  # OSError: a path the user gave (missing, a folder, no permission)
        _to_log_file(e)
        print(f"error: {mask_text(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if args.verbose:
            raise
        path = _to_log_file(e)
        print(
            f"error: {type(e).__name__}: {mask_text(str(e))} (details in {path}; -v shows them here)",
            file=sys.stderr,
        )
        return 1


def _to_log_file(error: BaseException) -> str:
    """Keep the traceback in the log file, not on the console: a user sees one line, a bug report has it all."""
    record = logging.getLogger("assistant.cli").makeRecord(
        "assistant.cli", logging.ERROR, __file__, 0, "command failed: %s", (error,),
        (type(error), error, error.__traceback__),
    )  # fmt: skip
    paths = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
            paths.append(handler.baseFilename)
    return paths[0] if paths else "the log file"
