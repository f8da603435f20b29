"""LiveListener with an echo stage: the VAD hears the stage's output, the recogniser its `for_asr`.

The echo canceller is outside this unit (tests/unit/test_echo.py runs the real one): `HalvingEcho` returns each
chunk at half level for the VAD and hands the chunk untouched to the recogniser, so where each reached is plain.
"""

from __future__ import annotations

import numpy as np
import pytest

from assistant.audio.capture import rms_dbfs
from assistant.audio.vad import VadSettings
from tests.unit.test_capture_errors import MIC, FakeBackend, Recorder, open_streams, speech, wait_until


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


class HalvingEcho:
    far_active = False

    def __init__(self) -> None:
        self.for_asr = np.zeros(0, np.int16)
        self.chunks = 0

    def process(self, chunk: np.ndarray, captured_at: float) -> np.ndarray:
        self.chunks += 1
        self.for_asr = chunk.copy()
        return (chunk // 2).astype(np.int16)

    def is_speech(self, frame: np.ndarray) -> bool:
        return bool(np.abs(frame.astype(np.int32)).mean() > 2000)  # 3000 after halving: speech


def test_the_utterance_is_cut_from_what_the_recogniser_should_hear(rec):
    echo = HalvingEcho()
    backend = FakeBackend([MIC])
    listener = rec.listener(backend, vad=VadSettings(), echo=echo, is_speech=None)
    listener.start()
    try:
        stream = open_streams(backend, 1)
        stream.feed(speech())  # 6000 while voiced
        wait_until(lambda: rec.utterances, "an utterance")
    finally:
        listener.stop()
    (utt,) = rec.utterances
    assert echo.chunks > 0
    voiced = utt.samples[np.abs(utt.samples) > 0]
    assert len(voiced) and np.allclose(voiced, 6000 / 32768)  # the recogniser's signal, not the halved one
    assert max(rec.levels) == pytest.approx(rms_dbfs(np.full(480, 3000)))  # the meter reads the VAD's signal
