"""The conversation log: one JSON line per finished turn in the user data dir, flushed and fsynced at once, so a crash
loses no finished turn. The file is 0600 in a 0700 folder: only the user reads what was said."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any

from assistant.pipeline import TurnResult


def private_folder(folder: Path) -> None:
    """`folder` (and a data folder it creates above it) readable by the user only: 0700. Another user on the
    machine must not list or read what was said."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for created in missing:
        created.chmod(0o700)  # mkdir(parents=True) makes the parents with the umask's mode
    if folder.stat().st_uid == os.getuid():
        folder.chmod(0o700)


class ConversationLog:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.folder / f"conversation-{dt.date.today().isoformat()}.jsonl"

    def append(self, result: TurnResult, started_at: dt.datetime, source: str) -> dict[str, Any]:
        record = {
            "turn_id": result.turn_id,
            "started_at": started_at.isoformat(timespec="milliseconds"),
            "ended_at": dt.datetime.now().astimezone().isoformat(timespec="milliseconds"),
            "source": source,
            "transcript": result.transcript,
            "reply": result.reply,
            "cancelled": result.cancelled,
            "audio_paths": [str(p) for p in result.audio_paths],
            "video_paths": [str(p) for p in result.video_paths],
            "engines": result.engines,
            "timings_s": {k: round(v, 4) for k, v in result.timings_s.items()},
        }
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            private_folder(self.folder)
            # Several processes may append at once (two `assistant ask`): O_APPEND puts each write at the end, and
            # the lock keeps a line that takes more than one write() whole.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.fchmod(fd, 0o600)  # a log written by an older version was 0644: what was said is the user's only
                fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)  # releases the lock
        return record

    def read(self) -> list[dict[str, Any]]:
        """Every complete line of today's log (a line cut short by a crash is skipped)."""
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records
