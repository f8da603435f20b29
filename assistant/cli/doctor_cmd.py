"""`assistant doctor [--json] [--verify]`: one table of what is ready and the command for what is not.

Exit status 0 when the offline default (bundled models, Piper, light talking head) can run, 1 otherwise. A
config that does not load is reported as a failed check (the models folder then falls back to the project's
`models/`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from assistant.doctor import FAIL, Check, format_report, run_doctor
from assistant.errors import ConfigError
from assistant.inputs import folder_arg


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("doctor", help="check tools, packages, devices and models; say how to fix")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--verify", action="store_true", help="also check model sha256 sums")
    parser.add_argument("--models-dir", metavar="DIR", type=folder_arg, help="instead of paths.models_dir from the config")
    parser.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from assistant.config import PROJECT_ROOT, load_settings

    extra: list[Check] = []
    models_dir = Path(args.models_dir) if args.models_dir else None
    try:
        settings = load_settings(getattr(args, "config", None))
        extra.append(Check("config", "config", "ok", "loads and validates", "", True))
        models_dir = models_dir or settings.models_dir
    except ConfigError as e:
        extra.append(
            Check("config", "config", FAIL, str(e).replace("\n", " "), "assistant config check", True)
        )
        models_dir = models_dir or PROJECT_ROOT / "models"
    report = run_doctor(models_dir, verify=args.verify, extra_checks=extra)
    if args.json:
        out = report.to_dict()
        out["models_dir"] = str(models_dir)
        print(json.dumps(out, indent=2))
    else:
        print(format_report(report))
    return 0 if report.ready else 1
