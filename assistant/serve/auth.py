"""Who may use `assistant serve`: the access token, and whether a request carries it.

On 127.0.0.1 (or ::1, localhost) only this machine can connect and no token is asked. Bound to any other address
every request needs the token, whichever interface it arrives on: in the page's address (`?token=...`, which the
page then moves out of the address bar) or as `Authorization: Bearer ...` (the page's API calls). The token comes
from the environment (ASSISTANT_SERVE_TOKEN; the CLI passes `os.environ`, so this module stays pure) or is
generated at start and printed once on the console; it is never logged (the caller registers it with
`assistant.redact`, so even a message that quotes it is masked).

Needs nothing outside the standard library.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

TOKEN_ENV = "ASSISTANT_SERVE_TOKEN"
MIN_TOKEN_CHARS = 16  # a shorter token from the environment is refused: it could be guessed
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~-]+$")  # what survives a URL query unescaped


class TokenError(ValueError):
    """The token from the environment cannot be used (too short, or characters a URL would mangle)."""


@dataclass(frozen=True)
class Refusal:
    """Why a request is turned away: the HTTP status and a message for the person at the browser."""

    status: int
    code: str  # "no_token", "bad_token", "full", ...: what the page switches on
    message: str


def is_loopback(host: str) -> bool:
    """Whether `host` (what the server binds to) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AccessPolicy:
    """The token every request must carry; None on a loopback address (nothing is asked)."""

    token: str | None

    @property
    def required(self) -> bool:
        return self.token is not None

    def check(self, query_token: str | None, authorization: str | None) -> Refusal | None:
        """None when the request may go on; else why not (401: no token given, 403: a wrong one)."""
        if self.token is None:
            return None
        given = query_token
        if authorization and authorization.startswith("Bearer "):
            given = authorization[len("Bearer ") :].strip()
        if not given:
            return Refusal(
                401, "no_token",
                "This server needs its access token: open the address printed by `assistant serve` "
                "(it ends in ?token=...).",
            )  # fmt: skip
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return Refusal(
                403, "bad_token", "Wrong access token: use the address printed by `assistant serve`."
            )
        return None


def access_policy(host: str, env: Mapping[str, str]) -> tuple[AccessPolicy, bool]:
    """The policy for a server bound to `host`, and whether its token was generated here (then the caller prints
    it once). Raises TokenError for an unusable ASSISTANT_SERVE_TOKEN."""
    if is_loopback(host):
        return AccessPolicy(None), False
    given = env.get(TOKEN_ENV, "").strip()
    if not given:
        return AccessPolicy(secrets.token_urlsafe(24)), True  # 32 characters, 192 random bits
    if len(given) < MIN_TOKEN_CHARS or not _TOKEN_CHARS.match(given):
        raise TokenError(
            f"{TOKEN_ENV} must be at least {MIN_TOKEN_CHARS} characters of letters, digits and ._~- "
            f"(it has {len(given)}); unset it to have a token generated"
        )
    return AccessPolicy(given), False
