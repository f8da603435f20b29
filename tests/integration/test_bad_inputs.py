"""Bad input gets a clear error and nothing is lost: every case runs the real `assistant` command in a fresh
process (HOME in a temporary folder) and asserts its exit status, a message naming the problem, no traceback on
the console, and that no input or earlier output changed and no `.part` file was left behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import wave
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.integration.test_session_heals import Folder

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


def _clip(path: Path) -> Path:
    """A 2 s H.264 + AAC clip made by ffmpeg itself (what `video encode` reads)."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-f", "lavfi",
         "-i", "sine=frequency=220", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
         "-shortest", str(path)],
        check=True,
    )  # fmt: skip
    return path


def _models_dir_elsewhere(d: Path) -> list[str]:
    """paths.models_dir names a folder holding a (broken) wav2lip.pth: the engine must look there, not in models/."""
    (d / "md" / "wav2lip").mkdir(parents=True)
    (d / "md" / "wav2lip" / "wav2lip.pth").write_bytes(b"not torch weights\n")
    _user_config(d, f"paths:\n  models_dir: {d / 'md'}\n".encode())
    return [*_lipsync(out="home/out.mp4")(d), "--engine", "wav2lip", "--no-fallback"]


def _exif_portrait(d: Path) -> list[str]:
    """A phone portrait: the pixels stored turned a quarter left, EXIF orientation 6 saying how to show them."""
    from PIL import Image

    upright = Image.open(d / "face.png").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(d / "phone.jpg", exif=exif, quality=92)
    return [*_lipsync(image="phone.jpg", out="home/out.mp4")(d), "--json"]


def _dialogue_model(kind: str) -> Callable[[Path], list[str]]:
    def setup(d: Path) -> list[str]:
        model = d / "model.gguf"
        model.mkdir() if kind == "folder" else os.mkfifo(model)
        data = yaml.safe_load((ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
        data["dialogue"]["model"] = str(model)
        (d / "c.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
        return ["--config", str(d / "c.yaml"), "ask", "Hello?", "--no-video", "--out", str(d / "home" / "r")]

    return setup


def _present_srt_beside(d: Path) -> list[str]:
    (d / "talk.md").write_text("# A talk\n\n## One slide\n\n- a point\n\nSomething to say.\n", encoding="utf-8")
    (d / "talk.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nmy own subtitles\n", encoding="utf-8")
    return ["present", str(d / "talk.md"), "-o", str(d / "talk.mp4"), "--avatar", str(d / "face.png")]


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
    "system prompt too long": Case(_long_system_prompt, 2, "system_prompt is 14,400 characters: more than"),
    # Issue #26: each of these was "not found", a crash, the wrong folder or a silent overwrite.
    "paths.models_dir for wav2lip": Case(_models_dir_elsewhere, 2, "md/wav2lip/wav2lip.pth"),
    "ask in Latin-1 bytes": Case(
        lambda d: ["ask", os.fsdecode(b"caf\xe9 ?"), "--no-video", "--json", "--out", str(d / "home" / "r")],
        0, '"transcript": "caf\\u00e9 ?"',
    ),
    "EXIF-rotated portrait": Case(_exif_portrait, 0, '"engine": "light"'),
    "video info of a folder": Case(
        lambda d: (d / "v.mp4").mkdir() or ["video", "info", str(d / "v.mp4")], 2, "is a folder, not a file"
    ),
    "video info of a fifo": Case(
        lambda d: os.mkfifo(d / "v.mp4") or ["video", "info", str(d / "v.mp4")], 2, "named pipe (FIFO)"
    ),
    "video encode of a folder": Case(
        lambda d: (d / "v.mp4").mkdir() or ["video", "encode", str(d / "v.mp4"), "-o", str(d / "o.mp4")],
        2, "Input video",
    ),
    "present --avatar a folder": Case(
        lambda d: (d / "face.jpg").mkdir() or [*_present_srt_beside(d)[:-1], str(d / "face.jpg")],
        2, "is a folder, not a file",
    ),
    "present over someone's .srt": Case(_present_srt_beside, 2, "talk.srt already exists and was not written"),
    "dialogue.model a folder": Case(_dialogue_model("folder"), 2, "model.gguf is a folder, not a file"),
    "dialogue.model a fifo": Case(_dialogue_model("fifo"), 2, "model.gguf is a named pipe (FIFO)"),
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


def run_cli(args: list[str], home: Path, unprivileged: bool = False, timeout_s: float = 300, extra_env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), **(extra_env or {}))
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


# ---- a full disk, a read-only disk, downloads (issue #26): a tmpfs of our own, so root only ----
needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="a tmpfs needs root")
VITS_ZIP = "/coqui-ai/TTS/releases/download/v0.6.1_models/tts_models--en--ljspeech--vits.zip"  # unverified zip


def _nearly_full(folder: Folder, free_bytes: int) -> None:
    """Fill the tmpfs to its last block but `free_bytes`: room for a header, not for a whole file."""
    slack = folder.path / "slack"
    slack.write_bytes(b"\0" * free_bytes)
    with open(folder.path / "filler", "wb", buffering=0) as f:  # unbuffered, as test_session_heals fills
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    slack.unlink()


@pytest.fixture
def data_folder(tmp_path: Path) -> Iterator[Folder]:
    folder = Folder(tmp_path / "data")  # a tmpfs of our own
    yield folder
    folder.close()  # runs whatever the test did (pytest finishes a fixture after a failed test too)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != "filler")


FULL = {  # (arguments in folder d with the tmpfs at d/data, exit status, message)
    "video encode": (lambda d: ["video", "encode", str(_clip(d / "clip.mp4")), "-o", str(d / "data" / "o.mp4")],
                     2, "o.mp4 (No space left on device); the disk is full: free some space"),
    "lipsync --json": (lambda d: [*_lipsync(out="data/o.mp4")(d), "--json"], 2,
                       "the disk is full: free some space"),
    "ask --json": (lambda d: ["ask", "Say hello.", "--no-video", "--json", "--out", str(d / "data" / "r")],
                   1, "the disk is full: free some space"),
}  # fmt: skip


@needs_root
@pytest.mark.parametrize("name", list(FULL))
def test_a_full_disk_is_an_error_that_says_so_and_leaves_nothing(
    name: str, tmp_path: Path, data_folder: Folder
) -> None:
    setup, rc, message = FULL[name]
    shutil.copy(ROOT / "assets" / "avatars" / "astronaut.png", tmp_path / "face.png")
    _wav(tmp_path / "speech.wav", 2.0)
    (tmp_path / "home").mkdir()
    args = setup(tmp_path)
    _nearly_full(data_folder, 16384)
    proc = run_cli(args, tmp_path / "home")
    console = proc.stdout + proc.stderr
    assert proc.returncode == rc, console[-3000:]
    assert message in console and str(data_folder.path) in console, console[-3000:]
    assert "Traceback" not in console, console[-3000:]
    assert _files(data_folder.path) == [], "a half-written file was left on the full disk"


@needs_root
def test_present_onto_a_read_only_disk_says_read_only(tmp_path: Path, data_folder: Folder) -> None:
    shutil.copy(ROOT / "assets" / "avatars" / "astronaut.png", tmp_path / "face.png")
    (tmp_path / "home").mkdir()
    args = _present_srt_beside(tmp_path)
    (tmp_path / "talk.srt").unlink()
    data_folder.read_only(True)
    try:
        proc = run_cli([*args[:3], str(data_folder.path / "talk.mp4"), *args[4:]], tmp_path / "home")
    finally:
        data_folder.read_only(False)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 2, console[-3000:]
    assert f"Cannot write to {data_folder.path} (Read-only file system)" in console, console[-3000:]
    assert "remount it read-write" in console and "permission" not in console.lower(), console[-3000:]


def _download(models: Path, home: Path, mirror: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), ASSISTANT_MODEL_MIRROR=mirror)
    # Ctrl-C as in a terminal: a test run started in the background (`cmd &` in a script) ignores SIGINT, and a
    # child that inherits that never gets a KeyboardInterrupt (two clean-clone CI runs started so hung here)
    return subprocess.Popen(
        [sys.executable, "-c", CLI, "models", "download", "coqui-vits", "--models-dir", str(models)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


@needs_root
def test_a_download_onto_a_full_disk_says_the_disk_is_full_and_keeps_no_part(
    tmp_path: Path, data_folder: Folder
) -> None:
    from tests.http_server import LocalHTTPServer

    (tmp_path / "home").mkdir()
    _nearly_full(data_folder, 1 << 20)
    with LocalHTTPServer({VITS_ZIP: os.urandom(3 << 20)}) as srv:  # 3 MB onto 1 MB free
        proc = _download(data_folder.path / "models", tmp_path / "home", srv.base_url)
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-3000:]
    assert "the disk is full: free some space" in err and str(data_folder.path / "models") in err, err[-3000:]
    assert "resume" not in err and "connection lost" not in err, err[-3000:]
    assert _files(data_folder.path) == [], "a .part was left filling the disk"


def test_an_unverified_zip_that_unpacks_far_past_its_size_is_refused(tmp_path: Path) -> None:
    import io
    import zipfile

    from tests.http_server import LocalHTTPServer

    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model_file.pth", b"\0" * (62 << 20))  # 62 MB of zeros: about 60 KB zipped
        zf.writestr("config.json", "{}")
    (tmp_path / "home").mkdir()
    with LocalHTTPServer({VITS_ZIP: bomb.getvalue()}) as srv:
        proc = _download(tmp_path / "models", tmp_path / "home", srv.base_url)
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    assert "would unpack to 65.0 MB, over 20 times its own" in err and "It was deleted" in err, err[-3000:]
    assert _files(tmp_path / "models") == [], "the archive or a piece of it was left behind"


def test_ctrl_c_on_a_slow_download_keeps_what_arrived_and_says_so(tmp_path: Path) -> None:
    from tests.http_server import LocalHTTPServer

    (tmp_path / "home").mkdir()
    models = tmp_path / "models"
    with LocalHTTPServer({VITS_ZIP: os.urandom(4 << 20)}) as srv:
        srv.stall(VITS_ZIP, 100_000)  # 100 kB, then nothing: far less than one 1 MiB read
        proc = _download(models, tmp_path / "home", srv.base_url)
        part = models / "coqui" / "tts_models--en--ljspeech--vits" / "tts_models--en--ljspeech--vits.zip.part"
        for _ in range(1200):  # what arrived reaches the .part (bounded wait, not a timing claim)
            if part.is_file() and part.stat().st_size == 100_000 or proc.poll() is not None:
                break
            threading.Event().wait(0.1)
        arrived = part.is_file() and part.stat().st_size == 100_000
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert arrived, f"the 100 kB sent never reached {part} (exit {proc.returncode}): {err[-3000:]}"
    assert proc.returncode == 130, err[-3000:]
    assert part.stat().st_size == 100_000, "the bytes that arrived were not kept"
    assert f"the partial file {part} (100,000 bytes) is kept" in err, err[-3000:]


def test_a_model_mirror_that_is_not_http_names_the_variable(tmp_path: Path) -> None:
    result = run_cli(["models", "list"], tmp_path, extra_env={"ASSISTANT_MODEL_MIRROR": "ftp://bot:S3cret@mirror/"})
    assert result.returncode == 2, result.stderr
    assert "ASSISTANT_MODEL_MIRROR" in result.stderr and "https://" in result.stderr, result.stderr
    assert "S3cret" not in result.stdout + result.stderr and "Traceback" not in result.stderr
