"""Which turns belong to the conversation on screen: the bookkeeping of "New conversation".

Starting afresh (the menu, or said aloud) must forget the dialogue history and keep every late report of an older
turn off the new conversation's panel. Two things make that more than a counter:

- a turn may be in flight when the user starts afresh: it is cut, but it still enters the history as it ends, so
  the history is forgotten again once it has ended (`reset_due`, asked on the worker thread as the turn ends);
- that turn may not have said its id yet (its first report comes later): until the worker says the turn ended,
  the first unseen turn id that turns up is counted as the old conversation's.

`ConversationBounds` holds this state for the window (it has no Qt and starts no thread); the window asks it and
shows the result. Thread-safe: the worker thread asks `reset_due` while the GUI thread reports.
"""

from __future__ import annotations

import threading


class ConversationBounds:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_turn_id = 0  # the newest turn id reported so far
        self._forgotten_through = 0  # turns up to this id belong to a forgotten conversation
        self._in_flight = False  # a turn was running when the user started afresh, its id maybe still unseen
        self._reset_owed = False  # that turn must make the history forget again once it has ended

    def seen(self, turn_id: int) -> None:
        """A report of `turn_id` arrived."""
        with self._lock:
            self._last_turn_id = max(self._last_turn_id, turn_id)

    def start_afresh(self, turn_running: bool) -> None:
        """The user started a new conversation; `turn_running`: the worker was running a turn (it is being cut)."""
        with self._lock:
            self._forgotten_through = self._last_turn_id
            self._in_flight = turn_running
            self._reset_owed = turn_running

    def started_afresh_at(self, turn_id: int) -> None:
        """The session itself forgot the history in turn `turn_id` (said aloud): older turns are the old ones."""
        with self._lock:
            self._forgotten_through = max(self._forgotten_through, turn_id - 1)

    def forgotten(self, turn_id: int, live: bool = False) -> bool:
        """Whether `turn_id` belongs to a conversation the user started afresh from. `live`: the turn-taking
        controller's own turn, which is never the one that was in flight."""
        with self._lock:
            if self._in_flight and not live and turn_id > self._forgotten_through:
                self._forgotten_through = turn_id  # the turn that was in flight: first heard of now
            return turn_id <= self._forgotten_through

    def turn_ended(self) -> None:
        """The worker finished a turn: any turn in flight at the restart has said all it will say."""
        with self._lock:
            self._in_flight = False

    def reset_due(self) -> bool:
        """Asked as a turn ends, on the worker thread: True once, when the cut turn owes a second forgetting."""
        with self._lock:
            owed, self._reset_owed = self._reset_owed, False
            return owed

    def worker_idle(self) -> None:
        """The worker has no turn running: a reset it owed went with the turn that ended."""
        with self._lock:
            self._reset_owed = False
