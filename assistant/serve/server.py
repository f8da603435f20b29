"""The HTTP side of `assistant serve`: the page, its status, WebRTC signalling, hang-up; auth and limits on all.

Routes (every one behind the access token when the server is bound off loopback, `auth.AccessPolicy`):
  GET  /                     the page (static HTML + JS from `page/`, no build step)
  GET  /app.js, /style.css   its script and style
  GET  /api/status           {"state": "loading" | "ready" | "failed", "sessions": n, "max_sessions": m, ...}
  POST /api/offer            {"type": "offer", "sdp": ...} -> {"type": "answer", "sdp": ..., "session": id};
                             400 for a bad offer, 503 while loading or when full, 429 too many from one address
  POST /api/session/{id}/close   the page hangs up (also as a beacon when the tab closes)
  POST /api/upload/{name}    only with `save_uploads`: the page's recording of what it played and its in-page
                             measurements (the tests and `assistant bench serve`)

Bodies above `serve.max_request_bytes` get 413. Errors come back as JSON `{"error": code, "message": text}`. The
access log gives method, path (never the query: it may hold the token) and status. A sweeper closes sessions that
never connected (`serve.connect_timeout_s`), whose page stopped pinging (a tab closed without hanging up), or
that went silent (`serve.idle_timeout_s`).

Needs aiohttp and aiortc.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from assistant.serve.auth import AccessPolicy, Refusal
from assistant.serve.conversation import PING_S
from assistant.serve.hub import ServeHub
from assistant.serve.peer import OfferError, Peer, parse_offer

log = logging.getLogger(__name__)

PAGE_DIR = Path(__file__).with_name("page")
STATIC = {"/": "index.html", "/app.js": "app.js", "/style.css": "style.css"}
SWEEP_S = 1.0
# A connected page that sent nothing this long has gone (closed tab, crashed browser).
PAGE_GONE_S = 5 * PING_S
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
_UPLOAD_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\.(webm|json)$")

HUB = web.AppKey("hub", ServeHub)
POLICY = web.AppKey("policy", AccessPolicy)
PEERS = web.AppKey("peers", dict)
UPLOADS = web.AppKey("uploads", object)


class AccessLogger(AbstractAccessLogger):
    """One line a request, without the query string (it may carry the token)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %d (%.0f ms)", request.method, request.path, response.status, time * 1000)


def _error(refusal: Refusal) -> web.Response:
    return web.json_response({"error": refusal.code, "message": refusal.message}, status=refusal.status)


def _bad_request(message: str) -> web.Response:
    return _error(Refusal(400, "bad_request", message))


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """The token check on every request, and a JSON error (never a traceback) for whatever goes wrong."""
    refusal = request.app[POLICY].check(request.query.get("token"), request.headers.get("Authorization"))
    if refusal is not None:
        return _error(refusal)
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status == 413:
            return _error(Refusal(413, "too_large", f"request body too large: {e.text}"))
        raise
    except Exception as e:  # one request's bug must not reach the other sessions
        log.exception("%s %s failed", request.method, request.path)
        return _error(Refusal(500, "internal", f"the server failed on this request: {type(e).__name__}"))


async def static(request: web.Request) -> web.StreamResponse:
    name = STATIC[request.path]
    response = web.FileResponse(PAGE_DIR / name)
    response.headers["Cache-Control"] = "no-store"
    return response


async def status(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    a = hub.admission
    body: dict[str, Any] = {"state": a.state, "sessions": a.sessions, "max_sessions": a.capacity.max_sessions}
    if a.state == "failed":
        body["message"] = f"The server could not load its models: {a.failure}"
    if hub.setup is not None:
        s = hub.setup.settings
        body["video"] = {"width": s.width, "height": s.height, "fps": s.fps, "engine": hub.setup.engine}
    return web.json_response(body)


async def offer(request: web.Request) -> web.Response:
    app = request.app
    hub = app[HUB]
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _bad_request('the body must be JSON: {"type": "offer", "sdp": "..."}')
    try:
        sdp = parse_offer(body, hub.settings.serve.max_request_bytes)
    except OfferError as e:
        return _bad_request(str(e))
    address = request.remote or "unknown"
    refusal = hub.admission.admit(address)
    if refusal is not None:
        return _error(refusal)
    s = hub.setup.settings if hub.setup is not None else None
    assert s is not None
    peers: dict[str, Peer] = app[PEERS]
    try:
        peer = Peer(secrets.token_hex(8), address, hub.new_session, s.fps, s.audio_rate_hz,
                    on_closed=lambda p: _forget(app, p))  # fmt: skip
    except Exception:
        hub.admission.release(address)
        raise
    peers[peer.id] = peer
    try:
        answer = await peer.answer(sdp)
    except OfferError as e:
        await peer.close("bad offer")
        return _bad_request(str(e))
    except Exception:
        await peer.close("the server failed to answer")  # its place is given back at once
        raise
    log.info("session %s opened from %s (%d open)", peer.id, address, len(peers))
    return web.json_response({"type": "answer", "sdp": answer, "session": peer.id})


def _forget(app: web.Application, peer: Peer) -> None:
    if app[PEERS].pop(peer.id, None) is not None:
        app[HUB].admission.release(peer.address)


async def hang_up(request: web.Request) -> web.Response:
    peer = request.app[PEERS].get(request.match_info["id"])
    if peer is None:
        return _error(Refusal(404, "no_session", "no such session (it has ended already)"))
    await peer.close("the page hung up")
    return web.json_response({"closed": peer.id})


async def upload(request: web.Request) -> web.Response:
    folder: Path = request.app[UPLOADS]  # type: ignore[assignment]
    name = request.match_info["name"]
    if not _UPLOAD_NAME.match(name):
        return _bad_request("upload name: letters, digits, - and _, ending in .webm or .json")
    size = 0
    with (folder / f"{name}.part").open("wb") as f:
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                return _error(Refusal(413, "too_large", f"uploads are at most {MAX_UPLOAD_BYTES} bytes"))
            f.write(chunk)
    (folder / f"{name}.part").replace(folder / name)
    return web.json_response({"saved": name, "bytes": size})


async def _sweep(app: web.Application) -> None:
    """Close the sessions that never connected or went silent."""
    serve = app[HUB].settings.serve
    while True:
        await asyncio.sleep(SWEEP_S)
        now = time.monotonic()
        for peer in list(app[PEERS].values()):
            if not peer.connected and now - peer.created_at > serve.connect_timeout_s:
                await peer.close(f"the browser did not connect within {serve.connect_timeout_s:g} s")
            elif peer.connected and peer.session.page_silent_s(now) > PAGE_GONE_S:
                await peer.close(f"the page sent nothing for {PAGE_GONE_S:g} s")
            elif peer.session.idle_s(now) > serve.idle_timeout_s:
                await peer.close(f"nothing was said for {serve.idle_timeout_s:g} s")


async def _start_sweeper(app: web.Application) -> Any:
    task = asyncio.ensure_future(_sweep(app))
    yield
    task.cancel()
    for peer in list(app[PEERS].values()):
        await peer.close("the server is shutting down")


def make_app(hub: ServeHub, policy: AccessPolicy, save_uploads: Path | None = None) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=hub.settings.serve.max_request_bytes)
    app[HUB] = hub
    app[POLICY] = policy
    app[PEERS] = {}
    for path in STATIC:
        app.router.add_get(path, static)
    app.router.add_get("/api/status", status)
    app.router.add_post("/api/offer", offer)
    app.router.add_post("/api/session/{id}/close", hang_up)
    if save_uploads is not None:
        save_uploads.mkdir(parents=True, exist_ok=True)
        app[UPLOADS] = save_uploads
        app.router.add_post("/api/upload/{name}", upload)
    app.cleanup_ctx.append(_start_sweeper)
    return app
