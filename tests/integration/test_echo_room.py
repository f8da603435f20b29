"""Barge-in in the virtual room (real PulseAudio loopback echo + noise, real LiveStream, real AEC3, real VAD,
real TurnTaking, real Whisper): the avatar's own voice never interrupts it, the user's voice does, and the
question asked over it is transcribed. Thresholds are the issue's, loosened only for one run."""

from __future__ import annotations

import shutil

import pytest

from assistant.bench.echo import run_echo

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (shutil.which("pulseaudio") and shutil.which("espeak-ng")), reason="needs PulseAudio"),
]


@pytest.mark.parametrize("delay_ms", [100])
def test_barge_in_in_the_virtual_room(tmp_path, delay_ms: float) -> None:
    # the user speaks with the bundled Piper voice: espeak-ng's formant voice is at the edge of what Whisper tiny.en
    # hears even without the room ("How tall is my life, O tower?"), which made this check a coin toss
    report = run_echo(2, delay_ms, -6.0, "aec3", tmp_path, progress=lambda m: None, user_voice="piper-joe")
    summary = report.summary()
    assert summary["false_barge_ins"] == 0  # the avatar's own voice, echoed by the room, never interrupts
    assert summary["erle_db"] is not None and summary["erle_db"] >= 15.0
    assert summary["barge_in_detected"] == 1.0  # the user's voice stops the reply ...
    # ... long before the 17 s reply would end (a stall of a loaded machine holds barge-in for up to 0.6 s more;
    # the latency itself is a benchmark figure, `bench echo`)
    assert summary["barge_in_latency_ms"]["max"] is not None and summary["barge_in_latency_ms"]["max"] < 1500
    # ... and the question asked over it is heard, every key word: its first ~300 ms overlap the avatar's voice until
    # the reply stops, where AEC3's suppressor took weak consonants ("How tall" -> "I'll call"); the recogniser
    # hears the linear canceller's output instead (assistant/audio/speex.py)
    for run in (r for r in summary["runs"] if r["interrupted"]):
        assert all(k in run["transcript"].lower() for k in run["keys"]), (run["question"], run["transcript"])
