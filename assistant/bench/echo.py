"""`assistant bench echo`: hands-free barge-in in a virtual room, measured at the speaker and the microphone.

The room (`assistant.bench.rig`): a private PulseAudio whose `speaker` sink is fed back into the `mic` sink by
module-loopback (`--delay-ms`, `--echo-gain-db`), with room noise played into the mic at -50 dBFS. The avatar is
a real `LiveStream` (a blank picture: the audio path is what is measured) whose sinks are the echo canceller's
reference and a `pacat` player into the speaker (`PLAYER_LATENCY_MS`, like the app's player). The microphone is
read with `parec` at 16 kHz in 30 ms chunks stamped with time.monotonic(), through the canceller into the VAD
segmenter (barge-in onset while the avatar speaks), and the real `TurnTaking` controller (barge-in on) decides;
its `stop_speech` cancels the stream (30 ms fade) and silences the player's buffer, like the app's duck.

Each run plays one long reply that nobody interrupts (false barge-ins, ERLE) and one that the user interrupts
after `INTERRUPT_AFTER_S` with a question (detection, latency, transcript). The user speaks with another espeak-ng
voice (`--user-voice`, default en+f3) or the bundled Piper voice (`--user-voice piper-joe`).

Options compared (`--option`): `aec3` (pywebrtc-audio in the app, the shipped design), `pulse` (the sound
server's module-echo-cancel aec_method=webrtc, its gain control off: the mic is its source, the player its
sink), `none` (no canceller: what barge-in would do without one).

- `erle_db`: raw vs. processed microphone power while only the avatar speaks (after its first second);
- `false_barge_ins`: interruptions during the uninterrupted replies (with `--noises`, two coughs and a knock are
  played into each of them, at about the user's level);
- `barge_in_detected`: fraction of interruptions that stopped the reply;
- `barge_in_latency_ms`: the user's speech onset (the question's first sound, played at a noted time) -> the
  reply's last sound at the speaker (speaker monitor recording);
- `transcript_ok`: fraction of interrupting questions whose utterance (the processed signal, pre-roll included)
  Whisper transcribes with all their key words (the bundled model, recognised as the app's default `asr` settings
  do; each utterance is kept as `utterance-N.wav`); `transcript_clean_ok` the same for the questions' own recordings
  (no room, no avatar): what the recogniser makes of that voice at best.

With `aec3` the recordings folder also holds `tap.npz`: every microphone chunk raw, cancelled and as the
recogniser heard it (`asr`: the linear canceller's output, see `assistant.audio.echo`), the reference AEC3 got
with it, the reference positions and the runs' times, so a false barge-in can be traced (and AEC3 and the guard
replayed) offline.

Needs PulseAudio (pulseaudio, pulseaudio-utils), espeak-ng, the bundled Whisper model; pywebrtc-audio for aec3.
"""

from __future__ import annotations

import argparse
import json
import os
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
import webrtcvad

from assistant.audio.echo import EchoCanceller, EchoSettings
from assistant.audio.io import load_audio
from assistant.audio.vad import SpeechStarted, VadSegmenter, VadSettings
from assistant.bench import measure
from assistant.bench.rig import SpeakerRecorder, _spawn, _terminate, build_room, require, start_pulse, stop_all
from assistant.config import ASRSettings, AudioSettings, Settings
from assistant.events import SegmentReady, SpeechAudio, Utterance
from assistant.live.stream import LiveStream, StreamDrained, StreamSettings, StreamSpeechStarted
from assistant.turn_taking import HANDS_FREE, TurnTaking

RATE = 16000  # microphone
STREAM_RATE = 48000
PLAYER_LATENCY_MS = 250  # pacat's buffer: stands in for the app's player (VLC measured 250-420 ms in all; the
# canceller is told this, as the app is told audio.echo_delay_ms 250). pacat plays sooner than it is asked (150 ms
# asked: about 50 ms heard), and with 150 ms the 40 ms room's echo came 10 ms after the aligned reference: too
# close for AEC3 (1 false barge-in in 10 replies); the app's path is never that short
INTERRUPT_AFTER_S = 2.5
NOISE_BURST_DBFS = -12.0  # `--noises`: coughs and a knock at about the user's level ...
NOISE_AT_S = (4.0, 8.0, 12.0)  # ... this long into each reply nobody interrupts
MIN_SPEECH_MS = AudioSettings().barge_in_min_speech_ms  # the app's default onset for a barge-in
USER_VOICE = "en+f3"  # the interrupting user: espeak-ng's female voice (the avatar speaks with en-us)
NOISE_DBFS = -50.0
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
    question: str = ""
    detected: bool = False
    latency_ms: float | None = None
    keys: tuple[str, ...] = ()  # the question's key words
    transcript: str = ""
    transcript_ok: bool = False
    transcript_clean: str = ""  # the question's own recording, no room: what Whisper makes of the voice itself
    transcript_clean_ok: bool = False
    false_barge_in: bool = False


@dataclass
class EchoReport:
    option: str
    delay_ms: float
    echo_gain_db: float
    min_speech_ms: int
    erle_db: float | None
    runs: list[EchoRun] = field(default_factory=list)
    artifacts: str = ""
    user_voice: str = USER_VOICE
    noises: bool = False  # coughs and a knock played into each uninterrupted reply (they count as false barge-ins)
    speech_threshold: float = EchoSettings.speech_threshold  # the guard's Silero threshold (0: webrtcvad alone)
    reaims: int = 0  # the canceller's re-aims for clock drift between replies
    stall_holds: int = 0  # holds of barge-in after the machine stalled (a late tick or microphone chunk)

    def summary(self) -> dict[str, Any]:
        cut = [r for r in self.runs if r.interrupted]
        lat = [r.latency_ms for r in cut if r.latency_ms is not None]
        return {
            "option": self.option, "delay_ms": self.delay_ms, "echo_gain_db": self.echo_gain_db,
            "user_voice": self.user_voice, "noises": self.noises, "speech_threshold": self.speech_threshold,
            "barge_in_min_speech_ms": self.min_speech_ms,
            "erle_db": None if self.erle_db is None else round(self.erle_db, 1),
            "false_barge_ins": sum(r.false_barge_in for r in self.runs if not r.interrupted),
            "replies": sum(not r.interrupted for r in self.runs),
            "barge_in_detected": round(sum(r.detected for r in cut) / len(cut), 3) if cut else None,
            "barge_in_latency_ms": {"median": round(statistics.median(lat)) if lat else None,
                                    "max": round(max(lat)) if lat else None},
            "transcript_ok": round(sum(r.transcript_ok for r in cut) / len(cut), 3) if cut else None,
            "transcript_clean_ok": round(sum(r.transcript_clean_ok for r in cut) / len(cut), 3) if cut else None,
            "reference_reaims": self.reaims, "stall_holds": self.stall_holds, "artifacts": self.artifacts, "runs": [asdict(r) for r in self.runs],
        }  # fmt: skip


class _Blank:
    """A renderer of a tiny grey picture: the stream's audio is what this benchmark measures."""

    width, height = 64, 64
    face_box = None

    def render(self, pose: Any, opening: float, wide: float) -> np.ndarray:
        return np.full((64, 64, 3), 128, np.uint8)


class _Player:
    """A LiveStream sink that plays the audio into a PulseAudio sink through pacat (its own buffer = latency)."""

    def __init__(self, pulse: Any, sink: str) -> None:
        self._process = _spawn(
            [require("pacat"), "--playback", f"--device={sink}", f"--rate={STREAM_RATE}", "--channels=1",
             "--format=s16le", f"--latency-msec={PLAYER_LATENCY_MS}", "--property=media.name=avatar-voice"],
            env={**os.environ, **pulse.env}, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.muted_until = 0.0
        self._pulse = pulse
        self._input: str | None = None

    def write(self, yuv: np.ndarray, audio: np.ndarray) -> None:
        if time.monotonic() < self.muted_until:  # the app's duck: what the player already holds is not heard
            audio = np.zeros_like(audio)
        assert self._process.stdin is not None
        self._process.stdin.write(audio.tobytes())
        self._process.stdin.flush()

    def duck(self) -> None:
        """Like the app's VLC `audio_set_mute`: the server mutes the player's stream, buffered audio included,
        until the faded-out stream's silence has reached the server."""
        self.muted_until = time.monotonic() + (PLAYER_LATENCY_MS + 100) / 1000.0
        if self._input is None:
            listing = self._pulse.run("pactl", "list", "sink-inputs").stdout
            found = re.findall(r"Sink Input #(\d+)\n(?:\t.*\n)*?\t\tmedia.name = \"avatar-voice\"", listing)
            self._input = found[0] if found else ""
        if self._input:
            self._pulse.run("pactl", "set-sink-input-mute", self._input, "1")
            threading.Timer((PLAYER_LATENCY_MS + 100) / 1000.0, self._unduck).start()

    def _unduck(self) -> None:
        try:
            self._pulse.run("pactl", "set-sink-input-mute", self._input, "0")
        except Exception:  # noqa: BLE001 - the rig may be stopping
            pass

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        _terminate(self._process)


class _MicReader:
    """parec at 16 kHz mono, 30 ms chunks, each stamped with time.monotonic() when read; calls `on_chunk`."""

    def __init__(self, pulse: Any, source: str, on_chunk: Any) -> None:
        self._process = _spawn(
            [require("parec"), f"--device={source}", "--raw", "--format=s16le", f"--rate={RATE}", "--channels=1",
             "--latency-msec=10"],
            env={**os.environ, **pulse.env}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._on_chunk = on_chunk
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        n = 480 * 2
        buf = b""
        while True:
            data = self._process.stdout.read1(n) if hasattr(self._process.stdout, "read1") else b""
            if not data:
                return
            buf += data
            while len(buf) >= n:
                chunk, buf = buf[:n], buf[n:]
                self._on_chunk(np.frombuffer(chunk, np.int16).copy(), time.monotonic())

    def stop(self) -> None:
        _terminate(self._process)
        self._thread.join(5)


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


def _user_speaker(voice: str) -> Any:
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


def run_echo(runs: int, delay_ms: float, echo_gain_db: float, option: str, out_dir: Path,
             min_speech_ms: int = MIN_SPEECH_MS, progress=print, user_voice: str = USER_VOICE,
             noises: bool = False, speech_threshold: float = EchoSettings.speech_threshold) -> EchoReport:  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"bench-echo-{option}-", dir=out_dir))
    reply_wav = _speak(REPLY, root / "reply.wav", "en-us")
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(runs)]
    speak_user = _user_speaker(user_voice)
    question_wavs = [speak_user(q, root / f"question-{i}.wav") for i, (q, _) in enumerate(questions)]
    bursts = _noise_bursts(root) if noises else []
    q_lead = [next((s.start_s for s in measure.sound_onsets(load_audio(p, STREAM_RATE), STREAM_RATE)), 0.0)
              for p in question_wavs]  # fmt: skip
    report = EchoReport(option, delay_ms, echo_gain_db, min_speech_ms, None, artifacts=str(root),
                        user_voice=user_voice, noises=noises, speech_threshold=speech_threshold)  # fmt: skip
    things: list[Any] = []
    try:
        pulse = start_pulse(root / "pulse")
        things.append(pulse)
        build_room(pulse, delay_ms, echo_gain_db)
        speaker_sink, mic_source = pulse.speaker_sink, pulse.mic_source
        if option == "pulse":
            pulse.run("pactl", "load-module", "module-echo-cancel", "aec_method=webrtc", "use_master_format=1",
                      # its gain control off: on, it raised the processed level above the raw one (ERLE -7 dB)
                      'aec_args="analog_gain_control=0 digital_gain_control=0"',
                      f"source_master={pulse.mic_source}", f"sink_master={pulse.speaker_sink}",
                      "source_name=ec_mic", "sink_name=ec_speaker")  # fmt: skip
            speaker_sink, mic_source = "ec_speaker", "ec_mic"
        pulse.play_async(_noise(root / "noise.wav", 30.0 * runs + 60))
        speaker = SpeakerRecorder(pulse, root / "speaker.wav").start()
        things.append(speaker)
        raw_rec = SpeakerRecorder(pulse, root / "mic-raw.wav", source=pulse.mic_source, rate_hz=RATE).start()
        things.append(raw_rec)

        echo = (EchoCanceller(EchoSettings(RATE, float(PLAYER_LATENCY_MS), speech_threshold=speech_threshold))
                if option == "aec3" else None)  # fmt: skip
        vad = VadSettings(min_speech_ms=200, early_start_ms=0)
        vad_plain = webrtcvad.Vad(3)

        def plain_is_speech(frame: np.ndarray) -> bool:
            return vad_plain.is_speech(frame.tobytes(), RATE)

        segmenter = VadSegmenter.from_settings(vad, is_speech=echo.is_speech if echo else plain_is_speech)
        processed: list[tuple[float, np.ndarray, bool]] = []  # (captured_at, processed chunk, far active)
        tap: list[tuple] = []  # (raw chunk, aligned reference, its window's level dBFS, (target, read, written)
        # reference positions, the chunk as the recogniser heard it): tap.npz, to replay the canceller offline
        events: list[tuple[float, Any]] = []
        cond = threading.Condition()

        stream = LiveStream(_Blank(), StreamSettings(64, 64, 25.0, STREAM_RATE), on_event=lambda e: on_stream(e))
        player = _Player(pulse, speaker_sink)
        if echo is not None:
            echo.attach(stream)
        stream.add_sink(player)

        class Actions:
            job = 0
            stopped_at: list[float] = []
            utterances: list[Utterance] = []

            def submit_turn(self, utterance=None, text=None, end_of_speech_at=None, hold=None) -> int:
                Actions.job += 1
                if utterance is not None:
                    Actions.utterances.append(utterance)
                return Actions.job

            def cancel_turn(self, reason: str) -> None: ...

            def speak(self, segment: SegmentReady) -> None:
                stream.say_file(segment.speech.wav_path, (segment.turn_id, segment.index), segment.speech.text)

            def stop_speech(self, reason: str) -> None:
                if stream.speaking:
                    Actions.stopped_at.append(time.monotonic())
                    stream.cancel()
                    player.duck()

            def set_listening(self, listening: bool) -> None: ...

            def state_changed(self, s: Any, text: str) -> None: ...

        turns = TurnTaking(Actions(), HANDS_FREE, loaded=True, barge_in=True)

        def on_stream(e: Any) -> None:
            if isinstance(e, StreamSpeechStarted):
                turns.playback_started(e.key[0])
            elif isinstance(e, StreamDrained):
                turns.playback_drained()

        def on_chunk(chunk: np.ndarray, at: float) -> None:
            out = echo.process(chunk, at) if echo is not None else chunk
            far = echo.far_active if echo is not None else stream.speaking
            segmenter.set_onset_ms(min_speech_ms if far else vad.onset_ms)
            processed.append((at, out, far))
            if echo is not None:
                tap.append(
                    (chunk, (echo.last_far * 32767).astype(np.int16), echo.far_dbfs, echo.last_read, echo.for_asr)
                )
            for ev in segmenter.push(out, at=at, for_asr=echo.for_asr if echo is not None else None):
                with cond:
                    events.append((at, ev))
                    cond.notify_all()
                if isinstance(ev, SpeechStarted):
                    turns.speech_started()
                elif isinstance(ev, Utterance):
                    turns.utterance_ended(ev, at)
                else:
                    turns.speech_discarded()

        stream.start()
        mic = _MicReader(pulse, mic_source, on_chunk)
        things.append(mic)
        time.sleep(1.0)
        reply_s = len(load_audio(reply_wav, STREAM_RATE)) / STREAM_RATE
        reply_windows: list[tuple[float, float]] = []
        noise_spans: list[tuple[float, float]] = []  # where --noises played (left out of ERLE)
        run_marks: list[tuple[float, bool, float]] = []  # (reply queued at, interrupted, question played at)
        turn_id = 0
        for i in range(runs):
            for interrupted in (False, True):
                turn_id += 1
                run = EchoRun(interrupted)
                progress(f"run {i + 1}/{runs}: reply {'with' if interrupted else 'without'} an interruption")
                job = turns.typed("(the reply)")
                turns.turn_started(job)
                mark = len(events)
                speech = SpeechAudio(reply_wav, STREAM_RATE, reply_s, "espeak", text=REPLY)
                turns.segment_ready(SegmentReady(turn_id, 0.0, 0, speech, None))
                t0 = time.monotonic()
                if interrupted:
                    time.sleep(INTERRUPT_AFTER_S)
                    question, keys = questions[i]
                    run.question = question
                    run.__dict__["_wav"] = question_wavs[i]
                    run.keys = keys
                    before = len(Actions.stopped_at)
                    played = time.monotonic()
                    pulse.play(question_wavs[i])
                    onset = played + q_lead[i]
                    run_marks.append((t0, True, onset))
                    deadline = time.monotonic() + 4.0
                    with cond:
                        cond.wait_for(lambda: any(isinstance(e, Utterance) for _, e in events[mark:])
                                      or time.monotonic() > deadline, timeout=4.0)  # fmt: skip
                    run.detected = len(Actions.stopped_at) > before
                    utt = [e for _, e in events[mark:] if isinstance(e, Utterance)]
                    if run.detected:
                        run.latency_ms = onset  # resolved from the speaker recording below
                    if utt:
                        run.transcript = ""  # transcribed below, after the recording
                        run.__dict__["_utt"] = utt[-1]
                    time.sleep(1.0)
                else:
                    for at_s, burst in zip(NOISE_AT_S, bursts):  # into the microphone, as the user's voice is
                        timer = threading.Timer(at_s, lambda b=burst: pulse.play_async(b))
                        timer.daemon = True
                        timer.start()
                    time.sleep(reply_s + PLAYER_LATENCY_MS / 1000 + delay_ms / 1000 + 0.8)
                    run.false_barge_in = any(isinstance(e, SpeechStarted) for _, e in events[mark:])
                    reply_windows.append((t0, t0 + reply_s))
                    noise_spans += [(t0 + a - 0.1, t0 + a + 1.0) for a in NOISE_AT_S[: len(bursts)]]
                    run_marks.append((t0, False, 0.0))
                for at, ev in events[mark:]:
                    progress(f"  {at - t0:6.2f} s after the reply was queued: {type(ev).__name__}")
                turns.turn_done(_done(turn_id))
                turns.stop("next run")
                time.sleep(0.5)
                report.runs.append(run)
        mic.stop()
        stream.stop()
        stop_all([raw_rec, speaker])
        if tap:  # for replaying the canceller and the guard offline (why a barge-in fired)
            np.savez_compressed(
                root / "tap.npz", at=np.array([p[0] for p in processed]), raw=np.stack([t[0] for t in tap]),
                far=np.stack([t[1] for t in tap]), far_dbfs=np.array([t[2] for t in tap]),
                read=np.array([[-1 if v is None else v for v in t[3]] for t in tap], np.int64),
                out=np.stack([p[1] for p in processed]), asr=np.stack([t[4] for t in tap]), marks=np.array(run_marks),
                reply_s=reply_s,
            )  # fmt: skip
        report.reaims = echo.reaims if echo is not None else 0
        report.stall_holds = echo.stall_holds if echo is not None else 0
        report.erle_db = _erle(processed, raw_rec, reply_windows, delay_ms, noise_spans)
        _resolve_latency(report, speaker)
        _transcribe(report)
    finally:
        stop_all(things)
    return report


def _done(turn_id: int) -> Any:
    from assistant.events import TurnDone

    return TurnDone(turn_id, 0.0, "", "", 1, False, {}, {})


def _erle(processed, raw_rec: SpeakerRecorder, windows, delay_ms: float, skip=()) -> float | None:
    """Raw vs. processed microphone power while only the avatar speaks (each reply after its first second, not in
    the `skip` spans of time.monotonic())."""
    raw = load_audio(raw_rec.path, RATE)
    e_in = e_out = 0.0
    lag = (PLAYER_LATENCY_MS + delay_ms) / 1000.0
    for a, b in windows:
        lo, hi = a + lag + 1.0, b + lag
        for at, chunk, _ in processed:
            if lo <= at - 0.03 and at <= hi and not any(s0 <= at <= s1 for s0, s1 in skip):
                k = int((at - 0.03 - raw_rec.started_at) * RATE)
                if 0 <= k and k + 480 <= len(raw):
                    e_in += float(np.mean(raw[k : k + 480].astype(np.float64) ** 2))
                    e_out += float(np.mean((chunk.astype(np.float64) / 32768.0) ** 2))
    return 10 * float(np.log10(e_in / e_out)) if e_in > 0 and e_out > 0 else None


def _resolve_latency(report: EchoReport, speaker: SpeakerRecorder) -> None:
    """User onset -> the reply's last sound at the speaker (the first 150 ms of silence after the onset)."""
    spk = load_audio(speaker.path, STREAM_RATE)
    env = measure.rms_envelope(spk, STREAM_RATE, 10.0, 10.0)
    quiet = env < 10 ** (-45 / 20)
    for run in report.runs:
        if run.latency_ms is None:
            continue
        onset = run.latency_ms
        k = max(0, int((onset - speaker.started_at) * 100))
        end = None
        for j in range(k, len(quiet) - 15):
            if quiet[j : j + 15].all():
                end = j
                break
        run.latency_ms = None if end is None else round((end / 100 + speaker.started_at - onset) * 1000.0, 1)


def _transcribe(report: EchoReport) -> None:
    from assistant.asr import WhisperASR, bundled_model_dir

    model = bundled_model_dir()
    if model is None:
        return
    asr = WhisperASR.from_settings(ASRSettings(), model, "cpu")  # as the app's default config recognises speech
    asr.load()
    root = Path(report.artifacts)
    for i, run in enumerate(report.runs):
        utt = run.__dict__.pop("_utt", None)
        keys = run.keys
        wav = run.__dict__.pop("_wav", None)
        if wav is not None:
            x = load_audio(wav, RATE)
            clean = asr.transcribe(Utterance(x, RATE, 0.0, len(x) / RATE))
            run.transcript_clean = clean.text if clean is not None else ""
            run.transcript_clean_ok = all(k in run.transcript_clean.lower() for k in keys)
        if utt is None:
            continue
        if root.is_dir():  # what the recogniser heard, to listen to
            sf.write(root / f"utterance-{i}.wav", np.asarray(utt.samples, np.float32), utt.sample_rate_hz)
        t = asr.transcribe(utt)
        run.transcript = t.text if t is not None else ""
        low = run.transcript.lower()
        run.transcript_ok = all(k in low for k in keys)


def register(bsub: argparse._SubParsersAction) -> None:
    parser = bsub.add_parser("echo", help="hands-free barge-in in a virtual room (echo cancellation)")
    parser.add_argument("--runs", type=int, default=5, help="replies without and with an interruption, each")
    parser.add_argument("--delay-ms", type=float, default=100.0, help="the room's echo delay (module-loopback)")
    parser.add_argument("--echo-gain-db", type=float, default=-6.0, help="the echo's level in the microphone")
    parser.add_argument("--option", choices=("aec3", "pulse", "none"), default="aec3",
                        help="aec3: pywebrtc-audio in the app; pulse: module-echo-cancel; none: no canceller")
    parser.add_argument("--min-speech-ms", type=int, default=MIN_SPEECH_MS, help="audio.barge_in_min_speech_ms")
    parser.add_argument("--user-voice", default=USER_VOICE,
                        help="the interrupting user's voice: an espeak-ng voice, or piper-joe (the bundled Piper)")
    parser.add_argument("--noises", action="store_true",
                        help="play two coughs and a knock into each uninterrupted reply (they must not interrupt)")
    parser.add_argument("--speech-threshold", type=float, default=EchoSettings.speech_threshold,
                        help="the barge-in guard's Silero VAD threshold; 0: webrtcvad alone")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--out", type=Path, default=Path("bench-echo"), help="where recordings are kept")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    out = args.out.absolute()  # PulseAudio, started with this folder, wants an absolute path
    report = run_echo(args.runs, args.delay_ms, args.echo_gain_db, args.option, out, args.min_speech_ms,
                      progress=lambda m: print(m, file=sys.stderr), user_voice=args.user_voice,
                      noises=args.noises, speech_threshold=args.speech_threshold)  # fmt: skip
    summary = report.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key in ("option", "delay_ms", "echo_gain_db", "erle_db", "false_barge_ins", "replies",
                    "barge_in_detected", "barge_in_latency_ms", "transcript_ok", "transcript_clean_ok",
                    "reference_reaims", "stall_holds"):  # fmt: skip
            print(f"{key:20s} {summary[key]}")
        print(f"recordings in {summary['artifacts']}")
    return 0
