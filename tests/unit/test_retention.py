"""Media retention on real folders: the newest N turns and at most M MB stay, the newest turn always, other files
(the conversation log) are never touched."""

from __future__ import annotations

import os
from pathlib import Path

from assistant.retention import prune_media


def _turns(root: Path, count: int, size: int) -> list[Path]:
    folders = []
    for i in range(count):
        folder = root / f"turn-20250101-1200{i:02d}-{1000 + i}-0001"
        folder.mkdir(parents=True)
        (folder / "seg-000.wav").write_bytes(b"\0" * size)
        os.utime(folder, (1_000_000 + i, 1_000_000 + i))  # i = age order, newest last
        folders.append(folder)
    return folders


def test_keeps_the_newest_turns_and_the_log(tmp_path: Path) -> None:
    folders = _turns(tmp_path, 6, 100)
    (tmp_path / "conversation-2025-01-01.jsonl").write_text("{}\n")
    deleted = prune_media(tmp_path, keep_turns=4, keep_mb=0)
    assert sorted(deleted) == folders[:2]
    assert [f.exists() for f in folders] == [False, False, True, True, True, True]
    assert (tmp_path / "conversation-2025-01-01.jsonl").exists()


def test_size_limit_deletes_oldest_but_never_the_newest(tmp_path: Path) -> None:
    folders = _turns(tmp_path, 4, 400_000)  # 0.4 MB each
    prune_media(tmp_path, keep_turns=0, keep_mb=1.0)
    assert [f.exists() for f in folders] == [False, False, True, True]
    prune_media(tmp_path, keep_turns=0, keep_mb=0.1)  # smaller than one turn: the newest still stays
    assert [f.exists() for f in folders] == [False, False, False, True]
