"""Read a command's `--json-log` lines from its stderr while it runs (the livestream tests drive `assistant stream`)."""

from __future__ import annotations

import json
import subprocess
import threading


class JsonLog:
    """Reads `proc`'s stderr on a thread: `raw` has every line, `records` the ones that are JSON objects."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.raw: list[str] = []
        self.records: list[dict] = []
        self._proc = proc
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self.raw.append(line)
            try:
                self.records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
