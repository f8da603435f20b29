"""Media retention: the conversation log is kept, the reply audio and video of old turns is not. After each turn the
newest `keep_turns` turn folders (and at most `keep_mb` MB of them) stay; older ones are deleted, oldest first.

Needs only the standard library. Only folders named like the pipeline's turn folders (`turn-*`) are touched.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


def _size_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def prune_media(replies_dir: Path, keep_turns: int, keep_mb: float) -> list[Path]:
    """Delete the oldest turn folders beyond the limits (0 = no limit); returns what was deleted."""
    replies_dir = Path(replies_dir)
    if not replies_dir.is_dir() or (keep_turns <= 0 and keep_mb <= 0):
        return []
    turns = sorted(
        (p for p in replies_dir.glob("turn-*") if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True
    )  # newest first
    budget = keep_mb * 1e6 if keep_mb > 0 else float("inf")
    kept_bytes, deleted = 0, []
    for i, folder in enumerate(turns):
        size = _size_bytes(folder)
        over_count = keep_turns > 0 and i >= keep_turns
        over_size = i > 0 and kept_bytes + size > budget  # the newest turn always stays
        if over_count or over_size:
            shutil.rmtree(folder, ignore_errors=True)
            deleted.append(folder)
        else:
            kept_bytes += size
    if deleted:
        log.info("media retention: deleted %d old turn folder(s) in %s", len(deleted), replies_dir)
    return deleted
