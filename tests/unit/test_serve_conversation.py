"""One browser's session with fake engines: a typed question is answered on its own live stream, Stop cuts the
reply, bad messages are refused saying why, and closing ends the stream. The engines are outside the unit: a fake
recogniser, the real DialogueManager over a fake llama, a fake voice writing a tone, a fake renderer."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from assistant.audio.vad import VadSettings
from assistant.dialogue import DialogueManager
from assistant.events import SpeechAudio
from assistant.live.build import LiveSetup
from assistant.live.renderer import RenderRate
from assistant.live.stream import StreamSettings
from assistant.serve.conversation import BrowserSession, MessageError
from assistant.serve.turn_queue import SharedModels
from tests.unit.test_dialogue_history import SYSTEM, FakeLLM, tokens_of


class Renderer:
    name = "fake"
    width, height = 32, 24

    def render(self, pose: Any, opening: float, wide: float) -> np.ndarray:
        return np.full((self.height, self.width, 3), int(opening * 255), np.uint8)


class Voice:
    name = "tone"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def synthesize(self, text: str, out_path: Path) -> SpeechAudio:
        rate = 16000
        t = np.arange(int(self.seconds * rate)) / rate
        out_path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out_path, 0.5 * np.sin(2 * np.pi * 220 * t), rate)
        return SpeechAudio(out_path, rate, self.seconds, "tone", text)


class Sink:
    def __init__(self) -> None:
        self.loud_frames = 0
        self.frames = 0
        self.closed = threading.Event()

    def write(self, yuv: np.ndarray, audio: np.ndarray) -> None:
        self.frames += 1
        self.loud_frames += int(np.abs(audio).max() > 1000)

    def close(self) -> None:
        self.closed.set()


def session(tmp_path: Path, reply: str, seconds: float) -> tuple[BrowserSession, list[dict], Sink]:
    models = SharedModels(
        asr=object(),
        dialogue=DialogueManager("x.gguf", SYSTEM, llm=FakeLLM(tokens_of(reply))),
        tts=Voice(seconds),
    )
    setup = LiveSetup(StreamSettings(32, 24, 25.0, 48000), Renderer(), "light", RenderRate(5, 1.0, 1.0))  # type: ignore[arg-type]
    sent: list[dict] = []
    s = BrowserSession("abc", models, setup, VadSettings(), tmp_path, sent.append, max_message_chars=100)
    sink = Sink()
    s.start(sink)
    return s, sent, sink


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def states(sent: list[dict]) -> list[str]:
    return [m["state"] for m in sent if m["type"] == "state"]


def test_a_typed_question_is_answered_on_the_sessions_own_stream(tmp_path: Path) -> None:
    s, sent, sink = session(tmp_path, "Paris is the capital.", 0.4)
    try:
        s.handle_message('{"type": "ask", "text": "What is the capital of France?"}')
        wait_for(lambda: "speaking" in states(sent) and states(sent)[-1] == "listening")
        assert [m["text"] for m in sent if m["type"] == "reply"] == ["Paris is the capital."]
        assert any(m["type"] == "turn_done" and not m["cancelled"] for m in sent)
        assert 8 <= sink.loud_frames <= 12  # 0.4 s of tone at 25 fps, said once
        assert s.turns_run == 1 and s.idle_s() < 5
        assert list(s.speech_dir.glob("turn-*/*.wav")), (
            "the turn's speech was written under the session's folder"
        )
    finally:
        s.close("test over")
    assert sink.closed.is_set()
    assert not s.speech_dir.exists(), "a closed session leaves no speech files behind"


def test_stop_cuts_the_reply_and_the_session_listens_again(tmp_path: Path) -> None:
    s, sent, sink = session(tmp_path, "A very long answer.", 5.0)
    try:
        s.handle_message('{"type": "ask", "text": "Tell me a story."}')
        wait_for(lambda: "speaking" in states(sent))
        s.handle_message('{"type": "stop"}')
        wait_for(lambda: states(sent)[-1] == "listening")
        loud = sink.loud_frames
        time.sleep(0.3)
        assert sink.loud_frames - loud <= 1, "the avatar went on speaking after Stop"
        assert loud < 5.0 * 25 / 2
    finally:
        s.close("test over")


@pytest.mark.parametrize(
    ("raw", "why"),
    [("{oops", "not JSON"), ("[1]", "JSON object"), ('{"type": "dance"}', "unknown message type"),
     ('{"type": "ask", "text": ""}', "non-empty"), ('{"type": "ask", "text": "' + "x" * 150 + '"}', "too long"),
     ("x" * 1000, "too long")],
)  # fmt: skip
def test_bad_messages_are_refused_saying_why_and_the_session_goes_on(
    tmp_path: Path, raw: str, why: str
) -> None:
    s, sent, _ = session(tmp_path, "Yes.", 0.2)
    try:
        with pytest.raises(MessageError, match=why):
            s.handle_message(raw)
        s.handle_message('{"type": "ask", "text": "Still there?"}')
        wait_for(lambda: any(m["type"] == "turn_done" for m in sent))
    finally:
        s.close("test over")


def test_pings_keep_the_page_alive_but_not_the_session_busy(tmp_path: Path) -> None:
    s, _, _ = session(tmp_path, "Yes.", 0.2)
    try:
        s.last_activity -= 100
        s.handle_message('{"type": "ping"}')
        assert s.idle_s() >= 100 and s.page_silent_s() < 1
    finally:
        s.close("test over")
