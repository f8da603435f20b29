"""Whether one more browser may start a session: the models are loaded, the server is not full, its address holds
fewer sessions than allowed. Pure bookkeeping, thread-safe; the HTTP layer turns a `Refusal` into its response.

Needs nothing outside the standard library.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

from assistant.serve.auth import Refusal


@dataclass(frozen=True)
class Capacity:
    max_sessions: int
    max_per_address: int


class Admission:
    """Counts sessions per address; `admit` reserves a place or says why not, `release` gives it back."""

    def __init__(self, capacity: Capacity) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._by_address: Counter[str] = Counter()
        self.state = "loading"  # "loading", "ready" or "failed": the shared models
        self.failure = ""

    @property
    def sessions(self) -> int:
        with self._lock:
            return sum(self._by_address.values())

    def admit(self, address: str) -> Refusal | None:
        """Reserve a place for a session from `address`; None when admitted (then `release` it once it ends)."""
        if self.state == "loading":
            return Refusal(
                503, "loading", "The avatar is still loading its models; the page retries by itself."
            )
        if self.state == "failed":
            return Refusal(503, "failed", f"The server could not load its models: {self.failure}")
        cap = self.capacity
        with self._lock:
            if sum(self._by_address.values()) >= cap.max_sessions:
                return Refusal(
                    503, "full",
                    f"The server is full: {cap.max_sessions} people are talking to the avatar. "
                    "The page retries by itself when a place frees up.",
                )  # fmt: skip
            if self._by_address[address] >= cap.max_per_address:
                return Refusal(
                    429, "too_many",
                    f"This address already has {cap.max_per_address} sessions open; close one (another tab?) first.",
                )  # fmt: skip
            self._by_address[address] += 1
        return None

    def release(self, address: str) -> None:
        with self._lock:
            if self._by_address[address] > 0:
                self._by_address[address] -= 1
            if self._by_address[address] == 0:
                del self._by_address[address]
