"""Shared test setup: every test run gets its own XDG config/data/cache dirs, so tests never touch the user's."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"

_XDG_ROOT = Path(tempfile.mkdtemp(prefix="assistant-tests-xdg-"))
for _name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
    os.environ[_name] = str(_XDG_ROOT / _name.lower())
os.environ.pop("ASSISTANT_MODEL_MIRROR", None)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def artifacts_dir() -> Path:
    """A folder kept after the run (screenshots, sample outputs) for a person to look at."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR
