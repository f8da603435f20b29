"""One browser's WebRTC connection: the page's offer in, the answer out, and everything tied to it until it ends.

`Peer.answer(offer_sdp)` makes an aiortc `RTCPeerConnection` for the offer: the avatar's audio and video go out on
the page's transceivers, the page's microphone track comes in (`media.read_microphone` -> the session's VAD), its
data channel carries the JSON messages both ways (`BrowserSession.handle_message` in, `send` out). A peer ends
(`close`) when the browser leaves (connection closed or failed), hangs up, goes silent for `serve.idle_timeout_s`,
or never connects; its session stops its turns and stream, and its place in the server is given back.

Needs aiortc.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from assistant.serve.conversation import BrowserSession, MessageError
from assistant.serve.media import StreamTracks, read_microphone

log = logging.getLogger(__name__)

MAX_UNSENT = 200  # messages kept for a data channel that is not open yet


class OfferError(ValueError):
    """The page's offer cannot be used; the text says why (it goes back as a 400)."""


def parse_offer(body: Any, max_sdp_chars: int) -> str:
    """The SDP of a signalling request `{"type": "offer", "sdp": "v=0..."}`; OfferError saying what is wrong."""
    if not isinstance(body, dict):
        raise OfferError('the body must be a JSON object {"type": "offer", "sdp": "..."}')
    if body.get("type") != "offer":
        raise OfferError(f'"type" must be "offer" (got {str(body.get("type"))[:20]!r})')
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise OfferError('"sdp" must be a session description starting with "v=0"')
    if len(sdp) > max_sdp_chars:
        raise OfferError(f'"sdp" is {len(sdp)} characters; at most {max_sdp_chars}')
    if "m=audio" not in sdp or "m=video" not in sdp:
        raise OfferError("the offer must have an audio and a video section (the page adds both)")
    return sdp


class Peer:
    def __init__(
        self,
        peer_id: str,
        address: str,
        make_session: Callable[[str, Callable[[dict[str, Any]], None]], BrowserSession],
        fps: float,
        audio_rate_hz: int,
        on_closed: Callable[[Peer], None],
    ) -> None:
        self.id = peer_id
        self.address = address
        self.loop = asyncio.get_running_loop()
        self.created_at = time.monotonic()
        self.connected = False
        self.closing = False
        self.pc = RTCPeerConnection()
        self.tracks = StreamTracks(self.loop, fps, audio_rate_hz)
        self.channel: RTCDataChannel | None = None
        self._unsent: deque[str] = deque(maxlen=MAX_UNSENT)
        self._on_closed = on_closed
        self._tasks: set[asyncio.Task] = set()
        self.session = make_session(peer_id, self.send)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    # ---- signalling ----
    async def answer(self, offer_sdp: str) -> str:
        """The answer SDP; OfferError when aiortc cannot use the offer."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as e:  # aiortc raises ValueError, KeyError, ... for a bad SDP
            raise OfferError(
                f"the offer's session description cannot be used: {type(e).__name__}: {e}"
            ) from e
        kinds = {t.kind for t in self.pc.getTransceivers()}
        if not {"audio", "video"} <= kinds:
            raise OfferError("the offer must have an audio and a video section (the page adds both)")
        self.pc.addTrack(self.tracks.audio)
        self.pc.addTrack(self.tracks.video)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.session.start(self.tracks)
        return self.pc.localDescription.sdp

    # ---- to the page ----
    def send(self, message: dict[str, Any]) -> None:
        """Queue a message for the page; safe from any thread."""
        text = json.dumps(message)
        try:
            self.loop.call_soon_threadsafe(self._send_now, text)
        except RuntimeError:  # the loop has closed
            pass

    def _send_now(self, text: str) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(text)
        else:
            self._unsent.append(text)

    # ---- from the page ----
    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self.channel is not None:
            channel.close()  # one channel per session: the page opens one
            return
        self.channel = channel

        @channel.on("open")
        def flush() -> None:
            while self._unsent and channel.readyState == "open":
                channel.send(self._unsent.popleft())

        @channel.on("message")
        def on_message(raw: str | bytes) -> None:
            try:
                self.session.handle_message(raw)
            except MessageError as e:
                self._send_now(json.dumps({"type": "error", "text": f"Message refused: {e}"}))

        if channel.readyState == "open":
            flush()

    def _on_track(self, track: Any) -> None:
        if track.kind != "audio":
            return
        self._spawn(read_microphone(track, self.session.vad_rate_hz, self.session.hear))

    async def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and not self.connected:
            self.connected = True
            log.info(
                "session %s connected (%.1f s after the offer)", self.id, time.monotonic() - self.created_at
            )
        elif state in ("failed", "closed"):
            await self.close("the browser left" if state == "closed" else "the connection failed")

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- the end ----
    async def close(self, reason: str) -> None:
        """Tell the page why, stop the session (off the loop: it joins threads), close the connection. Once."""
        if self.closing:
            return
        self.closing = True
        self._send_now(json.dumps({"type": "closed", "reason": reason}))
        await asyncio.sleep(0.05)  # let the message out before the channel closes
        await self.loop.run_in_executor(None, self.session.close, reason)
        st = self.tracks.stats
        log.info(
            "session %s media: %d ticks; video sent %d, dropped %d, waited %.0f ms (max %.0f); audio dropped %d, "
            "waited %.0f ms (max %.0f)", self.id, st.ticks, st.video_sent, st.video_dropped, st.video_wait_ms_mean,
            st.video_wait_ms_max, st.audio_dropped, st.audio_wait_ms_mean, st.audio_wait_ms_max,
        )  # fmt: skip
        await self.pc.close()
        for task in list(self._tasks):
            task.cancel()
        self._on_closed(self)
