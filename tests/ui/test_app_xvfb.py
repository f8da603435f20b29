"""End to end under Xvfb: the real app (`python -m ui.app`, real Session on the bundled models, light engine,
real VLC) hears a question from the virtual microphone, answers it, and the reply video plays in the window.

Xvfb gives VLC a real X window to draw into (QWidget.grab() would show VLC's area black, so the proof is a
screenshot of the X screen with imagemagick's `import`). The question is espeak-ng's voice played into the
PulseAudio null sink whose monitor is the app's default microphone; VLC's sound goes to a second null sink, so
the app does not hear itself. The screenshot is kept in test-artifacts/.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.ui]

REPO = Path(__file__).resolve().parents[2]
SCREEN = (1280, 800)
APP_START_S = 240  # loading Whisper tiny + SmolLM2 + Piper on 2 busy CPU cores
TURN_S = 300


@pytest.fixture
def xvfb():
    """A private X server; yields its DISPLAY (":N"), picked by Xvfb itself (-displayfd)."""
    for tool in ("Xvfb", "import"):
        assert shutil.which(tool), f"{tool} is missing: apt install xvfb imagemagick"
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(write_fd),
            "-screen",
            "0",
            f"{SCREEN[0]}x{SCREEN[1]}x24",
            "-nolisten",
            "tcp",
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    assert number.isdigit(), (
        f"Xvfb did not start: {proc.stderr.read().decode() if proc.poll() is not None else ''}"
    )
    try:
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


def screenshot(display: str, path: Path) -> np.ndarray:
    subprocess.run(["import", "-display", display, "-window", "root", str(path)], check=True, timeout=30)
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read the screenshot {path}"
    return image  # (H, W, 3) uint8 BGR


def log_time(stamp: str) -> float:
    """A log line's time ("2026-01-02 10:11:12,345", local) as time.time() seconds."""
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


class AppLog:
    def __init__(self, path: Path, console: Path, proc: subprocess.Popen) -> None:
        self.path, self.console, self.proc = path, console, proc

    def text(self) -> str:
        return self.path.read_text(errors="replace") if self.path.exists() else ""

    def tail(self) -> str:
        """The end of the log file and of the console output, for failure messages."""
        console = self.console.read_text(errors="replace") if self.console.exists() else ""
        return f"--- log ---\n{self.text()[-4000:]}\n--- console ---\n{console[-3000:]}"

    def wait_for(self, pattern: str, timeout_s: float, after: int = 0) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = re.compile(pattern).search(self.text(), after)
            if match:
                return match
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"the app exited ({self.proc.returncode}) before /{pattern}/:\n{self.tail()}"
                )
            time.sleep(0.1)
        raise AssertionError(f"no /{pattern}/ in the app log after {timeout_s:.0f} s:\n{self.tail()}")


def test_real_app_answers_a_spoken_question_with_video(
    xvfb, virtual_mic, spoken_question, artifacts_dir, tmp_path
):
    # The app's speakers: a second null sink, so the microphone (the first sink's monitor) hears only
    # the user, never the avatar.
    virtual_mic.run("pactl", "load-module", "module-null-sink", "sink_name=speakers")
    # The app's own user config (in its own XDG_CONFIG_HOME): the light engine on the CPU, the low profile.
    config_home = tmp_path / "config"
    user_config = config_home / "avatar-assistant" / "config.yaml"
    user_config.parent.mkdir(parents=True)
    user_config.write_text(yaml.safe_dump({"gpu_profile": "low", "talking_head": {"engine": "light"}}))
    log_path = tmp_path / "app.log"
    env = {
        **os.environ,
        **virtual_mic.client_env(),
        "DISPLAY": xvfb,
        "QT_QPA_PLATFORM": "xcb",
        "PULSE_SINK": "speakers",
        "XDG_CONFIG_HOME": str(config_home),
    }
    console_path = tmp_path / "app-console.txt"
    console = open(console_path, "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            str(REPO / ".venv" / "bin" / "python"),
            "-m",
            "ui.app",
            "--log-file",
            str(log_path),
            "--log-stalls",
            "--vlc-arg=--aout=pulse",
        ],
        cwd=REPO,
        env=env,
        stdout=console,
        stderr=subprocess.STDOUT,
    )
    console.close()  # the child holds its own copy
    log = AppLog(log_path, console_path, proc)
    speakers = tmp_path / "speakers.raw"
    try:
        engines = log.wait_for(r"ready: models loaded; engines: (.*)", APP_START_S).group(1)
        assert "light" in engines.lower(), engines
        window = [
            int(v) for v in log.wait_for(r"window shown at x=(\d+) y=(\d+) w=(\d+) h=(\d+)", 1).groups()
        ]
        ready_at = len(log.text())
        # Record what the app sends to its speakers (16 kHz mono s16), to check the reply was heard.
        with open(speakers, "wb") as raw:
            recorder = subprocess.Popen(
                ["parec", "--device=speakers.monitor", "--format=s16le", "--rate=16000", "--channels=1"],
                env={**os.environ, **virtual_mic.client_env()}, stdout=raw,
            )  # fmt: skip
        try:
            virtual_mic.play(spoken_question)
            area = log.wait_for(r"video area on screen: x=(\d+) y=(\d+) w=(\d+) h=(\d+)", TURN_S, ready_at)
            x, y, w, h = (int(v) for v in area.groups())
            assert w > 100 and h > 100
            shots = []  # (taken after, taken before, image): the screen while the reply plays
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "playback idle" not in log.text()[ready_at:]:
                before = time.time()
                image = screenshot(xvfb, tmp_path / f"shot-{len(shots):02d}.png")
                shots.append((before, time.time(), image))
            done = log.wait_for(
                r"turn (\d+) done: heard '([^']*)', replied '([^']*)' in (\d+) segment", TURN_S, ready_at
            )
            turn, heard, reply, segments = (
                int(done.group(1)),
                done.group(2),
                done.group(3),
                int(done.group(4)),
            )
            log.wait_for(rf"finished turn {turn} segment {segments - 1}\b", TURN_S, ready_at)
            time.sleep(0.5)  # the tail of the sound through the null sink
        finally:
            recorder.terminate()
            recorder.wait(10)
        assert "capital" in heard.lower() and "france" in heard.lower(), heard
        assert reply.strip() and segments >= 1

        # Only screenshots taken entirely while a video segment played count (not the photo at rest).
        text = log.text()[ready_at:]
        starts = {
            int(m[1]): log_time(m[0])
            for m in re.findall(
                rf"^(\S+ \S+) INFO +ui.player: playing video of "
                rf"turn {turn} segment (\d+)",
                text,
                re.M,
            )
        }
        ends = {
            int(m[1]): log_time(m[0])
            for m in re.findall(
                rf"^(\S+ \S+) INFO +ui.player: finished turn "
                rf"{turn} segment (\d+)",
                text,
                re.M,
            )
        }
        playing = [(starts[i], ends[i]) for i in starts if i in ends]
        assert playing, f"no video segment played:\n{text}"
        valid = [img for before, after, img in shots if any(s <= before and after <= e for s, e in playing)]
        assert valid, f"no screenshot was taken while a video segment played ({len(shots)} taken)"
        scores = [float(img[y : y + h, x : x + w].mean()) for img in valid]
        best = valid[max(range(len(valid)), key=scores.__getitem__)]
        cv2.imwrite(str(artifacts_dir / "app-xvfb-turn.png"), best)
        wx, wy, ww, wh = window
        cv2.imwrite(str(artifacts_dir / "app-xvfb-window.png"), best[wy : wy + wh, wx : wx + ww])
        region = best[y : y + h, x : x + w]
        assert region.mean() > 20 and region.std() > 10, (
            f"the video area stayed black while VLC played (mean {region.mean():.1f}); see app-xvfb-turn.png"
        )

        sound = np.frombuffer(speakers.read_bytes(), np.int16).astype(np.float32) / 32768
        # The loudest 200 ms of the recording: the whole recording's RMS depends on how much silence it holds.
        win = 3200  # 200 ms at 16 kHz
        n = len(sound) // win
        rms = float(np.sqrt((sound[: n * win].reshape(n, win) ** 2).mean(axis=1)).max()) if n else 0.0
        assert rms > 0.02, (
            f"nothing came out of the speakers (loudest 200 ms RMS {rms:.4f} over {len(sound) / 16000:.1f} s)"
        )
        stalls = [float(ms) for ms in re.findall(r"event loop stalled: (\d+) ms", text)]
        print(
            f"heard {heard!r}; replied {reply!r} in {segments} segment(s); "
            f"{len(valid)}/{len(shots)} screenshots during video; speakers RMS {rms:.3f}; "
            f"worst event-loop stall during the turn: {max(stalls, default=0):.0f} ms"
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.copy(log_path, artifacts_dir / "app-xvfb-turn.log") if log_path.exists() else None
    assert proc.returncode == 0, log.tail()
    assert "main window closed: microphone, player and session released" in log.text()
