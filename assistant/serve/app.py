"""Run `assistant serve`: listen at once (the page says "loading" meanwhile), load the models on a thread, serve
until SIGINT/SIGTERM, then close every session and free the models.

    options = ServeOptions(host="127.0.0.1", port=8765)
    run(settings, options, env=os.environ, announce=print)

`announce` gets the lines a person must see on the console (the address, with the token when one is needed); they
never go to the log.

Needs aiohttp and aiortc.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from assistant.config import Settings
from assistant.errors import ConfigError
from assistant.redact import register_secret
from assistant.serve.auth import TokenError, access_policy, is_loopback
from assistant.serve.hub import ServeHub
from assistant.serve.server import AccessLogger, make_app

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    tls_cert: Path | None = None
    tls_key: Path | None = None
    save_uploads: Path | None = None  # tests and `bench serve`: where the pages' recordings go


def _tls(options: ServeOptions) -> ssl.SSLContext | None:
    if (options.tls_cert is None) != (options.tls_key is None):
        raise ConfigError("give both --tls-cert and --tls-key, or neither")
    if options.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(options.tls_cert), str(options.tls_key))
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(
            f"cannot use the TLS certificate {options.tls_cert} / key {options.tls_key}: {e}"
        ) from e
    return context


def run(
    settings: Settings, options: ServeOptions, env: Mapping[str, str], announce: Callable[[str], None]
) -> int:
    try:
        policy, generated = access_policy(options.host, env)
    except TokenError as e:
        raise ConfigError(str(e)) from e
    register_secret(policy.token)  # masked in any log line that would quote it
    tls = _tls(options)
    hub = ServeHub(settings)
    app = make_app(hub, policy, options.save_uploads)
    try:
        asyncio.run(_serve(app, hub, options, tls, policy.token, generated, announce))
    finally:
        hub.close()
    return 0


async def _serve(app, hub, options, tls, token, generated, announce) -> None:
    runner = web.AppRunner(app, access_log_class=AccessLogger, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port, ssl_context=tls)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise ConfigError(
            f"cannot listen on {options.host}:{options.port}: {e.strerror or e}; pick another --port"
        ) from e
    port = runner.addresses[0][1] if runner.addresses else options.port
    scheme = "https" if tls else "http"
    shown = options.host if ":" not in options.host else f"[{options.host}]"
    address = f"{scheme}://{shown}:{port}/"
    announce(f"Serving the avatar at {address}" + (f"?token={token}" if token else ""))
    if token:
        announce("  every request needs that token" + (" (generated now; set ASSISTANT_SERVE_TOKEN to keep one)"
                                                       if generated else " (from ASSISTANT_SERVE_TOKEN)"))  # fmt: skip
    if not is_loopback(options.host) and not tls:
        announce("  browsers open the microphone only over HTTPS off localhost: use --tls-cert/--tls-key or a "
                 "reverse proxy (docs/serve.md)")  # fmt: skip
    log.info("listening on %s:%d; loading the models", options.host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loader = loop.run_in_executor(None, hub.load, lambda what: log.info("%s", what))
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await runner.cleanup()  # closes every session (the app's cleanup)
        await loader
