"""Bad input gets a clear error and nothing is lost: every case runs the real `assistant` command in a fresh
process (HOME in a temporary folder) and asserts its exit status, a message naming the problem, no traceback on
the console, and that no input or earlier output changed and no `.part` file was left behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import wave
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from assistant.cli.main import main; sys.exit(main(sys.argv[1:]))"
# Root reads every file whatever its mode: the permission case runs root without the capabilities that allow it.
NO_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]


def _wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (0.2 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


@dataclass
class Case:
    setup: Callable[[Path], list[str]]  # makes the inputs in a folder, returns the command's arguments
    rc: int
    message: str  # a piece of the message, case-insensitive
    unprivileged: bool = False  # permission cases: root reads everything


def _lipsync(audio: str = "speech.wav", image: str = "face.png", out: str = "out.mp4") -> Callable[[Path], list]:
    return lambda d: ["lipsync", str(d / image), str(d / audio), "-o", str(d / out), "--engine", "light"]


def _bytes(name: str, data: bytes, then: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        (d / name).write_bytes(data)
        return then(d)

    return setup


def _truncated(d: Path) -> list[str]:
    whole = _wav(d / "whole.wav", 2.0).read_bytes()
    (d / "speech.wav").write_bytes(whole[: len(whole) // 2])  # a copy cut off half way
    (d / "whole.wav").unlink()
    return _lipsync()(d)


def _zero_samples(d: Path) -> list[str]:
    _wav(d / "speech.wav", 0.0)
    return _lipsync()(d)


def _too_long(d: Path) -> list[str]:
    _wav(d / "speech.wav", 301.0, rate=8000)  # just over 5 minutes
    return _lipsync()(d)


def _fifo(d: Path) -> list[str]:
    (d / "speech.wav").unlink()
    os.mkfifo(d / "speech.wav")
    return _lipsync()(d)


def _folder(d: Path) -> list[str]:
    (d / "speech.wav").unlink()
    (d / "speech.wav").mkdir()
    return _lipsync()(d)


def _unreadable(d: Path) -> list[str]:
    (d / "speech.wav").chmod(0o200)
    return _lipsync()(d)


def _out_folder(d: Path) -> list[str]:
    (d / "out").mkdir()
    return _lipsync(out="out")(d)


def _user_config(d: Path, data: bytes) -> None:
    folder = d / "home" / ".config" / "avatar-assistant"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_bytes(data)


def _not_utf8_config(d: Path) -> list[str]:
    _user_config(d, "dialogue:\n  system_prompt: Tu es un assistant tr\u00e8s utile.\n".encode("latin-1"))
    return ["config", "show"]


def _long_system_prompt(d: Path) -> list[str]:
    data = yaml.safe_load((ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    data["dialogue"]["system_prompt"] = "Always answer politely and briefly. " * 400  # ~2,800 tokens > 2,048
    (d / "long.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return ["--config", str(d / "long.yaml"), "ask", "Hello?", "--no-video", "--out", str(d / "replies")]


def _models_dir_file(d: Path) -> list[str]:
    (d / "models.txt").write_text("not a folder")
    return ["models", "list", "--models-dir", str(d / "models.txt")]


CASES = {
    "lipsync -o its audio": Case(_lipsync(out="speech.wav"), 2, "is the audio input"),
    "lipsync -o its image": Case(_lipsync(out="face.png"), 2, "is the image input"),
    "lipsync -o a folder": Case(_out_folder, 2, "is a folder; name a file"),
    "audio undecodable": Case(_bytes("speech.wav", b"this is not audio\n" * 50, _lipsync()), 2, "Cannot decode"),
    "audio empty file": Case(_bytes("speech.wav", b"", _lipsync()), 2, "empty (0 bytes)"),
    "audio zero samples": Case(_zero_samples, 2, "holds no samples"),
    "audio truncated wav": Case(_truncated, 2, "is cut short"),
    "audio over 5 minutes (light)": Case(_too_long, 2, "over the limit of 300 s"),
    "audio is a folder": Case(_folder, 2, "is a folder, not a file"),
    "audio is a fifo": Case(_fifo, 2, "named pipe (FIFO)"),
    "audio unreadable": Case(_unreadable, 2, "permission denied", unprivileged=True),
    "audio missing": Case(lambda d: _lipsync(audio="nothing.wav")(d), 2, "Audio file not found"),
    "image undecodable": Case(_bytes("face.png", b"\x89PNG broken", _lipsync()), 2, "Cannot decode image"),
    "image is a folder": Case(lambda d: (d / "dir.png").mkdir() or _lipsync(image="dir.png")(d), 2, "is a folder"),
    "listen undecodable": Case(
        _bytes("q.wav", b"RIFF....WAVEjunk", lambda d: ["listen", str(d / "q.wav"), "--no-video"]), 2, "decode"
    ),
    "listen truncated": Case(
        lambda d: _truncated(d) and ["listen", str(d / "speech.wav"), "--no-video"], 2, "is cut short"
    ),
    "ask empty": Case(lambda d: ["ask", "", "--no-video"], 2, "question is empty"),
    "ask blank": Case(lambda d: ["ask", "   ", "--no-video"], 2, "question is empty"),
    "user config not UTF-8": Case(_not_utf8_config, 0, "is not UTF-8 text: byte 0xe8 at line 2, column 39"),
    "--config not UTF-8": Case(
        _bytes("c.yaml", b"gpu_profile: \xff\n", lambda d: ["--config", str(d / "c.yaml"), "config", "show"]),
        2, "not UTF-8 text: byte 0xff at line 1",
    ),
    "--config is a folder": Case(lambda d: ["--config", str(d), "config", "show"], 2, "is a folder"),
    "--models-dir is a file": Case(_models_dir_file, 2, "is a file, not a folder"),
    "system prompt too long": Case(_long_system_prompt, 1, "system prompt (dialogue.system_prompt) is too long"),
}


def _snapshot(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink() or not p.exists() or "home" in p.relative_to(folder).parts:
            continue
        rel = str(p.relative_to(folder))
        if p.is_fifo() or p.is_dir():
            out[rel] = "fifo" if p.is_fifo() else "dir"
        elif os.access(p, os.R_OK) or os.geteuid() == 0:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_cli(args: list[str], home: Path, unprivileged: bool = False, timeout_s: float = 300):
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    prefix = NO_DAC if unprivileged and os.geteuid() == 0 else []
    return subprocess.run(
        [*prefix, sys.executable, "-c", CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout_s,
    )  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    d = tmp_path / "case"
    d.mkdir()
    home = d / "home"
    home.mkdir()
    shutil.copy(ROOT / "assets" / "avatars" / "astronaut.png", d / "face.png")
    _wav(d / "speech.wav", 1.0)
    args = case.setup(d)
    before = _snapshot(d)
    proc = run_cli(args, home, case.unprivileged)
    console = proc.stdout + proc.stderr
    assert proc.returncode == case.rc, console[-3000:]
    assert case.message.lower() in console.lower(), console[-3000:]
    assert "Traceback" not in console, console[-3000:]
    assert _snapshot(d) == before, "an input or an earlier output changed"
    assert not list(d.rglob("*.part")), "a .part file was left behind"


def test_two_asks_at_once_keep_their_own_turn_folders_and_log_lines(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    questions = ["What is the capital of France?", "What colour is the sky?"]
    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(lambda q: run_cli(["ask", q, "--no-video", "--json"], home, timeout_s=600), questions))
    for proc in procs:
        assert proc.returncode == 0, proc.stderr[-3000:]
    data = home / ".local" / "share" / "avatar-assistant"
    logs = list((data / "conversations").glob("conversation-*.jsonl"))
    records = [json.loads(line) for log in logs for line in log.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["transcript"] for r in records) == sorted(questions)
    folders = [{Path(p).parent for p in r["audio_paths"]} for r in records]
    assert all(len(f) == 1 for f in folders) and folders[0] != folders[1], folders
    for record in records:  # each line points at its own run's audio, which is there
        assert all(Path(p).is_file() for p in record["audio_paths"])
