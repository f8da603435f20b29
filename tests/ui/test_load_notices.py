"""A user settings file that is not UTF-8 does not stop the desktop app: it starts on the defaults, and a dialog
over its window names the file, the position of the bad byte and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox, QWidget

from assistant.config import load_settings
from ui.app import show_load_notices

pytestmark = pytest.mark.ui


def _latin1_user_config(folder: Path) -> Path:
    path = folder / "config.yaml"
    path.write_bytes("dialogue:\n  system_prompt: Tu es un assistant tr\xe8s utile\n".encode("latin-1"))
    return path


def test_a_user_config_that_is_not_utf8_starts_the_app_on_the_defaults_with_a_visible_notice(
    qtbot, tmp_path: Path
) -> None:
    user = _latin1_user_config(tmp_path)
    settings = load_settings(user_path=user, env={})
    defaults = load_settings(user_path=tmp_path / "absent.yaml", env={})
    assert settings.dialogue.system_prompt == defaults.dialogue.system_prompt  # started on the defaults
    assert not settings.user_keys

    window = QWidget()
    qtbot.addWidget(window)
    window.show()
    box = show_load_notices(window, settings.load_notices)
    assert isinstance(box, QMessageBox)
    qtbot.waitUntil(box.isVisible)
    text = box.text()
    assert str(user) in text  # the file
    assert "byte 0xe8 at line 2, column 39" in text  # where
    assert "save it as UTF-8" in text and "default settings" in text  # what to do, and what happened
    box.button(QMessageBox.StandardButton.Ok).click()
    qtbot.waitUntil(lambda: not box.isVisible())


def test_readable_settings_show_no_dialog(qtbot, tmp_path: Path) -> None:
    user = tmp_path / "config.yaml"
    user.write_text("dialogue:\n  system_prompt: Tu es un assistant très utile\n", encoding="utf-8")
    settings = load_settings(user_path=user, env={})
    assert settings.load_notices == ()
    assert settings.dialogue.system_prompt == "Tu es un assistant très utile"
    window = QWidget()
    qtbot.addWidget(window)
    assert show_load_notices(window, settings.load_notices) is None
