"""The `assistant` command. Each subcommand lives in its own module with `register(subparsers)`."""

from assistant.cli.main import main

__all__ = ["main"]
