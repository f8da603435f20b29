"""Fixtures for the desktop-app tests: fake model stages driven by the real TurnRunner, a fake Session around
it (in live mode, like the app's), a fake microphone, and recorders for what the live stream and the
turn-taking controller report.

The fakes stand in for the models only; the pipeline, the bridge, the workers, the turn-taking controller,
the live avatar (the real `LiveStream` and the player `live.player` names: the direct player keeping time on
the system clock, or ffmpeg's `LiveEncoder` and VLC's `LivePlayer` with its dummy outputs) and the window are the real ones. The stream is kept small (320x180 at
25 fps) so that it is cheap to run in every test.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import assistant.profile

from assistant.audio.io import write_wav
from assistant.cancel import CancelToken
from assistant.config import load_settings, settings_to_dict, validate_dict
from assistant.errors import NoFaceError
from assistant.events import ReplySentence, SpeechAudio, Transcript, Utterance
from assistant.live import StreamDrained, StreamSpeechFinished, StreamSpeechStarted
from assistant.pipeline import Stages, TurnRunner
from assistant.profile import resolve
from assistant.turn_taking import TurnState
from tests.integration.conftest import spoken_question, virtual_mic  # noqa: F401 - fixtures for the Xvfb test

REPLY = ("The sky is blue.", "It scatters short wavelengths.", "That is all.")
# VLC in the tests: dummy video output (the offscreen platform has no window to draw into, LivePlayer picks
# vdummy itself) and dummy audio output (no sound server on a test machine).
TEST_VLC_ARGS = ("--aout=adummy",)


def player_for_tests(surface, live):
    """The player `live.player` names, without a sound device (a test machine has none): VLC with its dummy audio
    output, the direct player keeping time on the system clock (the sound goes nowhere)."""
    from assistant.live.playout import SystemClockOutput
    from ui.direct_player import DirectPlayer
    from ui.live_avatar import default_player

    if live.player == "vlc":
        return default_player(surface, live, TEST_VLC_ARGS)
    return DirectPlayer(surface, live.audio_buffer_ms, open_output=SystemClockOutput)


def frames_played(live) -> int:
    """Frames of the stream the player took so far (VLC: through the encoder's pipe; direct: shown)."""
    if live.encoder is not None and live.player is not None and live.player.wants_pipe:
        return live.encoder.frames_written
    playout = getattr(live.player, "playout", None)
    return playout.stats.frames_shown if playout is not None else 0
STREAM_SIZE = {"width": 320, "height": 180}  # a small stream: cheap to render and encode in every test
TTS_RATE_HZ = 16000


# ---- fake stages (the interfaces of assistant.pipeline) ----


class FakeASR:
    name = "fake-asr"

    def __init__(self, text: str = "why is the sky blue") -> None:
        self.text = text

    def transcribe(self, utterance: Utterance) -> Transcript:
        return Transcript(self.text, "en", utterance.start_s, utterance.end_s, 0.01, "fake", 0.05)


class FakeLLM:
    """Yields `sentences` `delay_s` apart. `gates`: sentence index -> threading.Event the sentence waits for
    (a cancel ends the wait), so a test decides when a later sentence exists."""

    name = "fake-llm"

    def __init__(
        self,
        sentences: tuple[str, ...] = REPLY,
        delay_s: float = 0.02,
        busy: bool = False,
        gates: dict[int, threading.Event] | None = None,
    ) -> None:
        self.sentences, self.delay_s, self.busy = sentences, delay_s, busy
        self.gates = dict(gates or {})

    def stream_reply(self, user_text: str, cancel: CancelToken):
        for i, text in enumerate(self.sentences):
            if self.busy:
                _burn_cpu(self.delay_s)
            elif cancel.wait(self.delay_s):
                return
            gate = self.gates.get(i)
            while gate is not None and not gate.is_set():
                if cancel.wait(0.01):
                    return
            if cancel.cancelled:
                return
            yield ReplySentence(i, text, is_last=i == len(self.sentences) - 1)


class FakeTTS:
    """Speaks a tone `seconds_per_word` long per word of the text (a real voice's length follows its text)."""

    name = "fake-tts"

    def __init__(self, seconds_per_word: float = 0.08, busy_s: float = 0.0) -> None:
        self.seconds_per_word, self.busy_s = seconds_per_word, busy_s

    def synthesize(self, text: str, out_path: Path) -> SpeechAudio:
        _burn_cpu(self.busy_s)
        duration_s = max(0.2, self.seconds_per_word * len(text.split()))
        t = np.arange(int(TTS_RATE_HZ * duration_s)) / TTS_RATE_HZ
        # 220 Hz voiced at a syllable rate of 4 Hz: the mouth opens and closes with it.
        tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(out_path, tone.astype(np.float32), TTS_RATE_HZ)
        return SpeechAudio(out_path, TTS_RATE_HZ, duration_s, "fake-tts", text)


_BLOCK = bytes(1 << 20)


def _burn_cpu(seconds: float) -> None:
    """Keep a core busy the way a model stage does: native compute that releases the GIL (sha256 of 1 MiB,
    ~2 ms, stands in for an ONNX/CTranslate2/llama.cpp call) alternating with Python glue that holds it
    (~0.5 ms slices)."""
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        hashlib.sha256(_BLOCK).digest()
        for i in range(4000):
            x += i * i


# ---- a fake Session: the real TurnRunner around fake stages, in live mode like the app's Session ----


@dataclass
class FakeSession:
    settings: Any
    on_event: Any
    stages: Stages
    out_dir: Path
    log: list[str] = field(default_factory=list)
    reconfigured_with: list[Any] = field(default_factory=list)
    load_delay_s: float = 0.0
    load_gate: threading.Event | None = None  # load() waits for it: the test says when the models are loaded
    faceless: set[str] = field(default_factory=set)
    live_engine: str | None = None  # what draws the live stream, told by the window (as on the real Session)
    amended: list[tuple[int, str]] = field(default_factory=list)  # amend_spoken_reply calls: (turn_id, text)
    resets: list[bool] = field(default_factory=list)  # reset_conversation calls: whether on the GUI thread

    def __post_init__(self) -> None:
        self.runner = TurnRunner(self.stages, self.on_event, self.out_dir)
        self.runner.video_by_stream = True  # live mode: the stream animates the speech, segments are audio
        self.resolved = resolve(self.settings, probe=lambda: None)

    def load(self, progress=None) -> None:
        if self.load_gate is not None:
            self.load_gate.wait(60)
        for i, what in enumerate(("speech recognition", "language model", "voice")):
            if progress:
                progress(what, i / 3)
            time.sleep(self.load_delay_s / 3)
        if progress:
            progress("done", 1.0)
        self.log.append("load")

    def run_turn(self, utterance=None, text=None, end_of_speech_at=None, hold=None):
        self.log.append("held turn" if hold is not None else "turn")
        return self.runner.run(utterance=utterance, text=text, end_of_speech_at=end_of_speech_at, hold=hold)

    def amend_spoken_reply(self, turn_id: int, spoken_text: str) -> None:
        self.amended.append((turn_id, spoken_text))

    def reset_conversation(self) -> None:
        self.resets.append(threading.current_thread() is threading.main_thread())

    def cancel_current(self, reason: str = "new user speech") -> bool:
        return self.runner.cancel_current(reason)

    def engines_summary(self) -> dict[str, str]:
        return {
            "asr": "fake whisper on CPU",
            "llm": "fake llm",
            "tts": "fake tts",
            "talking_head": self.live_engine or "live stream",
        }

    def reconfigure(self, settings, progress=None) -> list[str]:
        old = self.settings
        self.settings = settings
        self.resolved = resolve(settings, probe=lambda: None)
        self.reconfigured_with.append(settings)
        if progress:
            progress("voice", 0.5)
        changed = [
            name
            for name in ("gpu_profile", "talking_head", "tts", "dialogue", "asr")
            if getattr(old, name) != getattr(settings, name)
        ]
        self.log.append("reconfigure")
        return changed

    def avatar_face_preview(self, image_path):
        if Path(image_path).name in self.faceless:
            raise NoFaceError(f"No face found in {image_path}; pick a photo with one clear face")
        from ui.settings_dialog import detect_face_crop

        return detect_face_crop(Path(image_path))

    def close(self) -> None:
        self.log.append("close")


def small_stream_settings(tmp_path: Path, **overrides: Any):
    """The shipped defaults (no user overlay, no environment) with a 320x180 25 fps live stream and every
    file the app writes (face cache, replies, logs) under `tmp_path`."""
    data = settings_to_dict(load_settings(user_path=tmp_path / "no-user-config.yaml", env={}))
    data["live"].update(resolution=dict(STREAM_SIZE), fps=25)
    data["paths"].update(data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    for key, value in overrides.items():  # a section's dict updates that section; anything else replaces
        if isinstance(value, dict):
            data[key].update(value)
        else:
            data[key] = value
    return validate_dict(data)


@pytest.fixture(autouse=True)
def reference_cpu_speed(monkeypatch):
    """The window's CPU tier comes from the reference machine's speed: measuring this CPU costs seconds in every
    test (each has its own cache folder) and over 20 s on a loaded machine (tests/integration measures it)."""
    from tests.unit.conftest import REFERENCE_SPEED

    monkeypatch.setattr(assistant.profile, "measure_cpu_speed", lambda settings: REFERENCE_SPEED)
    return REFERENCE_SPEED


@pytest.fixture
def settings(tmp_path):
    # Half-duplex, as most of these tests are written for; test_barge_in.py turns barge-in on.
    return small_stream_settings(tmp_path, audio={"barge_in": False})


@pytest.fixture
def make_session(tmp_path):
    """A factory (settings, on_event) -> FakeSession; `made`: the sessions built; `options` tweaks them."""

    class Factory:
        def __init__(self) -> None:
            self.made: list[FakeSession] = []
            self.options: dict[str, Any] = {}

        def __call__(self, settings, on_event) -> FakeSession:
            o = self.options
            llm = FakeLLM(
                o.get("sentences", REPLY), o.get("llm_delay_s", 0.02), o.get("busy", False), o.get("gates")
            )
            tts = FakeTTS(o.get("seconds_per_word", 0.08), o.get("tts_busy_s", 0.0))
            session = FakeSession(
                settings,
                on_event,
                Stages(asr=FakeASR(), dialogue=llm, tts=tts, talking_head=None),
                tmp_path / "replies",
                load_delay_s=o.get("load_delay_s", 0.0),
                load_gate=o.get("load_gate"),
                faceless=o.get("faceless", set()),
            )
            self.made.append(session)
            return session

    return Factory()


class FakeListener:
    """Stands in for LiveListener: records start/stop/mute; `say()` sends an utterance from a thread."""

    instances: list[FakeListener] = []

    def __init__(self, settings, vad, bridge, is_speech, echo=None, barge_in_onset_ms=None) -> None:
        self.settings, self.vad, self.bridge, self.is_speech = settings, vad, bridge, is_speech
        self.echo, self.barge_in_onset_ms = echo, barge_in_onset_ms
        self.started = self.stopped = False
        self.muted_history: list[bool] = []
        self.on_stop: Callable[[], None] | None = None
        FakeListener.instances.append(self)

    @property
    def muted(self) -> bool:
        return bool(self.muted_history and self.muted_history[-1])

    def start(self) -> None:
        self.started = True

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stopped = True
        if self.on_stop is not None:
            self.on_stop()

    def set_muted(self, muted: bool) -> None:
        self.muted_history.append(muted)

    def say(self, seconds: float = 1.0) -> None:
        samples = np.zeros(int(16000 * seconds), np.float32)
        utterance = Utterance(samples, 16000, 0.0, seconds)

        def deliver() -> None:
            self.bridge.on_mic_level(-20.0)
            self.bridge.on_mic_utterance(utterance)

        threading.Thread(target=deliver).start()


@pytest.fixture
def fake_listener_factory():
    FakeListener.instances.clear()
    return FakeListener


# ---- recorders ----


class StreamLog:
    """What the live stream reported through the window's LiveAvatar, in order (connected after the window's
    own slots, so when one of these runs the window has already handled the event)."""

    def __init__(self, live) -> None:
        self.events: list[Any] = []
        self.on_event: Callable[[Any], None] | None = None  # a test's probe, run for each event as it comes
        live.speech_started.connect(self._record)
        live.speech_finished.connect(self._record)
        live.drained.connect(self._record)

    def _record(self, event: Any) -> None:
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def started(self, turn_id: int | None = None) -> list[tuple[int, int]]:
        return [
            e.key for e in self.events if isinstance(e, StreamSpeechStarted) and turn_id in (None, e.key[0])
        ]

    def finished(self, turn_id: int | None = None) -> list[StreamSpeechFinished]:
        return [e for e in self.events if isinstance(e, StreamSpeechFinished) and turn_id in (None, e.key[0])]

    def drained(self) -> int:
        return sum(isinstance(e, StreamDrained) for e in self.events)


class StateLog:
    """The states the window's TurnTaking controller showed, in order (its `state_changed` action, seen)."""

    def __init__(self, window) -> None:
        self.states: list[TurnState] = []
        self.texts: list[str] = []
        show = window.state_changed

        def state_changed(state: TurnState, text: str) -> None:
            self.states.append(state)
            self.texts.append(text)
            show(state, text)

        window.state_changed = state_changed  # the controller calls its host's action by name

    def distinct(self) -> list[TurnState]:
        """The states in order, a state repeated with another text counted once."""
        return [s for i, s in enumerate(self.states) if i == 0 or self.states[i - 1] is not s]


@pytest.fixture
def window(qtbot, settings, make_session, fake_listener_factory, tmp_path):
    """A MainWindow on fake models with the real live avatar; `window.stream_log` and `window.state_log`
    record what the stream and the turn-taking controller reported. Call `window.start()` in the test."""
    from ui.main_window import MainWindow

    win = MainWindow(
        settings,
        make_session,
        listener_factory=fake_listener_factory,
        player_factory=player_for_tests,
        user_config=tmp_path / "user-config.yaml",
    )
    win.sessions = make_session
    win.stream_log = StreamLog(win.live)
    win.state_log = StateLog(win)
    qtbot.addWidget(win)
    yield win
    win.close()
