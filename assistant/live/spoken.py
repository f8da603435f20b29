"""What the avatar really said of each reply: the ledger that keeps the dialogue history honest after a cut.

A reply reaches the user as segments queued into the live stream; each queued segment ends with exactly one
"finished" report from the stream (said in full, cut part-way by a fade, or dropped unsaid by a cancel). A reply is
*cut* when any of its segments was not said in full, or when its turn was cancelled (the rest was never generated
or never queued). Once a cut reply's queued segments have all reported, its spoken text is final: the segments said
in full plus the words of the cut one in proportion to how much of it played. `SpokenLedger` returns that verdict
once per turn; the caller amends the history with it.

Qt-free, no threads: the desktop window calls it on its GUI thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SpokenVerdict:
    turn_id: int
    spoken_text: str  # what the user heard of the reply ("" when nothing)
    played_s: float  # seconds of the reply's speech that were said


@dataclass
class _Turn:
    queued: dict[int, str] = field(default_factory=dict)  # segment index -> text
    said: dict[int, str] = field(default_factory=dict)  # index -> the part of its text that was said
    played_s: float = 0.0
    reported: int = 0
    cut: bool = False
    settled: bool = False


def said_part(text: str, played_s: float, duration_s: float) -> str:
    """The words of `text` said in `played_s` of its `duration_s`, in proportion (whole words, rounded down)."""
    if duration_s <= 0 or played_s <= 0:
        return ""
    if played_s >= duration_s:
        return text
    words = text.split()
    return " ".join(words[: int(len(words) * played_s / duration_s)])


class SpokenLedger:
    def __init__(self) -> None:
        self._turns: dict[int, _Turn] = {}

    def queued(self, turn_id: int, index: int, text: str) -> None:
        self._turns.setdefault(turn_id, _Turn()).queued[index] = text

    def finished(
        self, turn_id: int, index: int, text: str, played_s: float, duration_s: float, cancelled: bool
    ) -> SpokenVerdict | None:
        """The stream's report for one segment; a verdict when it settles a cut reply."""
        turn = self._turns.setdefault(turn_id, _Turn())
        turn.queued.setdefault(index, text)
        turn.reported += 1
        turn.played_s += min(played_s, duration_s) if duration_s > 0 else played_s
        turn.said[index] = said_part(text, played_s, duration_s) if cancelled else text
        if cancelled:
            turn.cut = True
        return self._settle(turn_id, turn)

    def turn_cut(self, turn_id: int) -> SpokenVerdict | None:
        """The turn was cancelled or interrupted: whatever it did not say is not said."""
        turn = self._turns.setdefault(turn_id, _Turn())
        turn.cut = True
        return self._settle(turn_id, turn)

    def _settle(self, turn_id: int, turn: _Turn) -> SpokenVerdict | None:
        if turn.settled or not turn.cut or turn.reported < len(turn.queued):
            return None
        turn.settled = True
        spoken = " ".join(turn.said[i] for i in sorted(turn.said) if turn.said[i]).strip()
        return SpokenVerdict(turn_id, spoken, turn.played_s)

    def forget_before(self, turn_id: int) -> None:
        """Drop the records of turns older than `turn_id` (keeps the ledger small over a long session)."""
        for old in [t for t in self._turns if t < turn_id - 8]:
            del self._turns[old]
