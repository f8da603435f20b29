"""The conversation log is private: 0600 in a 0700 folder, also when an older version left it 0644."""

from __future__ import annotations

import datetime as dt
import stat

from assistant.conversation_log import ConversationLog
from assistant.pipeline import TurnResult


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_log_and_its_folders_are_readable_by_the_user_only(tmp_path):
    folder = tmp_path / "data" / "conversations"
    log = ConversationLog(folder)
    log.append(TurnResult(1, "what is my bank pin", "I cannot know that."), dt.datetime.now(), "test")
    assert mode(log.path) == 0o600
    assert mode(folder) == 0o700 and mode(folder.parent) == 0o700
    assert log.read()[0]["transcript"] == "what is my bank pin"


def test_an_older_world_readable_log_is_made_private(tmp_path):
    folder = tmp_path / "conversations"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    log = ConversationLog(folder)
    log.path.write_text("")
    log.path.chmod(0o644)
    log.append(TurnResult(1, "hello", "hi"), dt.datetime.now(), "test")
    assert mode(log.path) == 0o600 and mode(folder) == 0o700
