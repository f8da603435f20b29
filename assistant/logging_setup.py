"""Logging to the console and to a rotating file in the user data dir; -v turns on debug."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

import platformdirs

from assistant.config import APP_NAME
from assistant.redact import RedactingFilter

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
MAX_LOG_BYTES = 2 * 1024 * 1024  # 2 MiB a file, 3 backups


class _OneLineFormatter(logging.Formatter):
    """The console without -v: one line a record; the traceback goes to the log file only."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def log_file_path() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME)) / "assistant.log"


def setup_logging(verbose: bool = False, log_file: Path | None = None) -> Path:
    """Configure the root logger once; returns the log file path."""
    root = logging.getLogger()
    level = logging.DEBUG if verbose else logging.INFO
    root.setLevel(logging.DEBUG)
    path = log_file or log_file_path()
    for handler in list(root.handlers):
        if getattr(handler, "_assistant", False):
            root.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler()
    console.setLevel(level if verbose else logging.WARNING)
    console.setFormatter(
        logging.Formatter("%(levelname)s %(name)s: %(message)s") if verbose else _OneLineFormatter()
    )
    console._assistant = True  # type: ignore[attr-defined]
    console.addFilter(RedactingFilter())  # no password reaches the console or the file, whoever logs it
    root.addHandler(console)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_LOG_BYTES, backupCount=3)
    except OSError as e:  # a read-only home must not stop the app
        logging.getLogger(__name__).warning("cannot write the log file %s: %s", path, e)
        return path
    file_handler.setLevel(level)
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    file_handler._assistant = True  # type: ignore[attr-defined]
    file_handler.addFilter(RedactingFilter())
    root.addHandler(file_handler)
    for noisy in ("numba", "urllib3", "matplotlib", "PIL", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path
