"""Folders the assistant writes to (replies, the conversation log, downloads): when one cannot be written, say
which folder and how to fix it, instead of blaming whichever stage happened to touch it first.

Needs only the standard library. `check_writable` is cheap (a mkdir and one small file), so callers run it after
a failure to tell a storage problem (read-only, no permission, full disk) from a fault of their own.

`atomic_path` is the one way a file appears under a name a user will open: written to a hidden `.NAME.part` beside
it, renamed into place only when complete, removed when anything fails (a full disk leaves nothing half-written).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from assistant.errors import AssistantError

# Where the data folder is the one at fault, a user can also move it; a file the user named can go elsewhere.
DATA_DIR_HINT = (
    "or set paths.data_dir in your config (`assistant config show` names the file) to a writable folder"
)
OUTPUT_HINT = "or write it to another folder"
PART_SUFFIX = ".part"

# errno values that mean "the folder, not the program": read-only, no permission, no space, over quota.
STORAGE_ERRNOS = frozenset(
    {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR}
)


class StorageError(AssistantError, OSError):
    """A folder the assistant writes to is read-only, not ours, full or not a folder."""

    def __init__(self, folder: Path, cause: OSError, hint: str = DATA_DIR_HINT) -> None:
        self.folder = Path(folder)
        self.cause = cause
        self.hint = hint
        super().__init__(cause.errno, describe(self.folder, cause, hint))

    def __str__(self) -> str:
        return describe(self.folder, self.cause, self.hint)


def _fix(cause: OSError) -> str:
    if cause.errno == errno.EROFS:
        return "it is on a read-only file system: remount it read-write"
    if cause.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full: free some space"
    if cause.errno == errno.ENOTDIR:
        return "a file stands where the folder should be: move that file away"
    return f"give your user write permission (chown {os.getuid()} or chmod u+w on it)"


def describe(folder: Path, cause: OSError, hint: str = DATA_DIR_HINT) -> str:
    """One line a user can act on: which folder, what is wrong, how to fix it."""
    reason = cause.strerror or str(cause)
    return f"Cannot write to {folder} ({reason}); {_fix(cause)}, {hint}"


def check_writable(folder: Path, hint: str = DATA_DIR_HINT) -> None:
    """Raise StorageError when `folder` (created if missing) cannot take a new file right now."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-") as probe:
            probe.write(b"\0" * 4096)  # one page: a full disk refuses it even where an empty file fits
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as e:
        raise StorageError(_first_missing_or(folder), e, hint) from e


def _first_missing_or(folder: Path) -> Path:
    """The folder to blame: the deepest one that exists (a read-only parent refuses the mkdir below it)."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe if probe.is_dir() else folder


def is_storage_error(error: BaseException) -> bool:
    """True for an OSError caused by the folder (read-only, permission, full), anywhere in the cause chain."""
    return _storage_cause(error) is not None


def _storage_cause(error: BaseException | None) -> OSError | None:
    """The first OSError in the cause chain whose errno blames the storage; a StorageError counts as one."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
            return error
        error = error.__cause__ or error.__context__
        seen += 1
    return None


def part_path(path: Path) -> Path:
    """The hidden name a file is written under until it is complete: `.NAME.part` in the same folder (same file
    system, so the rename that finishes it is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}{PART_SUFFIX}")


def check_free_space(path: Path, need_bytes: int, hint: str = OUTPUT_HINT) -> None:
    """StorageError (ENOSPC) before any byte is written when the folder of file `path` has less than `need_bytes`
    free."""
    path = Path(path)
    free = shutil.disk_usage(path.parent).free
    if need_bytes > free:
        cause = OSError(errno.ENOSPC, f"needs {_mb(need_bytes)}, {_mb(free)} free")
        raise StorageError(path, cause, hint)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def storage_error(target: Path, error: BaseException, hint: str = OUTPUT_HINT) -> StorageError | None:
    """The StorageError naming `target` (a file or its folder) for `error` (anywhere in its cause chain), or None
    when the storage is not to blame."""
    cause = _storage_cause(error)
    if cause is None or isinstance(cause, StorageError):
        return cause
    return StorageError(Path(target), cause, hint)


@contextmanager
def atomic_path(path: Path, size_bytes: int | None = None, hint: str = OUTPUT_HINT) -> Iterator[Path]:
    """Yield the temporary name to write `path` under; rename it into place when the block ends, delete it when the
    block raises (or when the rename fails). `size_bytes`, when known, is checked against the free space first.
    A full, read-only or forbidden folder is raised as StorageError naming the folder and what to do.

        with atomic_path(out) as tmp:
            write_everything_to(tmp)
        # out is complete, or absent (or the old file, untouched)
    """
    path = Path(path)
    part = part_path(path)
    try:
        if size_bytes is not None:
            check_free_space(path, size_bytes, hint)
        yield part
        os.replace(part, path)
    except BaseException as e:
        part.unlink(missing_ok=True)
        blame = storage_error(path, e, hint) if isinstance(e, Exception) else None
        if blame is not None and blame is not e:
            raise blame from e
        raise
