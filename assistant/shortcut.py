"""Write (or remove) a freedesktop.org `.desktop` launcher for the desktop app; no Qt involved.

The entry runs the app from this checkout's virtual environment (`<venv python> -m ui.app`, working directory
the checkout) with the checkout's `assets/icon.png` as icon. It goes to `$XDG_DATA_HOME/applications` (the
application menu) and, on request, to the XDG desktop folder, made executable and marked trusted so file
managers launch it.

Needs nothing beyond the standard library and platformdirs; `gio` (GNOME) and `update-desktop-database`
(desktop-file-utils) are used when present and skipped when not.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from assistant.config import PROJECT_ROOT
from assistant.errors import AssistantError

log = logging.getLogger(__name__)

DESKTOP_FILE_NAME = "avatar-assistant.desktop"  # also the app's QGuiApplication.desktopFileName
APP_MODULE = "ui.app"
ICON_RELATIVE = Path("assets") / "icon.png"


class ShortcutError(AssistantError):
    """The desktop shortcut could not be written or removed."""


@dataclass(frozen=True)
class ShortcutResult:
    """What `install_shortcut` / `remove_shortcut` did: the files written or removed, and any notes."""

    paths: tuple[Path, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


def venv_python(project_root: Path = PROJECT_ROOT) -> Path:
    """The interpreter of the checkout's venv (`.venv/bin/python`), else the running one.

    Kept unresolved: resolving the venv's symlink would land on the system Python, outside the venv.
    """
    candidate = project_root / ".venv" / "bin" / "python"
    if candidate.exists():
        return candidate
    return Path(sys.executable)


def quote_exec_arg(arg: str) -> str:
    """Quote one argument of the Exec key per the Desktop Entry spec ("The Exec key" section).

    Arguments with reserved characters go in double quotes, with `"`, backquote, `$` and backslash escaped
    by a backslash; then, because Exec is a string value, every backslash is doubled once more.
    """
    reserved = set(" \t\n\"'\\><~|&;$*?#()`")
    if arg and not (set(arg) & reserved) and "%" not in arg:
        return arg
    inner = "".join("\\" + c if c in '"`$\\' else c for c in arg).replace("%", "%%")
    return ('"' + inner + '"').replace("\\", "\\\\")


def _escape_string(value: str) -> str:
    """A desktop-entry string value: newlines, tabs and backslashes escaped."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def desktop_entry(
    python: Path | None = None,
    project_root: Path = PROJECT_ROOT,
    icon: Path | None = None,
) -> str:
    """The text of the `.desktop` file; all paths absolute."""
    python = Path(python) if python is not None else venv_python(project_root)
    icon = Path(icon) if icon is not None else project_root / ICON_RELATIVE
    exec_line = " ".join(quote_exec_arg(a) for a in (str(python), "-m", APP_MODULE))
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",
        "Name=Avatar Assistant",
        "GenericName=Voice Assistant",
        "Comment=Local voice assistant with a lip-synced talking-head avatar",
        f"Exec={exec_line}",
        f"TryExec={_escape_string(str(python))}",
        f"Path={_escape_string(str(project_root))}",
        f"Icon={_escape_string(str(icon))}",
        "Terminal=false",
        "Categories=Utility;",
        "Keywords=voice;assistant;avatar;speech;",
        "StartupNotify=true",
        "StartupWMClass=avatar-assistant",
    ]
    return "\n".join(lines) + "\n"


def applications_dir() -> Path:
    """`$XDG_DATA_HOME/applications` (default `~/.local/share/applications`)."""
    return platformdirs.user_data_path() / "applications"


def desktop_dir() -> Path:
    """The XDG desktop folder (`XDG_DESKTOP_DIR` or user-dirs.dirs, else `~/Desktop`)."""
    return Path(platformdirs.user_desktop_dir())


def _run_quietly(args: list[str]) -> str | None:
    """Run a helper tool; None on success, else a one-line reason (the tools are optional niceties)."""
    if shutil.which(args[0]) is None:
        return f"{args[0]} not installed"
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{args[0]} failed: {e}"
    if proc.returncode != 0:
        return f"{args[0]} failed: {(proc.stderr or proc.stdout).strip()[:200]}"
    return None


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        # Executable: GNOME and KDE only launch desktop-folder entries that are executable (and trusted).
        tmp.chmod(0o755)
        os.replace(tmp, path)
    except OSError as e:
        raise ShortcutError(
            f"Cannot write the shortcut {path}: {e}. Check that the folder is writable."
        ) from e


def install_shortcut(
    on_desktop: bool = False,
    apps_dir: Path | None = None,
    desk_dir: Path | None = None,
    python: Path | None = None,
    project_root: Path = PROJECT_ROOT,
) -> ShortcutResult:
    """Write the launcher to the applications folder (and the desktop folder when `on_desktop`)."""
    icon = project_root / ICON_RELATIVE
    notes: list[str] = []
    if not icon.is_file():
        notes.append(f"icon {icon} is missing; the launcher shows a generic icon")
    text = desktop_entry(python=python, project_root=project_root, icon=icon)
    apps = Path(apps_dir) if apps_dir is not None else applications_dir()
    written = [apps / DESKTOP_FILE_NAME]
    _write(written[0], text)
    reason = _run_quietly(["update-desktop-database", str(apps)])
    if reason:
        log.debug("menu cache not refreshed: %s", reason)
    if on_desktop:
        desk = Path(desk_dir) if desk_dir is not None else desktop_dir()
        target = desk / DESKTOP_FILE_NAME
        _write(target, text)
        written.append(target)
        # GNOME asks before running an untrusted desktop launcher; this metadata (kept by gvfs) marks it
        # trusted.
        reason = _run_quietly(["gio", "set", str(target), "metadata::trusted", "true"])
        if reason:
            notes.append(
                f"could not mark {target} trusted ({reason}); allow launching it from its context menu"
            )
    return ShortcutResult(tuple(written), tuple(notes))


def remove_shortcut(apps_dir: Path | None = None, desk_dir: Path | None = None) -> ShortcutResult:
    """Remove the launcher from the applications and desktop folders; the paths returned were removed."""
    removed: list[Path] = []
    apps = Path(apps_dir) if apps_dir is not None else applications_dir()
    desk = Path(desk_dir) if desk_dir is not None else desktop_dir()
    for path in (apps / DESKTOP_FILE_NAME, desk / DESKTOP_FILE_NAME):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as e:
            raise ShortcutError(f"Cannot remove the shortcut {path}: {e}") from e
        removed.append(path)
    if removed:
        _run_quietly(["update-desktop-database", str(apps)])
    notes = () if removed else ("no shortcut was installed",)
    return ShortcutResult(tuple(removed), notes)
