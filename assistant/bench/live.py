"""`assistant bench live`: the real desktop app, measured from what a user would see and hear.

The app (`python -m ui.app`, real models, real live stream, real VLC) runs headless on a private Xvfb screen with a
private PulseAudio: spoken questions (espeak-ng) are played into the virtual microphone, and the rig
(`assistant.bench.rig`) records the virtual speaker and the avatar's area of the screen, all stamped on this
machine's monotonic clock. Every figure comes from those recordings:

- `ttff_perceived_s`: end of the question's sound (in the microphone recording) -> first reply sound at the speaker;
- `first_motion_s`: end of the question -> first frame on screen whose mouth region moves beyond idle motion;
- `speaker_gap_ms`: silences inside a reply at the speaker that are not in the reply's own speech audio (the WAVs
  the app spoke, aligned to the recording);
- `black_frames` and `frozen_s` in the video area after start-up (a still run is a frame-to-frame difference of
  zero: idle motion should never stop);
- `av_offset_ms`: mouth opening on screen against loudness at the speaker, cross-correlated over each reply;
- `av_onset_offset_ms`: the same offset timed independently, at each sound that follows a pause: the mouth's
  half-rise against the sound's (`measure.av_onset_offsets`; no correlation), pooled over the session;
- `stages_s`: the same per-stage breakdown `bench turn` gives (from the app's conversation log), to compare.

Needs Xvfb, PulseAudio, ffmpeg, espeak-ng, VLC and the bundled models (what `make setup` installs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from assistant.audio.io import load_audio
from assistant.bench import measure
from assistant.bench.rig import ScreenRecorder, SpeakerRecorder, start_pulse, start_xvfb, stop_all
from assistant.bench.usage import cpu_s, peak_rss_mb
from assistant.bench.turn import QUESTIONS  # the same questions as `bench turn`, so the two compare
from assistant.errors import AssistantError

SCREEN = (1280, 800)
# The screen is grabbed at twice the stream's 25 fps: a grab only sees a frame once it is on screen, so at 25 fps the
# grab's phase against the player's frames put up to one frame (40 ms) of error, different every session, into the
# A/V offset and first-motion times; at 50 fps that error is at most 20 ms.
GRAB_FPS = 50
RATE = 48000
APP_START_S = 300.0
REPLY_TIMEOUT_S = 120.0
IDLE_BETWEEN_S = 3.0
PEERS = {  # published time to first answer of talking-avatar systems (their own hardware)
    "OpenAvatarChat (RTX 4090)": 2.2,
    "VideoChat (A100)": 3.0,
}


class BenchError(AssistantError):
    """The live benchmark could not run (the app did not start, a reply never came)."""


@dataclass
class LiveTurn:
    question: str
    transcript: str = ""
    reply: str = ""
    ttff_perceived_s: float | None = None
    first_motion_s: float | None = None
    speaker_gap_ms_max: float | None = None
    av_offset_ms: float | None = None
    av_correlation: float | None = None
    av_onset_offsets_ms: list[float] = field(default_factory=list)  # the same by onsets after pauses (independent)
    reply_sound_s: float | None = None  # how long the reply sounded at the speaker
    player_delay_ms: float | None = None  # the stream's clock released the reply's first sample -> heard
    app_first_sound_s: float | None = None  # what the app's status line said for the same wait
    cancel_silence_ms: float | None = None  # Stop pressed -> last sound at the speaker (cancel runs)
    stages_s: dict[str, float] = field(default_factory=dict)


@dataclass
class LiveReport:
    turns: list[LiveTurn]
    recorded_s: float
    black_frames: int
    frozen_s_max: float
    idle_motion: dict[str, bool]  # "before", "between", "after" the replies: frames differ
    media_loads: int
    engines: str
    artifacts: str
    app_usage: dict[str, float] = field(default_factory=dict)  # the app's peak RSS and CPU seconds a turn

    def summary(self) -> dict[str, Any]:
        def stat(values: list[float | None]) -> dict[str, float | None]:
            vals = [v for v in values if v is not None]
            if not vals:
                return {"median": None, "max": None, "n": 0}
            return {"median": round(statistics.median(vals), 4), "max": round(max(vals), 4), "n": len(vals)}

        stage_keys = sorted({k for t in self.turns for k in t.stages_s})
        offsets = [t.av_offset_ms for t in self.turns]
        return {
            "ttff_perceived_s": stat([t.ttff_perceived_s for t in self.turns]),
            "first_motion_s": stat([t.first_motion_s for t in self.turns]),
            "speaker_gap_ms": stat([t.speaker_gap_ms_max for t in self.turns]),
            "black_frames": self.black_frames,
            "frozen_s": {"max": round(self.frozen_s_max, 3)},
            "av_offset_ms": {
                **stat([abs(o) if o is not None else None for o in offsets]),
                "signed_median": stat(offsets)["median"],
            },
            "av_onset_offset_ms": {  # every onset of the session pooled: a reply has only a few pauses
                **stat([abs(o) for t in self.turns for o in t.av_onset_offsets_ms]),
                "signed_median": stat([o for t in self.turns for o in t.av_onset_offsets_ms])["median"],
            },
            "cancel_silence_ms": stat([t.cancel_silence_ms for t in self.turns]),
            "player_delay_ms": stat([t.player_delay_ms for t in self.turns]),
            "app_first_sound_s": stat([t.app_first_sound_s for t in self.turns]),
            "app_figure_short_by_ms": stat(  # measured at the speaker minus what the app said: its blind spot
                [(t.ttff_perceived_s - t.app_first_sound_s) * 1000.0 for t in self.turns
                 if t.ttff_perceived_s is not None and t.app_first_sound_s is not None]
            ),  # fmt: skip
            "idle_motion": self.idle_motion,
            "media_loads": self.media_loads,
            "app_usage": self.app_usage,
            "stages_s": {k: stat([t.stages_s.get(k) for t in self.turns]) for k in stage_keys},
            "recorded_s": round(self.recorded_s, 2),
            "engines": self.engines,
            "artifacts": self.artifacts,
            "peers_ttff_s": PEERS,
            "turns": [asdict(t) for t in self.turns],
        }


def speak(text: str, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(path), text], check=True, capture_output=True)
    return path


class AppLog:
    """The app's log file, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern: str, timeout_s: float, app: subprocess.Popen, after: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            m = rx.search(self.text(), after)
            if m:
                return m
            if app.poll() is not None:
                raise BenchError(f"the app exited ({app.returncode}) before {pattern!r}:\n{self.text()[-3000:]}")
            time.sleep(0.1)
        raise BenchError(f"the app did not log {pattern!r} within {timeout_s:.0f} s:\n{self.text()[-3000:]}")


def _config(root: Path, overrides: dict[str, Any] | None) -> Path:
    config: dict[str, Any] = {
        "gpu_profile": "low",
        "paths": {"data_dir": str(root / "data"), "cache_dir": str(root / "cache")},
        "audio": {"mode": "hands_free"},
    }
    for key, value in (overrides or {}).items():
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _picture_region(area: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The recorded region: the whole video area (the app crops the stream to fill it), even-sized for x264."""
    x, y, w, h = area
    return x, y, w // 2 * 2, h // 2 * 2


def _mouth_box(face: tuple[int, int, int, int], crop: tuple[int, int, int, int], pic: tuple[int, int, int, int]):
    """The mouth area in the recorded region: the stream's face box, through the app's crop, scaled to the pane."""
    x1, y1, x2, y2 = face
    cw, ch, cx, cy = crop
    scale = pic[2] / cw
    fh = y2 - y1
    mx1, mx2 = x1 + 0.25 * (x2 - x1), x2 - 0.25 * (x2 - x1)
    my1, my2 = y1 + 0.62 * fh, y2 + 0.12 * fh
    return (int((mx1 - cx) * scale), int((my1 - cy) * scale), int((mx2 - mx1) * scale), int((my2 - my1) * scale))


def _stills(video_path: Path, times_s: np.ndarray, moments: dict[str, float], out_dir: Path) -> None:
    """Frames of the recording at the given moments, as PNGs beside it (taken from the recording: a screenshot
    tool grabbing the X server meanwhile would itself stall the recording)."""
    import cv2

    from assistant.video import read_frames

    wanted = {int(np.argmin(np.abs(times_s - t))): name for name, t in moments.items() if len(times_s)}
    for i, frame in enumerate(read_frames(video_path)):
        if i in wanted:
            cv2.imwrite(str(out_dir / f"{wanted[i]}.png"), frame)
        if i > max(wanted, default=-1):
            break


def _conversation(data_dir: Path) -> list[dict[str, Any]]:
    lines = []
    for path in sorted((data_dir / "conversations").glob("conversation-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


@dataclass(frozen=True)
class _Layout:
    """Where the app says its picture and its Stop button are (from its log), and what it runs."""

    face: tuple[int, ...]  # the face box in the stream
    stream_wh: tuple[int, int]
    crop: tuple[int, ...]  # the part of the stream the pane shows
    pic: tuple[int, int, int, int]  # the pane on the screen
    stop_xy: tuple[int, int]
    engines: str


def run_live(
    questions: list[str],
    out_dir: Path,
    overrides: dict[str, Any] | None = None,
    cancel_after_s: float | None = None,
    idle_s: float = IDLE_BETWEEN_S,
    min_record_s: float = 0.0,
    progress=print,
) -> LiveReport:
    """Start the app under the rig, ask each question by voice, record, analyse. `cancel_after_s`: press Stop that
    long after each reply's first sound (the cancel measurement)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench-live-", dir=out_dir))
    config = _config(root, overrides)
    wavs = [speak(q, root / f"question-{i}.wav") for i, q in enumerate(questions)]
    things: list[Any] = []
    app: subprocess.Popen | None = None
    try:
        x, pulse, env = start_screen_and_sound(root, things)
        app_log = AppLog(root / "app.log")
        progress("starting the app (models load on 2 cores: up to a few minutes)")
        app = _start_app(root, config, env)
        layout = _layout(app_log, app)
        speaker = SpeakerRecorder(pulse, root / "speaker.wav").start()
        things.append(speaker)
        mic = SpeakerRecorder(pulse, root / "mic.wav", source=pulse.mic_source).start()
        things.append(mic)
        screen = ScreenRecorder(x.display, layout.pic, GRAB_FPS, root / "screen.mkv").start()
        things.append(screen)
        time.sleep(idle_s)
        cpu_before = cpu_s([app.pid])
        played, cancels = _ask(questions, wavs, pulse, app, app_log, env, layout.stop_xy, cancel_after_s, idle_s,
                               progress)  # fmt: skip
        usage = {
            "peak_rss_mb": peak_rss_mb(app.pid),
            "cpu_s_per_turn": round((cpu_s([app.pid]) - cpu_before) / max(1, len(wavs)), 2),  # both cores' seconds
        }
        while time.monotonic() - screen.started_at < min_record_s:  # idle on to the length asked for
            time.sleep(0.2)
        stop_all([screen, mic, speaker])
        (root / "timing.json").write_text(json.dumps({
            "speaker_started_at": speaker.started_at, "mic_started_at": mic.started_at,
            "screen_frame_times_s": list(screen.frame_times_s), "played": played, "cancels": cancels,
            "picture_region": layout.pic, "face_box_in_stream": layout.face, "stream_wh": layout.stream_wh,
            "crop": layout.crop,
        }))  # fmt: skip
        conversation = _turn_records(root, app_log.text())
        media_loads = len(re.findall(r"live stream on screen \((\d+) media", app_log.text()))
    finally:
        close_app(app)
        stop_all(things)
    report = analyse(questions, root, speaker, mic, screen, played, cancels, conversation, layout.face, layout.crop,
                     layout.pic, media_loads, layout.engines)  # fmt: skip
    report.app_usage = usage
    return report


def start_screen_and_sound(root: Path, things: list[Any]) -> tuple[Any, Any, dict[str, str]]:
    """A private Xvfb screen and PulseAudio for the app (added to `things`, to stop), and the environment that puts
    the app on them."""
    x = start_xvfb(*SCREEN)
    things.append(x)
    pulse = start_pulse(root / "pulse")
    things.append(pulse)
    return x, pulse, {**os.environ, **x.env, **pulse.env, "QT_QPA_PLATFORM": "xcb"}


def close_app(app: subprocess.Popen | None) -> None:
    """Ask the app to close (SIGTERM, as a desktop would), then kill it if it has not within 30 s."""
    if app is not None and app.poll() is None:
        app.send_signal(signal.SIGTERM)
        try:
            app.wait(30)
        except subprocess.TimeoutExpired:
            app.kill()


def _start_app(root: Path, config: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ui.app", "--config", str(config), "--log-file", str(root / "app.log"), "--verbose"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(root / "app.stderr", "wb"),
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip


def _layout(app_log: AppLog, app: subprocess.Popen) -> _Layout:
    """Wait until the app is ready and shows its stream; read where everything is from its log."""
    app_log.wait_for(r"ready: models loaded; engines: (.*)", APP_START_S, app)
    box = r"face box in the stream x1=(\d+) y1=(\d+) x2=(\d+) y2=(\d+) of (\d+)x(\d+)"
    m = app_log.wait_for(box, APP_START_S, app)
    app_log.wait_for(r"video area on screen: x=(\d+) y=(\d+) w=(\d+) h=(\d+)", 60, app)
    stop = app_log.wait_for(r"stop button on screen: x=(\d+) y=(\d+) w=(\d+) h=(\d+)", 60, app)
    app_log.wait_for(r"live stream on screen", 60, app)
    text = app_log.text()
    engines = re.search(r"ready: models loaded; engines: (.*)", text).group(1)  # type: ignore[union-attr]
    # The picture as last laid out: the app crops the stream to fill its pane, and says where the pane is.
    crops = re.findall(
        r"live picture: stream crop (\d+)x(\d+)\+(\d+)\+(\d+) shown at x=(\d+) y=(\d+) w=(\d+) h=(\d+)", text
    )
    if not crops:
        raise BenchError(f"the app did not say where the live picture is:\n{text[-3000:]}")
    return _Layout(
        face=tuple(int(v) for v in m.groups()[:4]),
        stream_wh=(int(m.group(5)), int(m.group(6))),
        crop=tuple(int(v) for v in crops[-1][:4]),
        pic=_picture_region(tuple(int(v) for v in crops[-1][4:])),  # type: ignore[arg-type]
        stop_xy=(int(stop.group(1)) + int(stop.group(3)) // 2, int(stop.group(2)) + int(stop.group(4)) // 2),
        engines=engines,
    )


def _ask(questions, wavs, pulse, app, app_log, env, stop_xy, cancel_after_s, idle_s, progress):
    """Play each question into the microphone and wait for its reply to end (pressing Stop `cancel_after_s` into
    it when asked); returns (monotonic before and after each play, when Stop was pressed or None)."""
    played: list[tuple[float, float]] = []
    cancels: list[float | None] = []
    for i, wav in enumerate(wavs):
        progress(f"question {i + 1}/{len(wavs)}: {questions[i]!r}")
        mark = len(app_log.text())
        before = time.monotonic()
        pulse.play(wav)
        played.append((before, time.monotonic()))
        app_log.wait_for(r"turn-taking: speaking", REPLY_TIMEOUT_S, app, mark)
        pressed = None
        if cancel_after_s is not None:
            time.sleep(cancel_after_s)
            pressed = time.monotonic()
            subprocess.run(
                ["xdotool", "mousemove", str(stop_xy[0]), str(stop_xy[1]), "click", "1"],
                env=env, check=True, capture_output=True,
            )  # fmt: skip
        cancels.append(pressed)
        app_log.wait_for(r"turn-taking: listening", REPLY_TIMEOUT_S, app, mark)
        time.sleep(idle_s)
    return played, cancels


def _turn_records(root: Path, log_text: str) -> list[dict[str, Any]]:
    """The app's conversation log, each turn with when the stream released its first sample and the app's own
    first-sound figure (from its log)."""
    starts = {  # turn id -> monotonic time the stream's clock released its first sample
        int(m.group(1)): float(m.group(2))
        for m in re.finditer(r"stream speech started: turn (\d+) segment 0 at monotonic ([\d.]+)", log_text)
    }
    figures = {  # turn id -> the app's own first-sound figure (its status line)
        int(m.group(1)): float(m.group(2))
        for m in re.finditer(r"turn (\d+): first sound ([\d.]+) s after the end of speech", log_text)
    }
    conversation = _conversation(root / "data")
    for record in conversation:
        record["stream_started_at"] = starts.get(record.get("turn_id", -1))
        record["app_first_sound_s"] = figures.get(record.get("turn_id", -1))
    return conversation


def _av(turn: LiveTurn, video: measure.VideoAnalysis, spk: np.ndarray, env: np.ndarray, first: float,
        end: float) -> None:  # fmt: skip
    """The reply's mouth against its sound, from half a second before its first sound to half a second after its
    last: by correlation of the mouth's opening with the loudness, and by the onsets after its pauses."""
    window = (video.frame_times_s >= first - 0.5) & (video.frame_times_s <= end + 0.5)
    if window.sum() <= 20:
        return
    t0 = max(0.0, round(first - 0.5, 2))
    k0, k1 = round(t0 * 100), int((end + 0.5) * 100)
    opening, times = video.mouth_opening()[window], video.frame_times_s[window] - t0
    try:
        off = measure.av_offset_ms(opening, video.fps, env[k0:k1], 100.0, mouth_times_s=times)
        turn.av_offset_ms, turn.av_correlation = off.offset_ms, off.peak_correlation
    except ValueError:
        pass
    onsets = measure.av_onset_offsets(opening, times, spk[round(t0 * RATE) : int((end + 0.5) * RATE)], RATE)
    turn.av_onset_offsets_ms = [round(o, 1) for o in onsets.offsets_ms]


def analyse(questions, root, speaker, mic, screen, played, cancels, conversation, face, crop, pic,
            media_loads, engines) -> LiveReport:  # fmt: skip
    spk = load_audio(speaker.path, RATE)
    mic_audio = load_audio(mic.path, RATE)
    times = np.asarray(screen.frame_times_s) - speaker.started_at  # frame times on the speaker recording's clock
    mouth = _mouth_box(face, crop, pic)
    video = measure.video_file_analysis(screen.path, mouth, times)
    env = measure.rms_envelope(spk, RATE, 10.0, 10.0)
    turns: list[LiveTurn] = []
    reply_spans: list[tuple[float, float]] = []
    records = [r for r in conversation if r.get("transcript")]
    for i, question in enumerate(questions):
        turn = LiveTurn(question)
        before, after = played[i]
        lo = before - mic.started_at - 0.05  # onsets are on a 10 ms grid
        hi = after - mic.started_at + 0.5
        sounds = [s for s in measure.sound_onsets(mic_audio, RATE) if lo <= s.start_s and s.end_s <= hi]
        if not sounds:
            turns.append(turn)
            continue
        eos = mic.started_at + sounds[-1].end_s - speaker.started_at  # on the speaker recording's clock
        record = records[i] if i < len(records) else {}
        turn.transcript, turn.reply = record.get("transcript", ""), record.get("reply", "")
        turn.stages_s = {k: float(v) for k, v in record.get("timings_s", {}).items()}
        turn.app_first_sound_s = record.get("app_first_sound_s")
        first = measure.first_sound_after(spk, RATE, eos)
        if first is not None:
            turn.ttff_perceived_s = first - eos
            released = record.get("stream_started_at")
            if released is not None:  # the reply's audio starts at once (Piper): its first sound is sample 0
                turn.player_delay_ms = (first + speaker.started_at - released) * 1000.0
        motion = measure.first_motion_after(video.mouth_diff, video.fps, eos, frame_times_s=video.frame_times_s)
        if motion is not None:
            turn.first_motion_s = motion - eos
        paths = [p for p in record.get("audio_paths", []) if Path(p).is_file()]
        next_start = (played[i + 1][0] - speaker.started_at) if i + 1 < len(played) else len(spk) / RATE
        if paths and first is not None:
            if cancels[i] is None:
                reference = [load_audio(p, RATE) for p in paths]
                gaps = measure.speaker_gaps(spk, RATE, reference, RATE, search_from_s=eos, search_to_s=next_start)
                end = gaps.reply_end_s
                turn.speaker_gap_ms_max = gaps.max_gap_ms
            else:  # cut short: the reply ends with its last sound, and the cut is what is measured
                end = max((s.end_s for s in measure.sound_onsets(spk, RATE) if first <= s.start_s < next_start),
                          default=first)  # fmt: skip
                turn.cancel_silence_ms = max(0.0, (end - (cancels[i] - speaker.started_at)) * 1000.0)
            turn.reply_sound_s = end - first
            reply_spans.append((first, end))
            _av(turn, video, spk, env, first, end)
        turns.append(turn)
    if reply_spans:
        moments = {"idle": reply_spans[0][0] - 1.0, "speaking": reply_spans[0][0] + 0.5}
        _stills(screen.path, video.frame_times_s, moments, root)
    start_s = float(video.frame_times_s[0]) if video.frames else 0.0
    end_s = float(video.frame_times_s[-1]) if video.frames else 0.0
    # Idle stretches: before the first reply, between replies, after the last (trimmed off the speech).
    idle_spans: dict[str, tuple[float, float]] = {}
    if reply_spans:
        idle_spans["before"] = (start_s, reply_spans[0][0] - 0.3)
        if len(reply_spans) > 1:
            idle_spans["between"] = (reply_spans[0][1] + 0.5, reply_spans[1][0] - 0.3)
        idle_spans["after"] = (reply_spans[-1][1] + 0.5, end_s)
    idle = {name: bool(b - a > 0.5 and video.motion_present(a, b)) for name, (a, b) in idle_spans.items()}
    return LiveReport(
        turns=turns,
        recorded_s=end_s - start_s,
        black_frames=int(video.black_frames()),
        frozen_s_max=float(video.max_frozen_s()),
        idle_motion=idle,
        media_loads=media_loads,
        engines=engines,
        artifacts=str(root),
    )


def register(bsub: argparse._SubParsersAction) -> None:
    parser = bsub.add_parser(
        "live", help="the real app under a virtual screen, microphone and speaker: what the user sees and hears"
    )
    parser.add_argument("--runs", type=int, default=3, help="spoken questions to ask (default 3)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", type=Path, default=Path("bench-live"), help="where recordings are kept")
    parser.add_argument("--cancel-after", type=float, default=None, metavar="S",
                        help="press Stop S seconds after each reply starts (measures the cancel)")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config value for the app, e.g. --set live.caching_ms=60 (repeatable)")  # fmt: skip
    parser.add_argument("--twin", metavar="NAME", default=None,
                        help="dialogue by the speed twin of NAME (e.g. llama-3.2-1b; built once), made to say the "
                             "real replies in assistant/bench/data/teacher_replies.yaml")  # fmt: skip
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.runs)]
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: --set wants KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        overrides[key] = yaml.safe_load(value)
    dialogue = _twin_dialogue(args.twin, overrides) if args.twin else None
    report = run_live(questions, args.out.absolute(), overrides, cancel_after_s=args.cancel_after,
                      progress=(lambda m: print(m, file=sys.stderr)))  # fmt: skip
    summary = report.summary()
    summary["dialogue"] = dialogue or "the configured model"
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key in ("ttff_perceived_s", "app_first_sound_s", "app_figure_short_by_ms", "first_motion_s",
                    "speaker_gap_ms", "av_offset_ms", "av_onset_offset_ms", "player_delay_ms",
                    "cancel_silence_ms"):
            print(f"{key:20s} {summary[key]}")
        print(f"black_frames {summary['black_frames']}  frozen_s {summary['frozen_s']}  idle {summary['idle_motion']}")
        print(f"app: {summary['app_usage']}")
        print(f"engines: {summary['engines']}; recordings in {summary['artifacts']}")
        print(f"dialogue: {summary['dialogue']}")
    return 0


def _twin_dialogue(name: str, overrides: dict[str, Any]) -> str:
    """Point the app's dialogue at the twin of `name` (built once into the models folder) and force it to say the
    teacher replies; the report's label for it."""
    from assistant.bench.teacher import TEACHER_FILE
    from assistant.config import load_settings
    from assistant.twins import build_twin, twin_shape

    twin_shape(name)  # ModelError: not a dialogue model with a twin
    models_dir = overrides.get("paths.models_dir") or load_settings().models_dir
    result = build_twin(name, Path(models_dir))
    overrides["dialogue.model"] = str(result.path)
    overrides["dialogue.forced_replies"] = str(TEACHER_FILE)
    return f"twin of {name}, teacher-forced"
