"""Fixtures for the desktop-app tests: fake stages driven by the real TurnRunner, a fake Session around it, a
recording playback backend, a fake microphone, and a real sample MP4/WAV made with ffmpeg once per run.

The fakes stand in for the models only; the pipeline, the bridge, the workers, the player queue and the window
are the real ones.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QObject, QTimer, Signal

from assistant.audio.io import write_wav
from assistant.cancel import CancelToken
from assistant.config import load_settings
from assistant.errors import NoFaceError, VideoOutOfMemoryError
from assistant.events import AvatarVideo, ReplySentence, SpeechAudio, Transcript, Utterance
from assistant.pipeline import Stages, TurnRunner
from assistant.profile import resolve
from tests.integration.conftest import spoken_question, virtual_mic  # noqa: F401 - fixtures for the Xvfb test

REPLY = ("The sky is blue.", "It scatters short wavelengths.", "That is all.")


@pytest.fixture(scope="session")
def sample_media(tmp_path_factory) -> dict[str, Path]:
    """A 0.4 s 160x120 H.264+AAC MP4 and a 0.3 s WAV, real files that VLC can play."""
    folder = tmp_path_factory.mktemp("media")
    mp4 = folder / "sample.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:sample_rate=16000",
            "-t",
            "0.4",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(mp4),
        ],
        check=True,
    )
    wav = write_wav(folder / "sample.wav", 0.2 * np.sin(np.linspace(0, 2 * np.pi * 132, 4800)), 16000)
    return {"mp4": mp4, "wav": wav}


# ---- fake stages (the interfaces of assistant.pipeline) ----


class FakeASR:
    name = "fake-asr"

    def __init__(self, text: str = "why is the sky blue") -> None:
        self.text = text

    def transcribe(self, utterance: Utterance) -> Transcript:
        return Transcript(self.text, "en", utterance.start_s, utterance.end_s, 0.01, "fake", 0.05)


class FakeLLM:
    name = "fake-llm"

    def __init__(self, sentences: tuple[str, ...] = REPLY, delay_s: float = 0.02, busy: bool = False) -> None:
        self.sentences, self.delay_s, self.busy = sentences, delay_s, busy

    def stream_reply(self, user_text: str, cancel: CancelToken):
        for i, text in enumerate(self.sentences):
            if self.busy:
                _burn_cpu(self.delay_s)
            elif cancel.wait(self.delay_s):
                return
            if cancel.cancelled:
                return
            yield ReplySentence(i, text, is_last=i == len(self.sentences) - 1)


class FakeTTS:
    name = "fake-tts"

    def __init__(self, wav: Path, busy_s: float = 0.0) -> None:
        self.wav, self.busy_s = wav, busy_s

    def synthesize(self, text: str, out_path: Path) -> SpeechAudio:
        _burn_cpu(self.busy_s)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.wav, out_path)
        return SpeechAudio(out_path, 16000, 0.3, "fake-tts", text)


class FakeHead:
    """Copies the sample MP4; raises VideoOutOfMemoryError on the call numbers in `oom_on` (0-based)."""

    name = "fake-head"

    def __init__(self, mp4: Path, oom_on: set[int] = frozenset(), busy_s: float = 0.0) -> None:
        self.mp4, self.oom_on, self.busy_s = mp4, set(oom_on), busy_s
        self.calls = 0

    def render(self, audio_path: Path, output_path: Path) -> AvatarVideo:
        call = self.calls
        self.calls += 1
        if call in self.oom_on:
            raise VideoOutOfMemoryError("CUDA out of memory (injected by the test)")
        _burn_cpu(self.busy_s)
        shutil.copy(self.mp4, output_path)
        return AvatarVideo(output_path, "light", 10, 25.0, 160, 120, 0.4, 0.01)


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


# ---- a fake Session: the real TurnRunner around fake stages ----


@dataclass
class FakeSession:
    settings: Any
    on_event: Any
    stages: Stages
    out_dir: Path
    log: list[str] = field(default_factory=list)
    reconfigured_with: list[Any] = field(default_factory=list)
    load_delay_s: float = 0.0
    faceless: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.runner = TurnRunner(self.stages, self.on_event, self.out_dir)
        self.resolved = resolve(self.settings, probe=lambda: None)

    def load(self, progress=None) -> None:
        for i, what in enumerate(("speech recognition", "language model", "voice", "talking head")):
            if progress:
                progress(what, i / 4)
            time.sleep(self.load_delay_s / 4)
        if progress:
            progress("done", 1.0)
        self.log.append("load")

    def run_turn(self, utterance=None, text=None, end_of_speech_at=None, hold=None):
        self.log.append("held turn" if hold is not None else "turn")
        return self.runner.run(utterance=utterance, text=text, end_of_speech_at=end_of_speech_at, hold=hold)

    def cancel_current(self, reason: str = "new user speech") -> bool:
        return self.runner.cancel_current(reason)

    def engines_summary(self) -> dict[str, str]:
        return {
            "asr": "fake whisper on CPU",
            "llm": "fake llm",
            "tts": "fake tts",
            "talking_head": f"light engine on CPU ({self.resolved.quality_mode})",
        }

    def reconfigure(self, settings, progress=None) -> list[str]:
        old = self.settings
        self.settings = settings
        self.resolved = resolve(settings, probe=lambda: None)
        self.reconfigured_with.append(settings)
        if progress:
            progress("talking head", 0.5)
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


@pytest.fixture
def settings():
    return load_settings()


@pytest.fixture
def make_session(tmp_path, sample_media):
    """A factory (settings, on_event) -> FakeSession; `made`: the sessions built; `options` tweaks them."""

    class Factory:
        def __init__(self) -> None:
            self.made: list[FakeSession] = []
            self.options: dict[str, Any] = {}

        def __call__(self, settings, on_event) -> FakeSession:
            o = self.options
            stages = Stages(
                asr=FakeASR(),
                dialogue=FakeLLM(o.get("sentences", REPLY), o.get("llm_delay_s", 0.02), o.get("busy", False)),
                tts=FakeTTS(sample_media["wav"], o.get("tts_busy_s", 0.0)),
                talking_head=FakeHead(sample_media["mp4"], o.get("oom_on", set()), o.get("head_busy_s", 0.0)),
            )
            session = FakeSession(
                settings,
                on_event,
                stages,
                tmp_path / "replies",
                load_delay_s=o.get("load_delay_s", 0.0),
                faceless=o.get("faceless", set()),
            )
            self.made.append(session)
            return session

    return Factory()


# ---- a playback backend that records what it was asked to play ----


class RecordingBackend(QObject):
    finished = Signal()
    failed = Signal(str)

    def __init__(self, play_ms: int = 30, fail_suffixes: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.play_ms, self.fail_suffixes = play_ms, fail_suffixes
        self.calls: list[tuple[Path, bool]] = []
        self.stops = 0
        self.released = False
        self._timer = QTimer(self, singleShot=True)
        self._timer.timeout.connect(self.finished.emit)

    def play(self, path: Path, has_video: bool) -> None:
        self.calls.append((Path(path), has_video))
        if Path(path).suffix in self.fail_suffixes:
            QTimer.singleShot(0, lambda: self.failed.emit(f"cannot play {path}"))
            return
        self._timer.start(self.play_ms)

    def stop(self) -> None:
        self.stops += 1
        self._timer.stop()

    def release(self) -> None:
        self.released = True
        self._timer.stop()


class FakeListener:
    """Stands in for LiveListener: records start/stop/mute; `say()` sends an utterance from a thread."""

    instances: list[FakeListener] = []

    def __init__(self, settings, vad, bridge, is_speech) -> None:
        self.settings, self.vad, self.bridge, self.is_speech = settings, vad, bridge, is_speech
        self.started = self.stopped = False
        self.muted_history: list[bool] = []
        FakeListener.instances.append(self)

    def start(self) -> None:
        self.started = True

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stopped = True

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


@pytest.fixture
def window(qtbot, settings, make_session, fake_listener_factory, tmp_path):
    """A started MainWindow on fakes; `window.backend` is the RecordingBackend."""
    from ui.main_window import MainWindow

    backends: list[RecordingBackend] = []

    def backend_factory(_widget):
        backends.append(RecordingBackend())
        return backends[-1]

    win = MainWindow(
        settings,
        make_session,
        backend_factory=backend_factory,
        listener_factory=fake_listener_factory,
        user_config=tmp_path / "user-config.yaml",
    )
    win.backend = backends[0]
    win.sessions = make_session
    qtbot.addWidget(win)
    yield win
    win.close()
