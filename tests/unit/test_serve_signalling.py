"""The signalling request's checks (assistant.serve.peer.parse_offer): what a page must send, and what it is told."""

from __future__ import annotations

import pytest

from assistant.serve.peer import OfferError, parse_offer

SDP = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
)


def test_a_well_formed_offer_gives_its_sdp() -> None:
    assert parse_offer({"type": "offer", "sdp": SDP}, 10_000) == SDP


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ([SDP], "JSON object"),
        ({"sdp": SDP}, '"type" must be "offer"'),
        ({"type": "answer", "sdp": SDP}, '"type" must be "offer"'),
        ({"type": "offer"}, '"sdp" must be'),
        ({"type": "offer", "sdp": 42}, '"sdp" must be'),
        ({"type": "offer", "sdp": "hello"}, "starting with"),
        ({"type": "offer", "sdp": SDP + "a=x\r\n" * 5000}, "at most"),
        ({"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"}, "audio and a video"),
    ],
)
def test_a_bad_offer_is_refused_saying_what_is_wrong(body: object, why: str) -> None:
    with pytest.raises(OfferError, match=why):
        parse_offer(body, 10_000)
