"""`assistant install-shortcut`: the .desktop entry passes desktop-file-validate, runs the app from this
checkout's venv with the checkout's icon, lands in $XDG_DATA_HOME/applications (and the desktop folder), and
--remove takes it away. No Qt needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from assistant.cli.main import main as cli_main
from assistant.config import PROJECT_ROOT
from assistant.shortcut import DESKTOP_FILE_NAME, desktop_entry, install_shortcut, quote_exec_arg, venv_python


def validate(path: Path) -> str:
    validator = shutil.which("desktop-file-validate")
    assert validator, "desktop-file-validate is missing: sudo apt install desktop-file-utils"
    proc = subprocess.run([validator, str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def entry_fields(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    assert lines[0] == "[Desktop Entry]"
    return dict(line.split("=", 1) for line in lines[1:] if line)


def exec_argv(exec_value: str) -> list[str]:
    """Split an Exec value as the Desktop Entry spec says a launcher does."""
    value = exec_value.replace("\\\\", "\\")  # string-level escaping first: \\ -> \
    args: list[str] = []
    current, quoted, i, started = "", False, 0, False
    while i < len(value):
        c = value[i]
        if quoted and c == "\\" and i + 1 < len(value) and value[i + 1] in '"`$\\':
            current, i = current + value[i + 1], i + 2
            continue
        if c == '"':
            quoted, started = not quoted, True
        elif c == " " and not quoted:
            if started:
                args.append(current)
            current, started = "", False
        else:
            current, started = current + c, True
        i += 1
    if started:
        args.append(current)
    return [a.replace("%%", "%") for a in args]


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_DESKTOP_DIR", str(tmp_path / "Desktop"))
    return tmp_path


def test_cli_installs_a_valid_entry_that_runs_the_app_from_the_venv(xdg, capsys):
    assert cli_main(["install-shortcut", "--desktop"]) == 0
    menu = xdg / "data" / "applications" / DESKTOP_FILE_NAME
    desk = xdg / "Desktop" / DESKTOP_FILE_NAME
    assert f"wrote {menu}" in capsys.readouterr().out
    for path in (menu, desk):
        validate(path)
        assert os.access(path, os.X_OK)  # file managers only launch executable desktop-folder entries
    fields = entry_fields(menu)
    assert fields["Type"] == "Application"
    assert fields["Icon"] == str(PROJECT_ROOT / "assets" / "icon.png") and Path(fields["Icon"]).is_file()
    assert fields["Path"] == str(PROJECT_ROOT)
    argv = exec_argv(fields["Exec"])
    assert argv == [str(venv_python()), "-m", "ui.app"]
    # The command really starts this checkout's app (asked for its help, so no window opens).
    proc = subprocess.run(argv + ["--help"], cwd=fields["Path"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "avatar-assistant-gui" in proc.stdout


def test_remove_takes_both_entries_away(xdg, capsys):
    cli_main(["install-shortcut", "--desktop"])
    assert cli_main(["install-shortcut", "--remove"]) == 0
    out = capsys.readouterr().out
    assert out.count("removed ") == 2
    assert not (xdg / "data" / "applications" / DESKTOP_FILE_NAME).exists()
    assert not (xdg / "Desktop" / DESKTOP_FILE_NAME).exists()
    assert cli_main(["install-shortcut", "--remove"]) == 0
    assert "no shortcut was installed" in capsys.readouterr().out


def test_paths_with_spaces_and_reserved_characters_are_quoted(tmp_path):
    python = tmp_path / 'my env $HOME "x"' / "python"
    root = tmp_path / "check out 100%"
    text = desktop_entry(python=python, project_root=root)
    path = tmp_path / DESKTOP_FILE_NAME
    path.write_text(text)
    validate(path)
    assert exec_argv(entry_fields(path)["Exec"]) == [str(python), "-m", "ui.app"]
    assert quote_exec_arg("plain") == "plain"


def test_menu_only_without_desktop_flag(tmp_path):
    result = install_shortcut(apps_dir=tmp_path / "apps", desk_dir=tmp_path / "desk")
    assert result.paths == (tmp_path / "apps" / DESKTOP_FILE_NAME,)
    assert not (tmp_path / "desk").exists()
