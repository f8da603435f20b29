"""Integration fixtures: `spoken_question` (an espeak-ng WAV) and `virtual_mic`, the benchmarks' private PulseAudio
(`assistant.bench.rig.start_pulse`: its `mic` sink's monitor is the default input, its `speaker` the default output).

While the session fixture is up, this test process's PortAudio is pointed at it (`assistant.bench.rig.use_pulse`),
so PortAudio's ALSA `default` and `pulse` devices record whatever `virtual_mic.play(wav)` plays. Other test folders reuse it with
`from tests.integration.conftest import virtual_mic  # noqa: F401` in their conftest.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.bench.rig import MissingToolError, PulseRig, start_pulse, use_pulse


@pytest.fixture(scope="session")
def virtual_mic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseRig]:
    try:
        rig = start_pulse(tmp_path_factory.mktemp("pulse"))
    except MissingToolError as e:
        pytest.fail(f"The virtual microphone needs PulseAudio: {e}", pytrace=False)
    with rig, use_pulse(rig):
        yield rig


QUESTION = "What is the capital of France?"


@pytest.fixture(scope="session")
def spoken_question(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """espeak-ng's en-us voice saying QUESTION: a 22050 Hz mono WAV of about 1.9 s. (Its default voice says it so
    that Whisper tiny.en with the fitted encoder window, asr.window_pad_s, hears "capital on France".)"""
    path = tmp_path_factory.mktemp("speech") / "question.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), QUESTION], check=True, capture_output=True, timeout=60)
    return path
