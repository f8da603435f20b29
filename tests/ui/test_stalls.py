"""The GUI thread never blocks during a turn: a 10 ms QTimer records the gaps of the event loop while a whole
turn runs (loading, recognition, a reply streamed over three sentences, speech, video, playback), with stages
that keep their threads busy in Python (holding the GIL in slices, like real model glue code).
"""

from __future__ import annotations

import time

import pytest
from PySide6.QtCore import QTimer

from tests.ui.conftest import REPLY

pytestmark = pytest.mark.ui

TICK_MS = 10
MAX_STALL_MS = 100


class StallMeter:
    def __init__(self) -> None:
        self.gaps_ms: list[float] = []
        self._last = time.perf_counter()
        self.timer = QTimer(interval=TICK_MS)
        self.timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps_ms.append((now - self._last) * 1000)
        self._last = now


def test_event_loop_never_stalls_over_100_ms_during_a_turn(
    qtbot, window, make_session, fake_listener_factory
):
    make_session.options.update(
        busy=True, llm_delay_s=0.25, tts_busy_s=0.15, head_busy_s=0.25, load_delay_s=0.3
    )
    window.show()
    window.start()
    qtbot.waitUntil(lambda: window.ready, timeout=10_000)
    meter = StallMeter()
    meter.start()
    listener = fake_listener_factory.instances[-1]
    with qtbot.waitSignal(window.bridge.turn_done, timeout=20_000):
        listener.say()
    qtbot.waitUntil(
        lambda: len(window.backend.calls) == len(REPLY) and not window.player.busy, timeout=20_000
    )
    meter.stop()
    assert len(meter.gaps_ms) > 50  # the meter really ran through the turn
    worst = max(meter.gaps_ms)
    print(f"event-loop gaps: {len(meter.gaps_ms)} ticks, worst {worst:.1f} ms")
    assert worst < MAX_STALL_MS, f"the GUI thread stalled for {worst:.0f} ms (limit {MAX_STALL_MS} ms)"
