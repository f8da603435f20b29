"""Barge-in in the real app: `python -m ui.app` under the rig of `assistant bench live` (private Xvfb, private
PulseAudio), in a virtual room whose speaker is heard by the microphone (`build_room`), asked for a long reply and
interrupted by a spoken question over it.

The app is the one a user starts: its window, its hands-free microphone with the echo canceller, its direct player,
its models. Only the dialogue is steered: `dialogue.forced_replies` makes the model say a long reply to the first
question (the bundled 135M model answers in one sentence) and a given answer to the interrupting one, token by token,
so the reply is long enough to be interrupted at `at_s`. Everything is judged from the recordings of the speaker and
the microphone, and from what the app wrote down (its conversation log, its log):

- `stop_latency_ms`: the question's first sound (found in the microphone recording) -> the reply's last sound at
  the speaker (`assistant.bench.echo.stop_heard`);
- `scrap_ms`: sound of the cut reply at the speaker after that and before the answer's first sound;
- `transcript`: what the app heard of the interrupting question (its conversation log); `interrupted`: the app cut
  its reply (its log); `answer`: what it answered.

Needs what `assistant bench live` needs, plus the bundled Piper voice for the interrupting user.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from assistant.audio.io import load_audio
from assistant.bench.echo import RATE, REPLY, STREAM_RATE, question_onset, stop_heard, user_speaker, voiced_after
from assistant.bench.live import (
    AppLog,
    _config,
    _conversation,
    _layout,
    _start_app,
    close_app,
    speak,
    start_screen_and_sound,
)
from assistant.bench.rig import SpeakerRecorder, build_room, stop_all

ASK = "Tell me about Paris."  # said in the silent room; the app is made to answer with REPLY
INTERRUPT = ("What is the capital of Japan?", "The capital of Japan is Tokyo.")
TURN_TIMEOUT_S = 120.0
PLAYER_DELAY_S = 0.1  # the direct player's delay (`assistant bench live`: 93-108 ms): where to aim the question


@dataclass
class AppBargeIn:
    at_s: float  # the question this far into the reply's sound (then on to the next voiced stretch)
    interrupted: bool = False  # the app cut its reply (its log)
    stop_latency_ms: float | None = None
    scrap_ms: float | None = None
    scrap_dbfs: float | None = None
    question_s: float = 0.0  # how long the interrupting question sounds
    transcript: str = ""  # what the app heard of it
    answer: str = ""


@dataclass
class AppRoomReport:
    delay_ms: float
    echo_gain_db: float
    runs: list[AppBargeIn] = field(default_factory=list)
    artifacts: str = ""


def run_app_barge_in(out_dir: Path, at_s: tuple[float, ...] = (1.0,), delay_ms: float = 100.0,
                     echo_gain_db: float = -6.0, progress=print) -> AppRoomReport:  # fmt: skip
    """Start the app in a room, and per `at_s`: ask for the long reply, interrupt it that far in, wait for the
    answer. The first interruption is over the session's first reply."""
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench-echo-app-", dir=out_dir))
    ask_wav = speak(ASK, root / "ask.wav")
    question_wav = user_speaker("piper-joe")(INTERRUPT[0], root / "question.wav")
    report = AppRoomReport(delay_ms, echo_gain_db, artifacts=str(root))
    things: list[Any] = []
    app: subprocess.Popen | None = None
    try:
        _, pulse, env = start_screen_and_sound(root, things)
        build_room(pulse, delay_ms, echo_gain_db)
        app_log = AppLog(root / "app.log")
        progress("starting the app")
        app = _start_app(root, _app_config(root), env)
        _layout(app_log, app)
        speaker = SpeakerRecorder(pulse, root / "speaker.wav").start()
        things.append(speaker)
        mic = SpeakerRecorder(pulse, root / "mic.wav", source=pulse.mic_source, rate_hz=RATE).start()
        things.append(mic)
        time.sleep(2.0)
        timing = [_interrupt(pulse, app, app_log, root, ask_wav, question_wav, at, progress) for at in at_s]
        stop_all([mic, speaker])
    finally:
        close_app(app)
        stop_all(things)
    _judge(report, root, timing, speaker, mic, question_wav, app_log.text(), at_s)
    return report


def _app_config(root: Path) -> Path:
    replies = root / "replies.yaml"
    replies.write_text(yaml.safe_dump({ASK: REPLY, INTERRUPT[0]: INTERRUPT[1]}))
    return _config(root, {"audio.barge_in": True, "dialogue.forced_replies": str(replies)})


def _interrupt(pulse, app, app_log: AppLog, root: Path, ask_wav: Path, question_wav: Path, at_s: float,
               progress) -> dict[str, float]:  # fmt: skip
    """Ask for the reply; play the question `at_s` into its sound, mid-word; wait until the answer is spoken."""
    progress(f"asking for the long reply; the question {at_s:g} s into it")
    mark = len(app_log.text())
    pulse.play(ask_wav)
    started = app_log.wait_for(r"stream speech started: turn (\d+) segment 0 at monotonic ([\d.]+)",
                               TURN_TIMEOUT_S, app, mark)  # fmt: skip
    turn_id, released = int(started.group(1)), float(started.group(2))
    reply = load_audio(_segment_wav(root, turn_id), RATE)
    questions = load_audio(question_wav, RATE)
    lead = _first_sound_s(questions)
    heard_at = released + PLAYER_DELAY_S
    due = heard_at + voiced_after(reply, at_s) - lead
    time.sleep(max(0.0, due - time.monotonic()))
    planned = time.monotonic() + lead
    pulse.play_async(question_wav)
    answer = app_log.wait_for(rf"stream speech started: turn (?!{turn_id}\b)(\d+) segment 0 at monotonic ([\d.]+)",
                              TURN_TIMEOUT_S, app, mark)  # fmt: skip
    app_log.wait_for(r"turn-taking: listening", TURN_TIMEOUT_S, app, answer.end())
    time.sleep(1.0)
    return {"turn": turn_id, "planned": planned, "answer_turn": int(answer.group(1)),
            "answer_released": float(answer.group(2))}  # fmt: skip


def _segment_wav(root: Path, turn_id: int) -> Path:
    found = sorted((root / "data" / "replies").glob(f"turn-*-{turn_id:04d}/seg-000.wav"))
    if not found:
        raise FileNotFoundError(f"the app kept no speech for turn {turn_id} under {root / 'data' / 'replies'}")
    return found[-1]


def _first_sound_s(samples) -> float:
    from assistant.bench import measure

    return next((o.start_s for o in measure.sound_onsets(samples, RATE)), 0.0)


def _judge(report: AppRoomReport, root: Path, timing: list[dict[str, float]], speaker: SpeakerRecorder,
           mic: SpeakerRecorder, question_wav: Path, log_text: str, at_s: tuple[float, ...]) -> None:  # fmt: skip
    spk = load_audio(speaker.path, STREAM_RATE)
    raw = load_audio(mic.path, RATE)
    turns = {t.get("turn_id"): t for t in _conversation(root / "data")}
    length = len(load_audio(question_wav, RATE)) / RATE
    for at, t in zip(at_s, timing):
        run = AppBargeIn(at, question_s=round(length, 2))
        run.interrupted = re.search(rf"turn {int(t['turn'])} interrupted after", log_text) is not None
        onset = question_onset(raw, mic.started_at, question_wav, t["planned"])
        heard = stop_heard(spk, speaker.started_at, onset, until=t["answer_released"])
        if heard is not None:
            run.stop_latency_ms, run.scrap_ms, run.scrap_dbfs = heard.latency_ms, heard.scrap_ms, heard.scrap_dbfs
        answered = turns.get(int(t["answer_turn"]), {})
        run.transcript, run.answer = answered.get("transcript", ""), answered.get("reply", "")
        report.runs.append(run)
