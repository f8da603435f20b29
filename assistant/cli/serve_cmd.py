"""`assistant serve [--host 127.0.0.1] [--port N] [--max-sessions N] [--tls-cert F --tls-key F]`: the avatar in a
browser for several people at once, over WebRTC (docs/serve.md).

One process keeps the models loaded; each browser that opens the page gets its own conversation and live avatar.
Bound to anything but loopback, every request needs the access token printed at start (or ASSISTANT_SERVE_TOKEN).
SIGTERM or Ctrl-C close the sessions and exit 0.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve", help="serve the avatar to browsers over WebRTC",
        description="Serve a web page where each visitor talks to the avatar (microphone or typed questions) and "
        "sees and hears it live over WebRTC. Listens on 127.0.0.1 unless --host says otherwise; any other address "
        "needs the access token printed at start (or set in ASSISTANT_SERVE_TOKEN).",
    )  # fmt: skip
    parser.add_argument("--host", help="address to listen on (default: serve.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: serve.port, 8765; 0 = any free one)")
    parser.add_argument(
        "--max-sessions", type=int, metavar="N", help="browsers at once (default: serve.max_sessions)"
    )
    parser.add_argument(
        "--tls-cert", type=Path, metavar="FILE", help="serve HTTPS with this certificate (PEM)"
    )
    parser.add_argument("--tls-key", type=Path, metavar="FILE", help="... and this private key (PEM)")
    parser.add_argument(
        "--save-uploads", type=Path, help=argparse.SUPPRESS
    )  # tests/bench: the pages' recordings
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from assistant.config import load_settings
    from assistant.serve.app import ServeOptions, run

    settings = load_settings(args.config) if args.config else load_settings()
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("max_sessions", args.max_sessions))
                 if v is not None}  # fmt: skip
    if overrides:
        # Validated like the config file: a bad --port names the key and what is allowed.
        from pydantic import ValidationError

        from assistant.config import ServeSettings
        from assistant.errors import ConfigError

        try:
            serve = ServeSettings(**{**settings.serve.model_dump(), **overrides})
        except ValidationError as e:
            bad = e.errors()[0]
            option = "--" + str(bad["loc"][0]).replace("_", "-")
            raise ConfigError(f"{option} {bad['input']!r}: {bad['msg']}") from e
        settings = settings.model_copy(update={"serve": serve})
    s = settings.serve
    options = ServeOptions(s.host, s.port, args.tls_cert, args.tls_key, args.save_uploads)
    return run(settings, options, env=os.environ, announce=lambda line: print(line, flush=True))
