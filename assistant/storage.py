"""Folders the assistant writes to (replies, the conversation log, downloads): when one cannot be written, say
which folder and how to fix it, instead of blaming whichever stage happened to touch it first.

Needs only the standard library. `check_writable` is cheap (a mkdir and one small file), so callers run it after
a failure to tell a storage problem (read-only, no permission, full disk) from a fault of their own.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from assistant.errors import AssistantError

# errno values that mean "the folder, not the program": read-only, no permission, no space, over quota.
STORAGE_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR})


class StorageError(AssistantError, OSError):
    """A folder the assistant writes to is read-only, not ours, full or not a folder."""

    def __init__(self, folder: Path, cause: OSError) -> None:
        self.folder = Path(folder)
        self.cause = cause
        super().__init__(describe(self.folder, cause))

    def __str__(self) -> str:
        return describe(self.folder, self.cause)


def _fix(cause: OSError) -> str:
    if cause.errno == errno.EROFS:
        return "it is on a read-only file system: remount it read-write"
    if cause.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full: free some space"
    if cause.errno == errno.ENOTDIR:
        return "a file stands where the folder should be: move that file away"
    return f"give your user write permission (chown {os.getuid()} or chmod u+w on it)"


def describe(folder: Path, cause: OSError) -> str:
    """One line a user can act on: which folder, what is wrong, how to fix it."""
    reason = cause.strerror or str(cause)
    return (
        f"Cannot write to {folder} ({reason}); {_fix(cause)}, or set paths.data_dir in your config "
        "(`assistant config show` names the file) to a writable folder"
    )


def check_writable(folder: Path) -> None:
    """Raise StorageError when `folder` (created if missing) cannot take a new file right now."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-") as probe:
            probe.write(b"\0" * 4096)  # one page: a full disk refuses it even where an empty file fits
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as e:
        raise StorageError(_first_missing_or(folder), e) from e


def _first_missing_or(folder: Path) -> Path:
    """The folder to blame: the deepest one that exists (a read-only parent refuses the mkdir below it)."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe if probe.is_dir() else folder


def is_storage_error(error: BaseException) -> bool:
    """True for an OSError caused by the folder (read-only, permission, full), anywhere in the cause chain."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
            return True
        error = error.__cause__ or error.__context__
        seen += 1
    return False
