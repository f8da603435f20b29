"""`assistant bench echo`: hands-free barge-in in a virtual room, through the app's own capture path and player.

The room (`assistant.bench.rig`): a private PulseAudio whose `speaker` sink is fed back into the `mic` sink by
module-loopback (`--delay-ms`, `--echo-gain-db`), with room noise played into the mic at -50 dBFS; this process's
PortAudio is pointed at it (`use_pulse`), so the default input is the room's microphone and the default output its
speaker, as a laptop's would be. In it run the app's hands-free objects, wired as the window wires them: a real
`LiveStream` (a blank picture: the sound is what is measured) played by the direct player's `AudioPlayout`
(`assistant.live.playout.play_stream`, `live.audio_buffer_ms`), the echo canceller of `barge_in_setup` (the config's
`audio` section: `audio.echo_delay_ms`, `--echo-delay-ms`) tapping the stream, the microphone's `LiveListener` from
`assistant.audio.microphone.hands_free_listener` (sounddevice, the canceller before the VAD, the barge-in onset), and
the `TurnTaking` controller with barge-in on, whose speech goes through the window's `ClipFeed` and whose
`stop_speech` cancels it and flushes the playout as the window's `LiveAvatar.cancel` does. Nothing of the microphone
loop is copied here.

Each run plays, per `--at-s` value, one long reply that the user interrupts that many seconds after its first sound
(moved on to the next voiced stretch, so the question starts mid-word, not in a pause), and one reply nobody
interrupts (false barge-ins; `--noises`: two coughs and a knock played into it). With `--first-reply` every reply is
the first of a fresh session (a new stream, player, canceller and listener): the canceller has heard nothing of the
avatar yet. At the end each question is also said into the silent room (the avatar idle), through the same path:
what the recogniser hears of it at best. The user speaks with another espeak-ng voice (`--user-voice`, default
en+f3) or the bundled Piper voice (`--user-voice piper-joe`).

- `barge_in_detected`: fraction of interruptions that stopped the reply;
- `stop_latency_ms`: the question's first sound (found in the microphone recording by cross-correlation with the
  question's own recording) -> the reply's last sound at the speaker (the speaker monitor's recording: the first 150
  ms of silence after the onset); `detect_ms_median`: of which the question's first sound -> the app's stop (the
  rest is the stream's fade and the sound already in the player and the sound server);
- `scrap_ms`: sound of the cut reply at the speaker later than that (150 ms to 2 s after it): what came back after
  the fade (VLC's fixed 500 ms mute let 65-95 ms through);
- `transcript_ok`: interrupting questions transcribed with all their key words (the bundled Whisper, the app's default
  `asr` settings); `same_as_silent`: the same words (lower case, no punctuation) as the same question said into
  the silent room; `silent_ok`: the key words in the silent room's transcript;
- `split_questions`: interrupting questions the listener cut into more than one utterance (the app answers the
  first piece);
- `false_barge_ins`: speech onsets during the replies nobody interrupted; `stopped_before_the_question`: interrupted
  replies that something else stopped before the question began (false barge-ins too; no latency for them);
- `erle_db`: the canceller's own echo reduction over the echo-only frames of each session;
- `player_delay_ms`: the direct player's delay (queued sound plus the device's reported delay) at each reply's start.

The recordings folder keeps the speaker and raw microphone recordings and each utterance the recogniser heard.

Needs PulseAudio (pulseaudio, pulseaudio-utils, libasound2-plugins), espeak-ng, sounddevice, the bundled Whisper
model, pywebrtc-audio (and libspeexdsp) for the canceller.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from assistant.audio.echo import barge_in_setup
from assistant.audio.io import load_audio
from assistant.audio.microphone import HANDS_FREE, hands_free_listener
from assistant.audio.vad import SpeechStarted
from assistant.bench import measure
from assistant.bench.rig import PulseRig, SpeakerRecorder, build_room, start_pulse, stop_all, use_pulse
from assistant.config import ASRSettings, AudioSettings, Settings
from assistant.events import SegmentReady, SpeechAudio, TurnDone, Utterance
from assistant.live.clip_feed import ClipFeed
from assistant.live.playout import play_stream
from assistant.live.stream import (
    LiveStream,
    StreamDrained,
    StreamSettings,
    StreamSpeechFinished,
    StreamSpeechStarted,
)
from assistant.turn_taking import TurnTaking

RATE = 16000  # microphone
STREAM_RATE = 48000
AT_S = (1.0, 3.0, 8.0)  # the question this long into the reply's sound (then on to the next voiced stretch)
VOICED_MS = 300  # ... where the reply is voiced for at least this long (mid-sentence, not in a pause)
NOISE_BURST_DBFS = -12.0  # `--noises`: coughs and a knock at about the user's level ...
NOISE_AT_S = (4.0, 8.0, 12.0)  # ... this long into each reply nobody interrupts
MIN_SPEECH_MS = AudioSettings().barge_in_min_speech_ms  # the app's default onset for a barge-in
USER_VOICE = "en+f3"  # the interrupting user: espeak-ng's female voice (the avatar speaks with en-us)
NOISE_DBFS = -50.0
QUIET_DBFS = -45.0  # the speaker is silent below this (10 ms windows)
SCRAP_WINDOW_S = (0.15, 2.0)  # after the reply's last sound: anything heard here came back after the cut
REPLY = (
    "Paris is the capital of France and its largest city. It lies on the river Seine in the north of the country, "
    "and it has been a centre of art, science and trade for many hundreds of years. Millions of people visit it "
    "every year to see its museums, its gardens and its old bridges."
)
QUESTIONS = (
    ("What is the weather like in Berlin today?", ("weather", "berlin")),
    ("How tall is the Eiffel tower?", ("tall", "tower")),
    ("Tell me about the moon instead.", ("moon",)),
    ("What time is it in Tokyo?", ("time", "tokyo")),
)


@dataclass
class EchoRun:
    interrupted: bool
    at_s: float = 0.0  # the question's planned start into the reply's sound
    first_reply: bool = False  # the first reply of its session
    question: str = ""
    keys: tuple[str, ...] = ()  # the question's key words
    detected: bool = False
    stop_latency_ms: float | None = None
    detect_ms: float | None = None  # of which: the question's first sound -> the app's stop (the rest is the player)
    scrap_ms: float = 0.0  # sound of the cut reply heard after it stopped (SCRAP_WINDOW_S)
    scrap_dbfs: float | None = None  # its loudest 10 ms
    transcript: str = ""
    transcript_ok: bool = False
    silent: str = ""  # the same question said into the silent room, through the same path
    silent_ok: bool = False
    same_as_silent: bool = False
    stopped_early: bool = False  # the reply stopped before the question began: a false barge-in
    pieces: int = 0  # utterances the question was heard as (more than one: a pause inside it ended a turn)
    false_barge_in: bool = False
    false_at_s: float | None = None  # when the first false onset was heard, from the reply's first sound
    player_delay_ms: float | None = None


@dataclass
class EchoReport:
    delay_ms: float
    echo_gain_db: float
    echo_delay_ms: float  # audio.echo_delay_ms the canceller was told
    min_speech_ms: int
    buffer_ms: int  # live.audio_buffer_ms
    user_voice: str = USER_VOICE
    noises: bool = False
    first_reply: bool = False
    erle_db: list[float] = field(default_factory=list)  # per session
    player_underruns: int = 0  # the direct player's queue ran dry (its sound then comes later: the echo moves)
    reaims: int = 0  # the canceller's re-aims for clock drift between replies
    stall_holds: int = 0  # holds of barge-in after the machine stalled (a late tick or microphone chunk)
    runs: list[EchoRun] = field(default_factory=list)
    artifacts: str = ""

    def summary(self) -> dict[str, Any]:
        cut = [r for r in self.runs if r.interrupted]
        lat = [r.stop_latency_ms for r in cut if r.stop_latency_ms is not None]
        det = [r.detect_ms for r in cut if r.detect_ms is not None]
        delays = [r.player_delay_ms for r in self.runs if r.player_delay_ms is not None]

        def share(flag: str) -> float | None:
            return round(sum(getattr(r, flag) for r in cut) / len(cut), 3) if cut else None

        return {
            "delay_ms": self.delay_ms, "echo_gain_db": self.echo_gain_db, "echo_delay_ms": self.echo_delay_ms,
            "barge_in_min_speech_ms": self.min_speech_ms, "audio_buffer_ms": self.buffer_ms,
            "user_voice": self.user_voice, "noises": self.noises, "first_reply": self.first_reply,
            "interruptions": len(cut), "barge_in_detected": share("detected"),
            "stop_latency_ms": {"median": round(statistics.median(lat)) if lat else None,
                                "max": round(max(lat)) if lat else None},
            "detect_ms_median": round(statistics.median(det)) if det else None,
            "scraps": sum(r.scrap_ms > 0 for r in cut),
            "scrap_ms_max": round(max((r.scrap_ms for r in cut), default=0.0)),
            "transcript_ok": share("transcript_ok"), "silent_ok": share("silent_ok"),
            "same_as_silent": share("same_as_silent"), "split_questions": sum(r.pieces > 1 for r in cut),
            "replies": sum(not r.interrupted for r in self.runs),
            "false_barge_ins": sum(r.false_barge_in for r in self.runs if not r.interrupted),
            "stopped_before_the_question": sum(r.stopped_early for r in cut),
            "erle_db": round(statistics.median(self.erle_db), 1) if self.erle_db else None,
            "player_delay_ms": {"median": round(statistics.median(delays)) if delays else None,
                                "max": round(max(delays)) if delays else None},
            "player_underruns": self.player_underruns, "reference_reaims": self.reaims,
            "stall_holds": self.stall_holds, "artifacts": self.artifacts,
            "runs": [asdict(r) for r in self.runs],
        }  # fmt: skip


class _Blank:
    """A renderer of a tiny grey picture: the stream's audio is what this benchmark measures."""

    width, height = 64, 64
    face_box = None

    def render(self, pose: Any, opening: float, wide: float) -> np.ndarray:
        return np.full((64, 64, 3), 128, np.uint8)


class _AppPath:
    """The app's hands-free objects, wired as the window wires them (see the module docstring), in the process whose
    PortAudio is the room's. Records what the microphone and the stream report."""

    def __init__(self, settings: Settings) -> None:
        self.cond = threading.Condition()
        self.mic_events: list[tuple[float, Any]] = []  # (time.monotonic(), event) from the listener's thread
        self.stream_events: list[Any] = []
        self.utterances: list[Utterance] = []
        self.stopped_at: list[float] = []
        self.errors: list[str] = []
        self._job = 0
        self.stream = LiveStream(_Blank(), StreamSettings(64, 64, 25.0, STREAM_RATE), on_event=self._on_stream)
        self.feed = ClipFeed(self.stream)  # the one hand-off of speech into the stream, as the window's
        self.playout = play_stream(self.stream, settings.live.audio_buffer_ms)  # the direct player's sound
        if self.playout.device_error is not None:
            raise RuntimeError(f"the direct player found no sound device: {self.playout.device_error}")
        self.barge = barge_in_setup(settings.audio)
        if self.barge.echo is None:
            raise RuntimeError(self.barge.notice or "barge-in is off in the settings")
        self.barge.echo.attach(self.stream, self.playout)  # as the window does once the stream is built
        self.turns = TurnTaking(self, HANDS_FREE, loaded=True, barge_in=self.barge.enabled)
        self.listener = hands_free_listener(settings.audio, self, self.barge.echo)

    def start(self) -> None:
        self.stream.start()
        self.listener.start()

    def stop(self) -> None:
        self.listener.stop()
        self.stream.stop(close_sinks=True)  # closes the playout (its sound device) too

    # ---- MicrophoneEvents (the listener's thread), as the window's slots pass them on ----
    def _note(self, event: Any) -> None:
        with self.cond:
            self.mic_events.append((time.monotonic(), event))
            self.cond.notify_all()

    def on_mic_utterance(self, utterance: Utterance) -> None:
        self._note(utterance)
        self.turns.utterance_ended(utterance, _ended_at(utterance))

    def on_mic_speech_start(self, started: Any) -> None:
        self._note(started)
        self.turns.speech_started()

    def on_mic_speech_paused(self, paused: Any) -> None:
        self.turns.speech_paused(paused.utterance, _ended_at(paused))

    def on_mic_speech_resumed(self, resumed: Any) -> None:
        self.turns.speech_resumed()

    def on_mic_level(self, dbfs: float) -> None: ...

    def on_mic_error(self, error: Any) -> None:
        self.errors.append(str(error))

    def on_mic_notice(self, message: str) -> None: ...

    # ---- TurnTaking's actions ----
    def submit_turn(self, utterance=None, text=None, end_of_speech_at=None, hold=None) -> int:
        self._job += 1
        if utterance is not None:
            self.utterances.append(utterance)
        return self._job

    def cancel_turn(self, reason: str) -> None: ...

    def speak(self, segment: SegmentReady) -> None:
        self.feed.say_file((segment.turn_id, segment.index), segment.speech.wav_path, segment.speech.text)

    def stop_speech(self, reason: str) -> None:
        # LiveAvatar.cancel: the feed fades the stream out, and the player drops what it still holds (DirectPlayer.cut)
        if self.feed.cancel():
            self.stopped_at.append(time.monotonic())
            self.playout.cut(self.feed.stream.settings.fade_ms)

    def set_listening(self, listening: bool) -> None:
        self.listener.set_muted(not listening)

    def state_changed(self, state: Any, text: str) -> None: ...

    # ---- the stream's clock thread ----
    def _on_stream(self, event: Any) -> None:
        with self.cond:
            self.stream_events.append(event)
            self.cond.notify_all()
        if isinstance(event, StreamSpeechStarted):
            self.turns.playback_started(event.key[0])
        elif isinstance(event, StreamSpeechFinished):
            self.feed.finished(event.key)
        elif isinstance(event, StreamDrained):
            self.turns.playback_drained()

    def player_delay_ms(self) -> float:
        return self.playout.queued_ms() + self.playout.stats.device_delay_ms

    def wait(self, condition: Any, timeout_s: float) -> bool:
        with self.cond:
            return self.cond.wait_for(condition, timeout=timeout_s)


def _speak(text: str, path: Path, voice: str, speed: int = 165) -> Path:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True,
                   capture_output=True)  # fmt: skip
    return path


def _noise(path: Path, seconds: float) -> Path:
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, int(seconds * STREAM_RATE))
    x = np.convolve(x, np.ones(8) / 8, mode="same")  # pinkish: fan / room hum rather than hiss
    x *= 10 ** (NOISE_DBFS / 20) / np.sqrt(np.mean(x**2))
    sf.write(path, x.astype(np.float32), STREAM_RATE, subtype="PCM_16")
    return path


def _noise_bursts(root: Path) -> list[Path]:
    """Sounds that must not interrupt the avatar: cough-like bursts (band-limited noise, 10 ms attack, decaying;
    150 and 400 ms) and a knock (three 40 ms thuds), each at -12 dBFS (loudest 100 ms), about a user's level."""
    rng = np.random.default_rng(7)

    def band(ms: float, lo: float, hi: float) -> np.ndarray:
        n = int(ms * RATE / 1000)
        spectrum = np.fft.rfft(rng.normal(0, 1, n))
        f = np.fft.rfftfreq(n, 1 / RATE)
        spectrum[(f < lo) | (f > hi)] = 0
        return np.fft.irfft(spectrum, n)

    def cough(ms: float) -> np.ndarray:
        x = band(ms, 200, 4000)
        t = np.arange(len(x)) / RATE
        return x * np.minimum(1.0, t / 0.01) * np.exp(-t / (ms / 1000 / 2.5))

    knock = np.zeros(int(0.5 * RATE))
    thud = band(40, 80, 2000) * np.exp(-np.arange(int(0.04 * RATE)) / (0.008 * RATE))
    for k in range(3):
        knock[int(k * 0.15 * RATE) : int(k * 0.15 * RATE) + len(thud)] += thud
    paths = []
    for name, x in (("cough-150ms", cough(150)), ("cough-400ms", cough(400)), ("knock", knock)):
        w = int(0.1 * RATE)
        loudest = max(np.sqrt(np.mean(x[i : i + w] ** 2)) for i in range(0, max(1, len(x) - w), w // 2))
        x = np.concatenate([x * 10 ** (NOISE_BURST_DBFS / 20) / loudest, np.zeros(int(0.1 * RATE))])
        paths.append(root / f"{name}.wav")
        sf.write(paths[-1], x.astype(np.float32), RATE, subtype="PCM_16")
    return paths


def user_speaker(voice: str) -> Any:
    """The user's voice: an espeak-ng voice (160 words a minute) or a Piper voice by its registry name (the
    bundled `piper-joe`, its sampling noise off). Returns text, path -> path of a WAV."""
    if not voice.startswith("piper-"):
        return lambda text, path: _speak(text, path, voice, 160)
    from assistant.bench.asr import _piper_speaker

    speak = _piper_speaker(voice, Settings().models_dir, STREAM_RATE)

    def to_wav(text: str, path: Path) -> Path:
        sf.write(path, speak(text), STREAM_RATE, subtype="PCM_16")
        return path

    return to_wav



def _ended_at(event: Any) -> float:
    """When a VAD event's speech ended on time.monotonic() (its last voiced frame), as the window's bridge reads it."""
    at = getattr(event, "voice_ended_at", None)
    return float(at) if at is not None else time.monotonic()


def voiced_after(reply: np.ndarray, at_s: float) -> float:
    """The first time from `at_s` on where the reply (16 kHz) is voiced for VOICED_MS: mid-sentence, not in a pause."""
    loud = measure.to_dbfs(measure.rms_envelope(reply, RATE)) > QUIET_DBFS + 10  # 10 ms windows
    need = VOICED_MS // 10
    for k in range(int(at_s * 100), len(loud) - need):
        if loud[k : k + need].all():
            return k / 100
    return at_s


@dataclass
class _Sounds:
    reply_wav: Path
    reply_s: float
    reply_16k: np.ndarray
    questions: list[tuple[str, tuple[str, ...], Path, float]]  # text, key words, WAV, its first sound (s)
    bursts: list[Path]


def _prepare(root: Path, count: int, user_voice: str, noises: bool) -> _Sounds:
    reply_wav = _speak(REPLY, root / "reply.wav", "en-us")
    speak_user = user_speaker(user_voice)
    questions = []
    for i in range(min(count, len(QUESTIONS))):
        text, keys = QUESTIONS[i]
        wav = speak_user(text, root / f"question-{i}.wav")
        lead = next((o.start_s for o in measure.sound_onsets(load_audio(wav, STREAM_RATE), STREAM_RATE)), 0.0)
        questions.append((text, keys, wav, lead))
    reply = load_audio(reply_wav, RATE)
    return _Sounds(reply_wav, len(reply) / RATE, reply, questions, _noise_bursts(root) if noises else [])


def _start_reply(app: _AppPath, turn_id: int, sounds: _Sounds) -> tuple[int, int, float | None, float]:
    """Queue the long reply as the window queues a turn's first segment; returns (marks into the microphone's and the
    stream's events, when its first sound reaches the speaker (time.monotonic(), None: the stream never started it),
    the player's delay then)."""
    mark = len(app.mic_events)
    seen = len(app.stream_events)
    job = app.turns.typed("(the reply)")
    app.turns.turn_started(job)
    speech = SpeechAudio(sounds.reply_wav, STREAM_RATE, sounds.reply_s, "espeak", text=REPLY)
    app.turns.segment_ready(SegmentReady(turn_id, 0.0, 0, speech, None))
    started = app.wait(lambda: any(isinstance(e, StreamSpeechStarted) for e in app.stream_events[seen:]), 5.0)
    if not started:
        return mark, seen, None, 0.0
    event = next(e for e in app.stream_events[seen:] if isinstance(e, StreamSpeechStarted))
    delay_ms = app.player_delay_ms()
    return mark, seen, event.at_s + delay_ms / 1000.0, delay_ms


def _end_reply(app: _AppPath, turn_id: int) -> None:
    app.turns.turn_done(TurnDone(turn_id, 0.0, "", "", 1, False, {}, {}))
    app.turns.stop("next run")
    time.sleep(0.5)


def _interrupted(app: _AppPath, pulse: PulseRig, turn_id: int, sounds: _Sounds, q: int, at_s: float) -> EchoRun:
    text, keys, wav, lead = sounds.questions[q]
    run = EchoRun(True, at_s, question=text, keys=keys)
    mark, _, heard_at, run.player_delay_ms = _start_reply(app, turn_id, sounds)
    if heard_at is None:
        return run
    before = len(app.stopped_at)
    into = voiced_after(sounds.reply_16k, at_s)
    time.sleep(max(0.0, heard_at + into - lead - time.monotonic()))
    played = time.monotonic()
    pulse.play_async(wav)
    app.wait(lambda: any(isinstance(e, Utterance) for _, e in app.mic_events[mark:]), 6.0)
    run.detected = len(app.stopped_at) > before
    if run.detected:
        run.__dict__["_stopped"] = app.stopped_at[before]
    run.__dict__["_played"] = played + lead  # refined from the microphone recording afterwards
    run.__dict__["_wav"] = wav
    time.sleep(SCRAP_WINDOW_S[1] + 0.2)  # the speaker recording must hold the scrap window
    utt = [e for _, e in app.mic_events[mark:] if isinstance(e, Utterance)]
    run.pieces = len(utt)
    if utt:  # the app answers the first: that is the question it heard
        run.__dict__["_utt"] = utt[0]
    _end_reply(app, turn_id)
    return run


def _uninterrupted(app: _AppPath, pulse: PulseRig, turn_id: int, sounds: _Sounds) -> EchoRun:
    run = EchoRun(False)
    mark, seen, heard_at, run.player_delay_ms = _start_reply(app, turn_id, sounds)
    if heard_at is not None:
        for at_s, burst in zip(NOISE_AT_S, sounds.bursts):  # into the microphone, as the user's voice is
            timer = threading.Timer(max(0.0, heard_at + at_s - time.monotonic()), pulse.play_async, (burst,))
            timer.daemon = True
            timer.start()
        app.wait(lambda: any(isinstance(e, StreamDrained) for e in app.stream_events[seen:]), sounds.reply_s + 5.0)
        time.sleep(0.5 + run.player_delay_ms / 1000.0)  # the echo's tail
    onsets = [at for at, e in app.mic_events[mark:] if isinstance(e, SpeechStarted)]
    run.false_barge_in = bool(onsets)
    if onsets and heard_at is not None:  # beside NOISE_AT_S: a noise; elsewhere: the avatar's own echo
        run.false_at_s = round(onsets[0] - heard_at, 2)
    _end_reply(app, turn_id)
    return run


def _silent_room(app: _AppPath, pulse: PulseRig, sounds: _Sounds) -> dict[str, Utterance]:
    """Each question said into the room while the avatar is idle: what the same path hears of it at best."""
    heard: dict[str, Utterance] = {}
    for text, _, wav, _ in sounds.questions:
        mark = len(app.mic_events)
        pulse.play_async(wav)
        app.wait(lambda m=mark: any(isinstance(e, Utterance) for _, e in app.mic_events[m:]), 8.0)
        utt = [e for _, e in app.mic_events[mark:] if isinstance(e, Utterance)]
        if utt:
            heard[text] = utt[-1]
        app.turns.stop("next question")
        time.sleep(0.5)
    return heard


def run_echo(runs: int, delay_ms: float, echo_gain_db: float, out_dir: Path, min_speech_ms: int = MIN_SPEECH_MS,
             progress=print, user_voice: str = USER_VOICE, noises: bool = False, at_s: tuple[float, ...] = AT_S,
             first_reply: bool = False, echo_delay_ms: float | None = None,
             buffer_ms: int | None = None) -> EchoReport:  # fmt: skip
    """`runs` times: per `at_s` one reply interrupted that far in, and one reply nobody interrupts."""
    settings = Settings()
    audio = settings.audio.model_copy(update={"barge_in": True, "barge_in_min_speech_ms": min_speech_ms})
    if echo_delay_ms is not None:
        audio = audio.model_copy(update={"echo_delay_ms": int(echo_delay_ms)})
    live = settings.live if buffer_ms is None else settings.live.model_copy(update={"audio_buffer_ms": buffer_ms})
    settings = settings.model_copy(update={"audio": audio, "live": live})
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="bench-echo-", dir=out_dir))
    sounds = _prepare(root, runs * len(at_s), user_voice, noises)
    report = EchoReport(delay_ms, echo_gain_db, float(audio.echo_delay_ms), min_speech_ms, live.audio_buffer_ms,
                        user_voice, noises, first_reply, artifacts=str(root))  # fmt: skip
    plan = [(i, a) for i in range(runs) for a in (*at_s, None)]  # None: the reply nobody interrupts
    asked = 0  # the questions take turns
    pulse = start_pulse(root / "pulse")
    things: list[Any] = [pulse]
    canceller_log = _keep_log(root / "canceller.log")  # re-aims, holds: what the canceller did, for a look after
    try:
        with use_pulse(pulse):
            build_room(pulse, delay_ms, echo_gain_db)
            pulse.play_async(_noise(root / "noise.wav", 40.0 * len(plan) + 60))
            speaker = SpeakerRecorder(pulse, root / "speaker.wav").start()
            things.append(speaker)
            raw_rec = SpeakerRecorder(pulse, root / "mic-raw.wav", source=pulse.mic_source, rate_hz=RATE).start()
            things.append(raw_rec)
            app: _AppPath | None = None
            for turn_id, (_, at) in enumerate(plan, start=1):
                fresh = app is None or first_reply
                if fresh:
                    if app is not None:
                        _close_session(app, report)
                    app = _AppPath(settings)
                    app.start()
                    time.sleep(1.0)  # the microphone open, the stream idling
                assert app is not None
                what = "nobody interrupts" if at is None else f"question at {at:g} s"
                progress(f"reply {turn_id}/{len(plan)}: {what}")
                if at is None:
                    run = _uninterrupted(app, pulse, turn_id, sounds)
                else:
                    run = _interrupted(app, pulse, turn_id, sounds, asked % len(sounds.questions), at)
                    asked += 1
                run.first_reply = fresh
                report.runs.append(run)
            assert app is not None
            silent = _silent_room(app, pulse, sounds)
            _close_session(app, report)
            stop_all([raw_rec, speaker])
        _resolve_at_speaker(report, speaker, raw_rec)
        _transcribe(report, silent)
    finally:
        stop_all(things)
        logging.getLogger("assistant.audio").removeHandler(canceller_log)
        canceller_log.close()
    return report


def _keep_log(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("assistant.audio")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return handler


def _close_session(app: _AppPath, report: EchoReport) -> None:
    echo = app.barge.echo
    report.player_underruns += app.playout.stats.underruns
    app.stop()
    if echo is not None:
        if echo.erle_db is not None:
            report.erle_db.append(echo.erle_db)
        report.reaims += echo.reaims
        report.stall_holds += echo.stall_holds


def question_onset(raw: np.ndarray, raw_start: float, wav: Path, planned: float) -> float:
    """When the question's first sound is in the microphone recording (time.monotonic()): where the question's own
    recording matches best near the planned time (paplay starts late by its own buffer)."""
    q = load_audio(wav, RATE)
    lead = next((o.start_s for o in measure.sound_onsets(q, RATE)), 0.0)
    lo = max(0, int((planned - lead - 0.3 - raw_start) * RATE))
    hi = min(len(raw), int((planned - lead + 1.0 - raw_start) * RATE) + len(q))
    if hi - lo < len(q):
        return planned
    seg = raw[lo:hi]
    n = 1 << int(np.ceil(np.log2(len(seg) + len(q))))
    xc = np.fft.irfft(np.fft.rfft(seg, n) * np.conj(np.fft.rfft(q, n)), n)[: len(seg) - len(q) + 1]
    return raw_start + (lo + int(np.argmax(xc))) / RATE + lead


@dataclass(frozen=True)
class StopHeard:
    """A cut reply at the speaker: its last sound after the question's first, and what of it came back later."""

    latency_ms: float  # the question's first sound -> the reply's last sound (then 150 ms of silence)
    scrap_ms: float  # sound heard SCRAP_WINDOW_S after that (or until `until`): the cut voice coming back
    scrap_dbfs: float | None  # its loudest 10 ms


def stop_heard(spk: np.ndarray, spk_start: float, onset: float, until: float | None = None) -> StopHeard | None:
    """From the speaker's recording `spk` (STREAM_RATE, its first sample at `spk_start` on time.monotonic()): the
    first 150 ms of silence after `onset`, and any sound after it up to SCRAP_WINDOW_S[1] (or `until`, when the
    next reply begins). None: the speaker never went quiet."""
    levels = measure.to_dbfs(measure.rms_envelope(spk, STREAM_RATE))  # 10 ms windows
    quiet = levels < QUIET_DBFS
    k = max(0, int((onset - spk_start) * 100))
    end = next((j for j in range(k, len(quiet) - 15) if quiet[j : j + 15].all()), None)
    if end is None:
        return None
    last = end + int(SCRAP_WINDOW_S[1] * 100)
    if until is not None:
        last = min(last, int((until - spk_start) * 100))
    a = end + int(SCRAP_WINDOW_S[0] * 100)
    loud = ~quiet[a:last]
    scrap_dbfs = round(float(levels[a:last].max()), 1) if loud.any() else None
    return StopHeard(round((end / 100 + spk_start - onset) * 1000.0, 1), float(loud.sum() * 10), scrap_dbfs)


def _resolve_at_speaker(report: EchoReport, speaker: SpeakerRecorder, raw_rec: SpeakerRecorder) -> None:
    """Per interruption: the question's first sound (microphone recording) -> the reply's last sound and any scrap
    (`stop_heard`)."""
    spk = load_audio(speaker.path, STREAM_RATE)
    raw = load_audio(raw_rec.path, RATE)
    for run in report.runs:
        planned, wav = run.__dict__.pop("_played", None), run.__dict__.get("_wav")
        stopped = run.__dict__.pop("_stopped", None)
        if planned is None or stopped is None:
            continue
        onset = question_onset(raw, raw_rec.started_at, wav, planned)
        if stopped < onset:  # something else stopped the reply: it is no measure of the question
            run.stopped_early = True
            continue
        run.detect_ms = round((stopped - onset) * 1000.0, 1)
        heard = stop_heard(spk, speaker.started_at, onset)
        if heard is not None:
            run.stop_latency_ms, run.scrap_ms, run.scrap_dbfs = heard.latency_ms, heard.scrap_ms, heard.scrap_dbfs


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _transcribe(report: EchoReport, silent: dict[str, Utterance]) -> None:
    from assistant.asr import WhisperASR, bundled_model_dir

    model = bundled_model_dir()
    if model is None:
        return
    asr = WhisperASR.from_settings(ASRSettings(), model, "cpu")  # as the app's default config recognises speech
    asr.load()
    root = Path(report.artifacts)

    def text_of(utt: Utterance | None) -> str:
        t = asr.transcribe(utt) if utt is not None else None
        return t.text if t is not None else ""

    silent_text = {q: text_of(u) for q, u in silent.items()}
    for i, run in enumerate(report.runs):
        run.__dict__.pop("_wav", None)
        utt = run.__dict__.pop("_utt", None)
        if not run.interrupted:
            continue
        run.silent = silent_text.get(run.question, "")
        run.silent_ok = all(k in run.silent.lower() for k in run.keys)
        if utt is None:
            continue
        sf.write(root / f"utterance-{i}.wav", np.asarray(utt.samples, np.float32), utt.sample_rate_hz)
        run.transcript = text_of(utt)
        run.transcript_ok = all(k in run.transcript.lower() for k in run.keys)
        run.same_as_silent = bool(run.silent) and _words(run.transcript) == _words(run.silent)


def register(bsub: argparse._SubParsersAction) -> None:
    parser = bsub.add_parser("echo", help="hands-free barge-in in a virtual room, through the app's capture path")
    parser.add_argument("--runs", type=int, default=3,
                        help="rounds of replies: per --at-s one interrupted, and one not")
    parser.add_argument("--at-s", default=",".join(f"{a:g}" for a in AT_S),
                        help="comma-separated: the question this many seconds into the reply's sound")
    parser.add_argument("--first-reply", action="store_true",
                        help="every reply the first of a fresh session (new stream, player, canceller, listener)")
    parser.add_argument("--delay-ms", default="100",
                        help="the room's echo delay (module-loopback); comma-separated: one room after another")
    parser.add_argument("--echo-gain-db", default="-6",
                        help="the echo's level in the microphone; comma-separated, one per --delay-ms room "
                        "(write --echo-gain-db=-3,-6)")
    parser.add_argument("--echo-delay-ms", type=float, default=None,
                        help=f"audio.echo_delay_ms the canceller is told (default {AudioSettings().echo_delay_ms})")
    parser.add_argument("--buffer-ms", type=int, default=None, help="live.audio_buffer_ms of the direct player")
    parser.add_argument("--min-speech-ms", type=int, default=MIN_SPEECH_MS, help="audio.barge_in_min_speech_ms")
    parser.add_argument("--user-voice", default=USER_VOICE,
                        help="the interrupting user's voice: an espeak-ng voice, or piper-joe (the bundled Piper)")
    parser.add_argument("--noises", action="store_true",
                        help="play two coughs and a knock into each uninterrupted reply (they must not interrupt)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", type=Path, default=Path("bench-echo"), help="where recordings are kept")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    out = args.out.absolute()  # PulseAudio, started with this folder, wants an absolute path
    at_s = tuple(float(a) for a in args.at_s.split(",") if a.strip())
    rooms = _rooms(args.delay_ms, args.echo_gain_db)
    summaries = []
    for delay_ms, gain_db in rooms:
        report = run_echo(args.runs, delay_ms, gain_db, out, args.min_speech_ms,
                          progress=lambda m: print(m, file=sys.stderr), user_voice=args.user_voice,
                          noises=args.noises, at_s=at_s, first_reply=args.first_reply,
                          echo_delay_ms=args.echo_delay_ms, buffer_ms=args.buffer_ms)  # fmt: skip
        summaries.append(report.summary())
    if args.json:
        print(json.dumps(summaries[0] if len(summaries) == 1 else summaries, indent=2))
    elif len(summaries) == 1:
        for key, value in summaries[0].items():
            if key != "runs":
                print(f"{key:24s} {value}")
    else:
        print(_rows(summaries))
    return 0


def _rooms(delays: str, gains: str) -> list[tuple[float, float]]:
    """`--delay-ms 40,100` with `--echo-gain-db -3,-6` (one gain: the same in every room) -> [(40, -3), (100, -6)]."""
    d = [float(v) for v in delays.split(",") if v.strip()]
    g = [float(v) for v in gains.split(",") if v.strip()]
    if len(g) == 1:
        g = g * len(d)
    if not d or len(g) != len(d):
        raise SystemExit(f"bench echo: --echo-gain-db needs one value or one per --delay-ms room, got {gains!r}")
    return list(zip(d, g))


def _rows(summaries: list[dict[str, Any]]) -> str:
    """One line per room: the figures the README's barge-in table gives."""
    head = "room            stop ms (median/max)  detected  same words  key words  false+early  scraps  ERLE dB"
    lines = [head]
    for s in summaries:
        lat = s["stop_latency_ms"]
        lines.append(
            f"{s['delay_ms']:>4.0f} ms {s['echo_gain_db']:+5.1f} dB  {lat['median']!s:>6} / {lat['max']!s:<6}      "
            f"{s['barge_in_detected']!s:>6}  {s['same_as_silent']!s:>9}  {s['transcript_ok']!s:>9}  "
            f"{s['false_barge_ins']:>2}/{s['replies']:<2}+{s['stopped_before_the_question']:<2} {s['scraps']:>4}  "
            f"{s['erle_db']!s:>6}"
        )
    return "\n".join(lines)
