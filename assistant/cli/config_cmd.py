"""`assistant config check [FILE]` and `assistant config show`: validate a config, show resolved settings."""

from __future__ import annotations

import argparse
import json
import sys

from assistant.config import DEFAULT_CONFIG_PATH, load_settings, settings_to_dict, user_config_path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="check or show the configuration")
    csub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = csub.add_parser("check", help="validate a config file (default: shipped defaults + user overlay)")
    check.add_argument("file", nargs="?", help="config file to check")
    check.set_defaults(func=_check)
    show = csub.add_parser("show", help="print the resolved settings and where each choice came from")
    show.add_argument("--json", action="store_true", help="one JSON object")
    show.set_defaults(func=_show)


def _check(args: argparse.Namespace) -> int:
    # strict: an overlay the app would skip (a folder, not UTF-8, too large) is an error here, not a notice
    settings = load_settings(args.file or args.config, strict=True)
    where = args.file or args.config or f"{DEFAULT_CONFIG_PATH} + {user_config_path()}"
    for notice in settings.load_notices:
        print(f"warning: {notice}", file=sys.stderr)
    print(f"OK: {where} is valid (gpu_profile: {settings.gpu_profile})")
    return 0


def _show(args: argparse.Namespace) -> int:
    from assistant.profile import resolve
    from assistant.talking_head.speed import measure_cpu_lipsync

    settings = load_settings(args.config)
    resolved = resolve(settings, cpu_lipsync_probe=measure_cpu_lipsync)  # what the app resolves
    if args.json:
        out = {
            "settings": settings_to_dict(settings, mask_secrets=True),
            "resolved": {k: resolved.value_of(k) for k in resolved.sources},
            "sources": resolved.sources,
            "user_config": str(user_config_path()),
        }
        out["resolved"]["profile"] = resolved.profile
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"gpu_profile resolves to: {resolved.profile}")
    for line in resolved.describe():
        print("  " + line)
    return 0
