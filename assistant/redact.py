"""Keep credentials out of every output: the one place that masks a URL's password, an RTMP stream key and any
secret the process was told about, and a logging filter that applies it to every record.

    mask_url("amqp://bot:s3cret@host/vh")     -> "amqp://bot:***@host/vh"
    mask_url("amqp//bot:s3cret@host/vh")      -> "amqp//bot:***@host/vh"   (a typo is still a password)
    mask_url("rtmp://host/live/KEY")          -> "rtmp://host/live/***"    (an RTMP stream key is a credential)
    register_secret("S3cret#Pa55")            # from now on mask_text hides it, and its pieces, anywhere

A password is taken to run from the first ':' after the scheme to the LAST '@' of the URL, so a password holding
'#', '/', '?' or '@' (not percent-encoded, as users write them) is masked whole. `register_secret` covers what no
pattern can: a library's error message that quotes part of a password ("Port could not be cast to integer value
as 'S3cret'"). Needs nothing but the standard library.
"""

from __future__ import annotations

import logging
import re
import threading

MASK = "***"
MIN_PIECE_CHARS = 3  # pieces of a registered secret shorter than this are not masked (too many false hits)

# scheme://user:password@ (or the typo scheme//) anywhere in a text; the password may hold anything but whitespace
# and '@' up to the last '@' before whitespace.
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*:?//[^:/@\s]*:)(\S+)(@[^@\s]*)")
# rtmp(s)://host[:port]/app/KEY: the stream key is a credential too
_RTMP_KEY = re.compile(r"(rtmps?://[^/\s]+/[^\s]*/)([^/\s?]+)")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*:?//)")
_URL_DELIMITERS = re.compile(r"[#/?@:;&%]")

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(secret: str | None) -> None:
    """Mask `secret` in every later `mask_text` (and so in every log record), and the pieces a URL parser would
    cut it into at '#', '/', '?', '@', ':' (an error may quote only the part before a '#')."""
    if not secret:
        return
    pieces = {secret, *(p for p in _URL_DELIMITERS.split(secret) if len(p) >= MIN_PIECE_CHARS)}
    with _secrets_lock:
        _secrets.update(p for p in pieces if len(p) >= MIN_PIECE_CHARS or p == secret)


def url_password(url: str | None) -> str | None:
    """The password of a URL as written (not decoded), or None: what `register_secret` should be given."""
    if not url:
        return None
    match = _SCHEME.match(url)
    rest = url[match.end() :] if match else url
    if "@" not in rest:
        return None
    userinfo = rest.rsplit("@", 1)[0]
    return userinfo.split(":", 1)[1] if ":" in userinfo else None


def mask_url(url: str | None) -> str:
    """The URL with its password, query and (rtmp) stream key replaced by ***; '' for None."""
    if not url:
        return ""
    match = _SCHEME.match(url)
    scheme = match.group(1) if match else ""
    rest = url[len(scheme) :]
    if "@" in rest:
        userinfo, rest = rest.rsplit("@", 1)
        user = userinfo.split(":", 1)[0] if ":" in userinfo else userinfo
        rest = f"{user}:{MASK}@{rest}" if ":" in userinfo else f"{user}@{rest}"
    head, sep, _query = rest.partition("?")
    rest = head.partition("#")[0] + (f"?{MASK}" if sep else "")
    if scheme.lower().startswith("rtmp") and rest.count("/") >= 2:  # host/app/KEY (a typo'd rtmp// too)
        rest = rest.rsplit("/", 1)[0] + "/" + MASK
    return _hide_registered(scheme + rest)


def mask_text(text: str) -> str:
    """Mask every URL password, RTMP stream key and registered secret inside a free text (an error message, a
    subprocess's stderr, a traceback)."""
    return _hide_registered(_RTMP_KEY.sub(rf"\1{MASK}", _USERINFO.sub(rf"\1{MASK}\3", text)))


def _hide_registered(text: str) -> str:
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)  # the whole secret before its pieces
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and traceback) with `mask_text`, whatever logger it comes from (pika's
    included). Put it on a handler: it then sees every record that handler writes."""

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
        elif record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        return True
