"""`assistant bench serve [--sessions N] [--json]`: N headless browsers talk to one `assistant serve` at once, and
what each browser received is measured.

Each browser is Debian's `chromium`, headless, its microphone a WAV of a spoken question (`--use-file-for-fake-
audio-capture`), on the server's own page with its test hook (`?test=NAME`): the page records what it plays (the
avatar's video and sound as it gets them; and its microphone beside the avatar's sound, mixed through Web Audio)
and uploads them with its WebRTC statistics. From each recording:
  - reply_first_sound_s: from the end of the question on the microphone to the first sound of the reply, both as
    the page had them (so network, jitter buffer and decoding are in it);
  - playout_av_offset_ms: the mouth's opening in each frame when the page showed it against the level of each
    packet of sound when the page played it (cross-correlation; > 0: picture late); measured on the first page
    only (reading every frame back costs a browser CPU); av_offset_ms: the same on the page's recording
    (MediaRecorder puts the picture ahead of the sound by 60-200 ms on its own);
  - frames_late: video frames the browser dropped, its freezes and their total length (getStats);
  - received_fps: frames received over the connection's length.
A session is held in real time when its video arrived at >= 90% of the frame rate without a freeze over
0.5 s in all and its reply was heard. The same helpers (server process, browser, recording) drive
tests/integration/test_serve.py.

Needs chromium, espeak-ng and sox (the questions), ffmpeg-backed PyAV (the recordings).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.bench import measure

QUESTIONS = (
    "What is the capital of France?",
    "What is the capital of Italy?",
    "How many legs does a dog have?",
)
LEAD_S, TAIL_S = 1.0, 3.0  # silence around each question in its WAV: the page connects, the reply comes
REAL_TIME_SHARE = 0.9  # of the frame rate, for a session to count as held in real time
MAX_FREEZE_S = 0.5


# ---- the server and the browsers ----
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str  # as printed, with ?token=... when one is needed
    uploads: Path

    def status(self, token: str | None = None) -> tuple[int, dict[str, Any]]:
        return http_json(self.base + "api/status", token=token)

    @property
    def base(self) -> str:
        return self.url.split("?")[0]


def http_json(url: str, body: bytes | None = None, token: str | None = None) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of a GET (or a POST with `body`); HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text or b"{}")
        except ValueError:
            return e.code, {"message": text.decode(errors="replace")}


@contextmanager
def serve_process(
    args: list[str],
    uploads: Path,
    env: dict[str, str] | None = None,
    ready: bool = True,
    timeout_s: float = 180.0,
) -> Iterator[ServerProcess]:
    """`assistant <args>` (global options, then `serve ...`) with the pages' uploads going to `uploads`; yields
    once it prints its address (and, with `ready`, once its models are loaded). Stopped with SIGTERM."""
    command = [sys.executable, "-c", "import sys; from assistant.cli import main; sys.exit(main())", *args,
               "--save-uploads", str(uploads)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = _address(process, timeout_s)
        server = ServerProcess(process, url, uploads)
        token = url.split("token=")[1] if "token=" in url else None
        deadline = time.monotonic() + timeout_s
        while ready and server.status(token)[1].get("state") != "ready":
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"assistant serve did not get ready: {server.status(token)[1]}")
            time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def _address(process: subprocess.Popen, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    seen = []
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if line.startswith("Serving the avatar at "):
            return line.split(" at ", 1)[1].strip()
    raise RuntimeError("assistant serve did not start:\n" + "".join(seen[-20:]))


def spoken_question(text: str, path: Path) -> Path:
    """`text` said by espeak-ng, with LEAD_S of silence before and TAIL_S after, 48 kHz mono."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-w", str(raw), text], check=True, capture_output=True, timeout=60
    )
    subprocess.run(["sox", str(raw), "-r", "48000", str(path), "pad", str(LEAD_S), str(TAIL_S)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    raw.unlink()
    return path


def open_page(
    url: str, wav: Path, profile: Path, name: str, turns: int = 1, max_s: float = 60.0, query: str = ""
) -> subprocess.Popen:
    """Headless chromium on the serve page, `wav` as its microphone (played once), recording under `name`;
    `query`: more of the page's parameters (`mic=0`)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise FileNotFoundError("chromium is not installed: apt-get install chromium (scripts/setup.sh does)")
    sep = "&" if "?" in url else "?"
    page = f"{url}{sep}test={name}&turns={turns}&max_s={max_s:g}" + (f"&{query}" if query else "")
    command = [
        chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop", "--autoplay-policy=no-user-gesture-required", page,
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_uploads(folder: Path, names: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not all((folder / f"{n}.json").exists() for n in names):
        if time.monotonic() > deadline:
            missing = [n for n in names if not (folder / f"{n}.json").exists()]
            raise TimeoutError(f"no recording from {missing} within {timeout_s:g} s")
        time.sleep(0.3)


# ---- a page's recording ----
@dataclass
class PageRecording:
    frames: list[np.ndarray] = field(repr=False)  # (H, W, 3) uint8 BGR
    frame_times_s: np.ndarray  # (N,) on the recording's clock
    avatar: np.ndarray = field(repr=False)  # (n,) float32: the sound the page played, beside the frames
    audio_start_s: float  # of `avatar`, on the frames' clock
    mix_microphone: np.ndarray = field(repr=False)  # (m,) float32: the microphone (the mix's left)
    mix_avatar: np.ndarray = field(repr=False)  # (m,) float32: the avatar's sound, same clock (the right)
    rate_hz: int
    page: dict[str, Any]  # the page's JSON: its messages and WebRTC statistics


def _decode(path: Path, video: bool) -> tuple[list[np.ndarray], list[float], np.ndarray, float, int]:
    """Frames and their times (when `video`), and the audio as (channels, n) float32 with its start and rate."""
    import av

    frames, times, chunks, start, rate = [], [], [], None, 48000
    with av.open(str(path)) as container:
        for frame in container.decode(video=0) if video else ():
            frames.append(frame.to_ndarray(format="bgr24"))
            times.append(float(frame.time))
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            if start is None:
                start, rate = float(frame.time), frame.sample_rate
            chunks.append(frame.to_ndarray().astype(np.float32).reshape(-1, frame.samples))  # (channels, n)
    return frames, times, np.concatenate(chunks, axis=1), start or 0.0, rate


def read_recording(folder: Path, name: str) -> PageRecording:
    page = json.loads((folder / f"{name}.json").read_text())
    frames, times, audio, start, rate = _decode(folder / f"{name}.webm", video=True)
    _, _, mix, _, mix_rate = _decode(folder / f"{name}-mix.webm", video=False)
    if mix_rate != rate:
        raise ValueError(f"the two recordings of {name} have different rates ({rate}, {mix_rate} Hz)")
    right = mix[1] if len(mix) > 1 else mix[0]
    return PageRecording(frames, np.array(times), audio.mean(axis=0), start, mix[0], right, rate, page)


@dataclass
class SessionFigures:
    name: str
    heard: str  # what the server recognised, from the page's messages
    reply: str  # what the server said it replied
    reply_first_sound_s: float | None
    av_offset_ms: float | None  # in the page's recording
    av_correlation: float | None
    playout_av_offset_ms: float | None  # as the page showed the frames and played the sound
    playout_av_correlation: float | None
    received_fps: float
    frames_dropped: int
    freezes: int
    freezes_s: float
    held_real_time: bool


def measure_session(
    rec: PageRecording, mouth_box: tuple[int, int, int, int], fps: float, name: str
) -> SessionFigures:
    messages = rec.page.get("messages", [])
    heard = " ".join(m["text"] for m in messages if m.get("type") == "heard")
    reply = " ".join(m["text"] for m in messages if m.get("type") == "reply")
    end = measure.sound_onsets(rec.mix_microphone, rec.rate_hz, min_silence_ms=300)
    question_end = end[-1].end_s if end else None
    first = (
        None if question_end is None else measure.first_sound_after(rec.mix_avatar, rec.rate_hz, question_end)
    )
    offset = lip_sync(rec, mouth_box, fps)
    playout = playout_lip_sync(rec.page, fps)
    video = next((s for s in rec.page.get("stats", []) if s.get("kind") == "video"), {})
    span = float(rec.frame_times_s[-1] - rec.frame_times_s[0]) if len(rec.frame_times_s) > 1 else 0.0
    received = len(rec.frame_times_s) / span if span else 0.0
    freezes_s = float(video.get("totalFreezesDuration", 0.0))
    held = received >= REAL_TIME_SHARE * fps and freezes_s <= MAX_FREEZE_S and first is not None
    return SessionFigures(
        name, heard, reply, None if first is None else first - question_end,
        offset.offset_ms if offset else None, offset.peak_correlation if offset else None,
        playout.offset_ms if playout else None, playout.peak_correlation if playout else None,
        received, int(video.get("framesDropped", 0)), int(video.get("freezeCount", 0)), freezes_s, held,
    )  # fmt: skip


def lip_sync(rec: PageRecording, mouth_box: tuple[int, int, int, int], fps: float) -> measure.AVOffset | None:
    """The mouth's opening against the loudness of what the page played, over the whole recording."""
    if len(rec.frames) < 10:
        return None
    video = measure.video_frames_analysis(rec.frames, fps, mouth_box, frame_times_s=rec.frame_times_s)
    env = measure.rms_envelope(rec.avatar, rec.rate_hz, 10.0, 10.0)
    times = rec.frame_times_s - rec.audio_start_s
    try:
        return measure.av_offset_ms(
            video.mouth_opening(), fps, env, 100.0, mouth_times_s=times, max_lag_ms=200
        )
    except ValueError:
        return None


def playout_lip_sync(page: dict[str, Any], fps: float) -> measure.AVOffset | None:
    """The mouth's opening in each frame when the page showed it against the level of each packet of sound when
    the page played it (both on the page's clock, from its test hook)."""
    mouth = np.array(page.get("mouth") or [], np.float64).reshape(-1, 2)  # (N, [shown_ms, dark share])
    sound = np.array(page.get("sound") or [], np.float64).reshape(-1, 3)  # (M, [played_ms, level, rtp])
    if len(mouth) < 10 or len(sound) < 10:
        return None
    grid_ms = np.arange(sound[0, 0], sound[-1, 0], 10.0)  # the level every 10 ms (100 Hz)
    env = np.interp(grid_ms, sound[:, 0], sound[:, 1])
    times_s = (mouth[:, 0] - grid_ms[0]) / 1000.0
    try:
        return measure.av_offset_ms(
            255.0 * mouth[:, 1], fps, env, 100.0, mouth_times_s=times_s, max_lag_ms=200
        )
    except ValueError:
        return None


def page_query(mouth_box: tuple[int, int, int, int]) -> str:
    """The page parameters of its playout lip-sync measurement."""
    return f"mouth={','.join(map(str, mouth_box))}&dark={measure.MOUTH_DARK_LUMA}"


def mouth_box_of(settings: Any) -> tuple[tuple[int, int, int, int], float]:
    """The mouth region (x, y, w, h) in the video the server sends, and its frame rate: the server's own renderer
    built the server's way (`live_settings_for_serve`)."""
    from assistant.live.build import build_live
    from assistant.profile import resolve
    from assistant.serve.hub import live_settings_for_serve

    setup = build_live(live_settings_for_serve(settings), resolve(settings))
    b = setup.renderer.face_box
    x1, x2 = b.x1 + b.width // 4, b.x2 - b.width // 4
    y1, y2 = b.y1 + int(0.62 * b.height), min(setup.settings.height, b.y2 + int(0.12 * b.height))
    return (x1, y1, (x2 - x1) // 2 * 2, (y2 - y1) // 2 * 2), setup.settings.fps


# ---- the benchmark ----
def run_sessions(n: int, work: Path, config: Path) -> tuple[list[SessionFigures], list[str]]:
    from assistant.config import load_settings

    settings = load_settings(config)
    box, fps = mouth_box_of(settings)
    wavs = [spoken_question(QUESTIONS[i % len(QUESTIONS)], work / f"q{i}.wav") for i in range(n)]
    names = [f"s{i}" for i in range(n)]
    problems: list[str] = []
    with serve_process(["--config", str(config), "serve", "--port", str(free_port())], work / "up") as server:
        # Only the first page times its playout: reading the mouth back from every shown frame costs each browser
        # enough CPU on a small machine to change how many sessions it holds.
        queries = [page_query(box)] + [""] * (n - 1)
        browsers = [
            open_page(server.url, wavs[i], work / f"profile{i}", names[i], query=queries[i]) for i in range(n)
        ]
        try:
            wait_for_uploads(server.uploads, names, 120.0)
        except TimeoutError as e:
            problems.append(str(e))
        finally:
            for b in browsers:
                b.terminate()
                b.wait(10)
    figures = [measure_session(read_recording(work / "up", nm), box, fps, nm) for nm in names
               if (work / "up" / f"{nm}.webm").exists()]  # fmt: skip
    return figures, problems


def _config(path: Path, n: int, engine: str | None) -> Path:
    lines = ["serve:", f"  max_sessions: {n}", f"  max_sessions_per_address: {n}"]
    if engine:
        lines += ["talking_head:", f"  engine: {engine}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="assistant-bench-serve-"))
    try:
        config = (
            Path(args.config) if args.config else _config(work / "config.yaml", args.sessions, args.engine)
        )
        figures, problems = run_sessions(args.sessions, work, config)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "sessions": args.sessions,
        "held_real_time": sum(f.held_real_time for f in figures),
        "per_session": [asdict(f) for f in figures],
        "problems": problems,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if not problems else 1
    print(f"{report['held_real_time']} of {args.sessions} sessions held in real time")
    for f in figures:
        first = "none" if f.reply_first_sound_s is None else f"{f.reply_first_sound_s:.2f} s"
        av = "n/a" if f.av_offset_ms is None else f"{f.av_offset_ms:+.0f} ms (r={f.av_correlation:.2f})"
        if f.playout_av_offset_ms is not None:
            av += f", as played {f.playout_av_offset_ms:+.0f} ms (r={f.playout_av_correlation:.2f})"
        print(f"  {f.name}: first reply sound {first}, A/V {av}, {f.received_fps:.1f} fps received, "
              f"{f.frames_dropped} dropped, {f.freezes} freezes ({f.freezes_s:.2f} s)")  # fmt: skip
    for p in problems:
        print(f"  problem: {p}")
    return 0 if not problems else 1


def register(bsub: argparse._SubParsersAction) -> None:
    parser = bsub.add_parser(
        "serve", help="N headless browsers talk to `assistant serve` at once; measured in the page",
        description="Start `assistant serve`, open N headless chromium pages with a spoken question as their "
        "microphone, and measure what each page received: question end to first reply sound, A/V offset, "
        "frames late, and how many sessions this machine holds in real time.",
    )  # fmt: skip
    parser.add_argument("--sessions", type=int, default=2, help="browsers at once (default 2)")
    parser.add_argument(
        "--engine", choices=("light", "static"), help="talking-head engine (default: the config's)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=_run)
