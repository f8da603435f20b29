"""`assistant doctor` on this machine: the real tools, packages, devices and bundled models, plus broken
setups made for real (an empty PATH, packages shadowed by ones that fail to import or crash, a truncated
checkpoint).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from assistant.cli import doctor_cmd
from assistant.doctor import FAIL, OK, OPTIONAL, WARN, format_report, run_doctor

pytestmark = pytest.mark.integration


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    doctor_cmd.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    rc = args.func(args)
    return rc, capsys.readouterr().out


def _by_name(report_checks: list[dict]) -> dict[str, dict]:
    return {c["name"]: c for c in report_checks}


def test_doctor_reports_this_machine_and_exit_status_follows_readiness(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out = _cli(["doctor", "--json", "--models-dir", str(tmp_path)], capsys)
    report = json.loads(out)
    checks = _by_name(report["checks"])
    assert {c["group"] for c in report["checks"]} == {"config", "tools", "python", "devices", "models"}
    # installed on this machine by the project setup
    installed = ("ffmpeg", "ffprobe", "libvlc", "libspeexdsp", "faster_whisper", "llama_cpp", "piper", "cv2")
    for name in installed + ("webrtcvad",):
        assert checks[name]["status"] == OK, checks[name]
    for name in ("whisper-tiny.en", "smollm2-135m", "piper-joe"):
        assert checks[name]["status"] == OK and checks[name]["required"]
        assert checks[name]["detail"].startswith("bundled: ")
    # nothing downloaded into an empty folder: optional, with the command that downloads it
    assert checks["wav2lip"]["status"] == OPTIONAL
    assert checks["wav2lip"]["fix"] == "assistant models download wav2lip"
    assert checks["CUDA GPU"]["status"] in (OK, OPTIONAL)
    failed = [c for c in report["checks"] if c["status"] == FAIL]
    assert all(c["required"] and c["fix"] for c in failed)
    assert report["ready"] is (not failed)
    assert rc == (0 if report["ready"] else 1)


def test_empty_path_fails_required_tools_with_the_apt_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    rc, out = _cli(["doctor", "--models-dir", str(tmp_path / "models")], capsys)
    assert rc == 1
    assert "Not ready:" in out
    assert "ffmpeg: sudo apt-get install ffmpeg" in out
    assert re.search(r"^tools\s+ffmpeg\s+fail\s+not on PATH", out, re.M)
    assert re.search(r"^tools\s+ffprobe\s+fail\s", out, re.M)
    assert re.search(r"^tools\s+paplay\s+optional\s", out, re.M)  # optional tools are not failures
    assert re.search(r"^tools\s+Xvfb\s+optional\s", out, re.M)


def test_broken_packages_are_failed_checks_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shadow = tmp_path / "shadow"
    for module, body in {
        "llama_cpp": "raise ModuleNotFoundError(\"No module named 'llama_cpp'\", name='llama_cpp')\n",
        "webrtcvad": "import diskcache_missing_dependency\n",
        "cv2": "import os\nos.abort()\n",  # a native library crashing at import
        "torch": "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n",
    }.items():
        (shadow / module).mkdir(parents=True)
        (shadow / module / "__init__.py").write_text(body)
    monkeypatch.setenv("PYTHONPATH", str(shadow))
    models_dir = tmp_path / "models"
    (models_dir / "wav2lip").mkdir(parents=True)
    (models_dir / "wav2lip" / "wav2lip.pth").write_bytes(b"truncated")

    report = run_doctor(models_dir)
    checks = {c.name: c for c in report.checks}
    assert checks["llama_cpp"].status == FAIL
    assert checks["llama_cpp"].fix.endswith("-m pip install llama-cpp-python")
    assert checks["webrtcvad"].status == FAIL
    assert checks["webrtcvad"].fix.endswith("-m pip install diskcache_missing_dependency")  # the dependency
    assert checks["cv2"].status == FAIL and "crashed with signal" in checks["cv2"].detail
    assert checks["torch"].status == OPTIONAL  # only Wav2Lip needs it
    assert checks["CUDA GPU"].status == OPTIONAL
    assert checks["wav2lip"].status == WARN and "9 bytes, expected 435,807,851" in checks["wav2lip"].detail
    assert checks["wav2lip"].fix == "assistant models download wav2lip --force"
    assert not report.ready
    text = format_report(report)
    assert "llama_cpp:" in text and "wav2lip: assistant models download wav2lip --force" in text
