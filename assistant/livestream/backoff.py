"""Exponential backoff with a cap and a little jitter: how long to wait before the next reconnect."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial_s: float = 0.5
    max_s: float = 10.0
    factor: float = 2.0
    jitter: float = 0.1  # +-10 %: competing consumers that lost the same broker do not retry in lockstep
    attempts: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        """The wait before the next try (initial, doubling, at most max_s), and count the try."""
        base = min(self.max_s, self.initial_s * self.factor**self.attempts)
        self.attempts += 1
        return max(0.0, base * (1.0 + self.jitter * (2.0 * self._rng.random() - 1.0)))

    def reset(self) -> None:
        """Connected again: the next loss starts from `initial_s`."""
        self.attempts = 0
