"""The bridge: every core event becomes its own signal, and slots run on the GUI thread even when the event
was posted from a worker thread.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QObject, QThread

from assistant.events import (
    AvatarVideo,
    Notice,
    ReplySentence,
    ReplySentenceReady,
    SegmentReady,
    SpeechAudio,
    SpeechReady,
    StageFailed,
    Transcript,
    TranscriptReady,
    TurnDone,
    Utterance,
    UtteranceCaptured,
    VideoReady,
)
from ui.bridge import EventBridge

pytestmark = pytest.mark.ui


def all_events() -> dict[str, object]:
    t = time.monotonic()
    speech = SpeechAudio(Path("a.wav"), 16000, 1.0, "piper", "hi")
    video = AvatarVideo(Path("a.mp4"), "light", 25, 25.0, 64, 64, 1.0, 0.1)
    utterance = Utterance(np.zeros(160, np.float32), 16000, 0.0, 0.01)
    return {
        "utterance_captured": UtteranceCaptured(1, t, utterance),
        "transcript_ready": TranscriptReady(1, t, Transcript("hi", "en", 0, 1, 0.0, "tiny", 0.1)),
        "reply_sentence_ready": ReplySentenceReady(1, t, ReplySentence(0, "Hello."), 0.2),
        "speech_ready": SpeechReady(1, t, 0, speech),
        "video_ready": VideoReady(1, t, 0, video),
        "segment_ready": SegmentReady(1, t, 0, speech, None, "out of memory"),
        "stage_failed": StageFailed(1, t, "tts", "voice broke"),
        "notice": Notice(1, t, "fell back", "warning"),
        "turn_done": TurnDone(1, t, "hi", "Hello.", 1, False, {"total": 1.0}, {"tts": "piper"}),
    }


def test_each_event_type_has_its_own_signal(qtbot):
    bridge = EventBridge()
    events = all_events()
    received: dict[str, object] = {}
    for name in events:
        getattr(bridge, name).connect(lambda e, name=name: received.setdefault(name, e))
    for event in events.values():
        bridge.post(event)
    assert received == events


def test_events_from_a_worker_thread_reach_slots_on_the_gui_thread(qtbot):
    bridge = EventBridge()
    gui_thread = QThread.currentThread()

    class Receiver(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.threads: list[bool] = []

        def _on_turn_done(self, _event) -> None:
            self.threads.append(QThread.currentThread() is gui_thread)

        def _on_mic_level(self, _dbfs) -> None:
            self.threads.append(QThread.currentThread() is gui_thread)

    receiver = Receiver()
    bridge.turn_done.connect(receiver._on_turn_done)
    bridge.mic_level.connect(receiver._on_mic_level)
    event = all_events()["turn_done"]
    worker = threading.Thread(target=lambda: (bridge.post(event), bridge.on_mic_level(-30.0)))
    worker.start()
    worker.join()
    assert receiver.threads == []  # queued: nothing ran on the worker thread
    qtbot.waitUntil(lambda: len(receiver.threads) == 2, timeout=2_000)
    assert receiver.threads == [True, True]
