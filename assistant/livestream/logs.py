"""Logging for `assistant stream`: one line per event on stderr, as text or as JSON (`--json-log`), with every
URL password and RTMP stream key masked (`RedactingFilter`) before any handler sees the record."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from assistant.redact import RedactingFilter


class JsonFormatter(logging.Formatter):
    """{"ts": ISO 8601 UTC, "level", "logger", "msg", plus the record's `fields` (extra={"fields": {...}})}."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["error"] = record.exc_text
        return json.dumps(out, default=str)


def setup_stream_logging(json_lines: bool = False, verbose: bool = False) -> None:
    """Log INFO and up (DEBUG with `verbose`) to stderr, masked; the file log of `setup_logging` stays as it is."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._assistant = True  # type: ignore[attr-defined]
    for old in list(root.handlers):
        old.addFilter(RedactingFilter())
        if isinstance(old, logging.StreamHandler) and getattr(old, "stream", None) in (sys.stderr, sys.stdout):
            root.removeHandler(old)  # the console handler is replaced by this one
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    # pika logs every refused connect as an ERROR with a traceback; the consumer says it once, masked, itself.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
