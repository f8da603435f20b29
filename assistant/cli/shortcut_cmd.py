"""`assistant install-shortcut [--desktop] [--remove]`: put the app in the menu (and on the desktop)."""

from __future__ import annotations

import argparse

from assistant.shortcut import install_shortcut, remove_shortcut


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "install-shortcut",
        help="add a launcher for the desktop app to the application menu",
        description="Write a freedesktop .desktop launcher into $XDG_DATA_HOME/applications that runs "
        "the app from this checkout's virtual environment.",
    )
    parser.add_argument("--desktop", action="store_true", help="also put it on the desktop (marked trusted)")
    parser.add_argument("--remove", action="store_true", help="remove the launcher(s) instead")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.remove:
        result = remove_shortcut()
        for path in result.paths:
            print(f"removed {path}")
    else:
        result = install_shortcut(on_desktop=args.desktop)
        for path in result.paths:
            print(f"wrote {path}")
    for note in result.notes:
        print(f"note: {note}")
    return 0
