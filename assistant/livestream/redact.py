"""Keep credentials out of logs: mask the password of a URL, and a logging filter that masks any URL's password.

`mask_url("amqp://bot:s3cret@host/vh")` -> `"amqp://bot:***@host/vh"`. RTMP stream keys live in the path
(`rtmp://host/live/KEY`), so `mask_url` also hides the last path segment of an rtmp URL.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# scheme://user:password@ anywhere in a text (the password may hold anything but '@', '/' and whitespace)
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)([^@/\s]+)(@)")
# rtmp(s)://host[:port]/app/KEY: the stream key is a credential too
_RTMP_KEY = re.compile(r"(rtmps?://[^/\s]+/[^\s]*/)([^/\s?]+)")


def mask_url(url: str | None) -> str:
    """The URL with its password (and an RTMP stream key) replaced by ***; '' for None."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return mask_text(url)
    netloc = parts.netloc
    if parts.password is not None:
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{parts.username or ''}:{MASK}@{host}"
    path = parts.path
    if parts.scheme in ("rtmp", "rtmps") and path.count("/") >= 2:
        path = path.rsplit("/", 1)[0] + "/" + MASK
    return urlunsplit((parts.scheme, netloc, path, MASK if parts.query else "", ""))


def mask_text(text: str) -> str:
    """Mask every URL password and RTMP stream key inside a free text (an error message, ffmpeg's stderr)."""
    return _RTMP_KEY.sub(rf"\1{MASK}", _USERINFO.sub(rf"\1{MASK}\3", text))


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with `mask_text`, whatever logger it comes from (pika's included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is the logging module's to report
            return True
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
