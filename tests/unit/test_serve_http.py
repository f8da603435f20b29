"""The HTTP side of `assistant serve` in process, before any model is loaded: the page, the "loading" answers a
page shows, the token on every route off loopback, size limits. (A browser on a loaded server: the integration
test.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from assistant.config import load_settings
from assistant.serve.auth import AccessPolicy
from assistant.serve.hub import ServeHub
from assistant.serve.server import make_app

SDP = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
TOKEN = "a-long-enough-token-1234"


def with_client(policy: AccessPolicy, test: Callable[[TestClient], Awaitable[None]]) -> None:
    hub = ServeHub(load_settings())  # never loaded: the server says it is loading

    async def run() -> None:
        async with TestClient(TestServer(make_app(hub, policy))) as client:
            await test(client)

    try:
        asyncio.run(run())
    finally:
        hub.close()


async def body(response: Any) -> dict[str, Any]:
    return json.loads(await response.text())


def test_the_page_is_served_and_says_loading_until_the_models_are_ready() -> None:
    async def test(client: TestClient) -> None:
        page = await client.get("/")
        assert page.status == 200 and "<video" in await page.text()
        assert (await client.get("/app.js")).status == 200
        status = await client.get("/api/status")
        assert status.status == 200 and (await body(status))["state"] == "loading"
        offer = await client.post("/api/offer", json={"type": "offer", "sdp": SDP})
        refused = await body(offer)
        assert offer.status == 503 and refused["error"] == "loading" and "loading" in refused["message"]
        assert (await client.post("/api/session/nope/close")).status == 404
        assert (await client.post("/api/upload/x.webm", data=b"x")).status in (404, 405)  # only for tests

    with_client(AccessPolicy(None), test)


def test_off_loopback_every_route_needs_the_token() -> None:
    async def test(client: TestClient) -> None:
        for method, path in (("GET", "/"), ("GET", "/app.js"), ("GET", "/api/status"), ("POST", "/api/offer"),
                             ("POST", "/api/session/x/close")):  # fmt: skip
            response = await client.request(method, path)
            assert response.status == 401 and (await body(response))["error"] == "no_token", path
        assert (
            await client.get("/api/status", headers={"Authorization": "Bearer wrong-token-0000000"})
        ).status == 403
        assert (await client.get(f"/?token={TOKEN}")).status == 200
        assert (await client.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})).status == 200

    with_client(AccessPolicy(TOKEN), test)


def test_bad_and_oversized_requests_get_clear_errors() -> None:
    async def test(client: TestClient) -> None:
        bad = await client.post("/api/offer", data=b"{not json")
        assert bad.status == 400 and "JSON" in (await body(bad))["message"]
        wrong = await client.post("/api/offer", json={"type": "offer", "sdp": "hello"})
        assert wrong.status == 400 and "v=0" in (await body(wrong))["message"]
        big = await client.post("/api/offer", data=b"x" * 100_000)
        assert big.status == 413 and (await body(big))["error"] == "too_large"

    with_client(AccessPolicy(None), test)
