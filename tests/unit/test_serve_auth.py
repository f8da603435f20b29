"""assistant.serve.auth and admission: who may connect, and whether there is room."""

from __future__ import annotations

import pytest

from assistant.serve.admission import Admission, Capacity
from assistant.serve.auth import TOKEN_ENV, AccessPolicy, TokenError, access_policy, is_loopback

TOKEN = "a-long-enough-token-1234"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.5.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
     ("192.168.1.20", False), ("::", False), ("example.org", False)],
)  # fmt: skip
def test_only_loopback_addresses_go_without_a_token(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    policy, _ = access_policy(host, {})
    assert policy.required is not loopback


def test_a_token_is_generated_off_loopback_unless_the_environment_gives_one() -> None:
    policy, generated = access_policy("0.0.0.0", {})
    assert generated and policy.token is not None and len(policy.token) >= 32
    other, _ = access_policy("0.0.0.0", {})
    assert other.token != policy.token
    given, generated = access_policy("0.0.0.0", {TOKEN_ENV: f"  {TOKEN} "})
    assert given.token == TOKEN and not generated


@pytest.mark.parametrize("bad", ["short", "has spaces in it, a long one", "ünïcödé-tokens-are-refused-here"])
def test_an_unusable_token_in_the_environment_is_refused_saying_why(bad: str) -> None:
    with pytest.raises(TokenError, match=TOKEN_ENV):
        access_policy("0.0.0.0", {TOKEN_ENV: bad})


def test_requests_need_the_right_token_in_the_query_or_the_header() -> None:
    policy = AccessPolicy(TOKEN)
    missing = policy.check(None, None)
    assert missing is not None and missing.status == 401 and "token" in missing.message
    wrong = policy.check("not-the-token", None)
    assert wrong is not None and wrong.status == 403
    assert policy.check(None, "Bearer not-the-token").status == 403  # type: ignore[union-attr]
    assert policy.check(TOKEN, None) is None
    assert policy.check(None, f"Bearer {TOKEN}") is None
    assert policy.check("wrong", f"Bearer {TOKEN}") is None  # the header wins: the page sends both
    assert AccessPolicy(None).check(None, None) is None


def test_admission_says_loading_full_or_too_many_and_frees_places() -> None:
    a = Admission(Capacity(max_sessions=3, max_per_address=2))
    assert a.admit("10.0.0.1").code == "loading"  # type: ignore[union-attr]
    a.state, a.failure = "failed", "no avatar photo"
    refused = a.admit("10.0.0.1")
    assert refused is not None and refused.status == 503 and "no avatar photo" in refused.message
    a.state = "ready"
    assert a.admit("10.0.0.1") is None and a.admit("10.0.0.1") is None
    too_many = a.admit("10.0.0.1")
    assert too_many is not None and too_many.status == 429
    assert a.admit("10.0.0.2") is None
    full = a.admit("10.0.0.3")
    assert full is not None and full.status == 503 and full.code == "full" and "full" in full.message
    assert a.sessions == 3
    a.release("10.0.0.1")
    assert a.admit("10.0.0.3") is None
    a.release("10.0.0.9")  # never admitted: nothing to give back
    assert a.sessions == 3
