"""What one `assistant stream` run uses: the livestream section of the settings, overridden by the command line,
with the URLs (and their credentials) from the environment when neither gives them.

Precedence for each URL: the command line, then ASSISTANT_RTMP_URL / ASSISTANT_AMQP_URL, then the config file. The
environment is read by the caller (the CLI passes `os.environ`), so this module and its tests stay pure. The AMQP
URL is checked here (`check_amqp_url`), so a bad one fails the command at once, naming where it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from assistant.config import Settings
from assistant.livestream.consumer import check_amqp_url
from assistant.livestream.messages import Limits

RTMP_ENV = "ASSISTANT_RTMP_URL"
AMQP_ENV = "ASSISTANT_AMQP_URL"


@dataclass(frozen=True)
class StreamOptions:
    rtmp_url: str | None
    amqp_url: str | None
    queue: str = "avatar.speak"
    dead_letter_queue: str | None = None
    prefetch: int = 1
    video_bitrate: str = "2500k"
    keyframe_s: float = 2.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 10.0
    limits: Limits = Limits()
    record: Path | None = None

    def __repr__(self) -> str:  # never print the credentials
        from assistant.redact import mask_url

        return (
            f"StreamOptions(rtmp_url={mask_url(self.rtmp_url)!r}, amqp_url={mask_url(self.amqp_url)!r}, "
            f"queue={self.queue!r}, prefetch={self.prefetch}, record={self.record})"
        )


def stream_options(
    settings: Settings,
    rtmp_url: str | None = None,
    amqp_url: str | None = None,
    queue: str | None = None,
    record: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> StreamOptions:
    ls = settings.livestream
    env = env or {}
    amqp, source = next(
        ((url, name) for url, name in ((amqp_url, "--amqp"), (env.get(AMQP_ENV), AMQP_ENV),
                                       (ls.amqp_url, "livestream.amqp_url")) if url),
        (None, ""),
    )  # fmt: skip
    if amqp:
        check_amqp_url(amqp, source)  # a password pika would misread: refused now, naming where it came from
    return StreamOptions(
        rtmp_url=rtmp_url or env.get(RTMP_ENV) or ls.rtmp_url,
        amqp_url=amqp,
        queue=queue or ls.queue,
        dead_letter_queue=ls.dead_letter_queue,
        prefetch=ls.prefetch,
        video_bitrate=ls.video_bitrate,
        keyframe_s=ls.keyframe_s,
        reconnect_initial_s=ls.reconnect_initial_s,
        reconnect_max_s=max(ls.reconnect_max_s, ls.reconnect_initial_s),
        limits=Limits(ls.max_text_chars, ls.max_audio_s),
        record=Path(record).expanduser() if record else None,
    )
