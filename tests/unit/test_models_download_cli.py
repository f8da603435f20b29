"""`assistant models download`: a plain-HTTP mirror is warned about before anything is fetched, and Ctrl-C says
that the partial file is kept (only when one is) and how to resume."""

from __future__ import annotations

import argparse
from pathlib import Path

from assistant.cli import models_cmd


def args(tmp_path: Path, mirror: str) -> argparse.Namespace:
    return argparse.Namespace(names=["whisper-small"], models_dir=str(tmp_path), mirror=mirror, force=False)


def test_a_plain_http_mirror_is_warned_about(tmp_path, capsys, monkeypatch):
    seen = {}

    def fake_download(names, models_dir, base_url=None, force=False):  # the network side is not the unit here
        seen["base_url"] = base_url
        return 0

    monkeypatch.setattr(models_cmd, "download_models", fake_download)
    assert models_cmd._download(args(tmp_path, "http://mirror.example/hf")) == 0
    err = capsys.readouterr().err
    assert "plain HTTP" in err and "http://mirror.example/hf" in err and "https://" in err
    assert seen["base_url"] == "http://mirror.example/hf"  # warned, not refused


def test_an_https_mirror_is_not_warned_about(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(models_cmd, "download_models", lambda *a, **k: 0)
    assert models_cmd._download(args(tmp_path, "https://mirror.example/hf")) == 0
    assert "plain HTTP" not in capsys.readouterr().err


def test_ctrl_c_keeps_the_partial_file_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    part = tmp_path / "whisper" / "model.bin.part"

    def interrupted(*a, **k):
        part.parent.mkdir()
        part.write_bytes(b"\0" * 1000)  # what arrived before Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(models_cmd, "download_models", interrupted)
    assert models_cmd._download(args(tmp_path, "https://mirror.example/hf")) == 130
    err = capsys.readouterr().err
    assert str(part) in err and "1,000 bytes" in err and "is kept" in err
    assert "assistant models download whisper-small" in err


def test_ctrl_c_before_any_byte_does_not_claim_a_partial_file(tmp_path, capsys, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(models_cmd, "download_models", interrupted)
    assert models_cmd._download(args(tmp_path, "https://mirror.example/hf")) == 130
    err = capsys.readouterr().err
    assert "nothing was kept" in err and "is kept" not in err
    assert "assistant models download whisper-small" in err
