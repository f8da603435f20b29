"""A cancel token shared by the stages of one turn: new user speech cancels the reply in flight."""

from __future__ import annotations

import threading

from assistant.errors import Cancelled


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled(self.reason or "cancelled")

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to `timeout_s`; True if cancelled meanwhile."""
        return self._event.wait(timeout_s)
