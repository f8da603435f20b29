"""The first-sound figure the app shows: from when the user stopped speaking to when the reply's first sound
reaches the speaker, as the user perceives it.

The pipeline's stage times stop when the first segment is ready; the user also waits for the reply to be released
(a reply prepared at a pause waits for the end of speech to be confirmed), for the stream's next tick, and for the
player (its queue and the sound server). `FirstSound` puts the two ends together: the turn's end of speech (from
`TurnDone.end_of_speech_at`) and the stream's start of the reply's first segment plus the player's delay at that
moment. Either may come first (a short reply's turn is done before its sound starts; a long one's after).

A player that cannot say its delay (VLC) leaves it out, and the figure says so (`player_delay_known`).
`assistant bench live` compares this figure with the one measured at the speaker.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class FirstSoundFigure:
    turn_id: int
    seconds: float  # end of speech -> first sound at the speaker (without the player's delay when it is unknown)
    player_delay_known: bool

    def label(self) -> str:
        if self.player_delay_known:
            return f"first sound {self.seconds:.1f} s"
        return f"first sound {self.seconds:.1f} s + player delay"


class FirstSound:
    """Pairs each spoken turn's end of speech with its first sound; one figure per turn, once both are known."""

    KEEP = 16  # turns remembered while waiting for their other half

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ends: dict[int, float] = {}
        self._sounds: dict[int, tuple[float, bool]] = {}

    def end_of_speech(self, turn_id: int, at: float | None) -> FirstSoundFigure | None:
        """The turn is done; `at`: when its speaker stopped (None for a typed turn: no figure)."""
        if at is None:
            return None
        with self._lock:
            self._ends[turn_id] = at
            return self._pair(turn_id)

    def first_sound(self, turn_id: int, released_at: float, player_delay_s: float | None) -> FirstSoundFigure | None:
        """The stream released the reply's first sample at `released_at`; the player holds it `player_delay_s`."""
        with self._lock:
            if turn_id in self._sounds:
                return None
            known = player_delay_s is not None
            self._sounds[turn_id] = (released_at + (player_delay_s or 0.0), known)
            return self._pair(turn_id)

    def _pair(self, turn_id: int) -> FirstSoundFigure | None:
        end, sound = self._ends.get(turn_id), self._sounds.get(turn_id)
        for table in (self._ends, self._sounds):
            for old in sorted(table)[: -self.KEEP]:
                del table[old]
        if end is None or sound is None:
            return None
        del self._ends[turn_id]
        heard_at, known = sound
        return FirstSoundFigure(turn_id, heard_at - end, known)
