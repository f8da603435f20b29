"""Integration fixtures: `spoken_question` (an espeak-ng WAV) and `virtual_mic`, a private PulseAudio daemon whose null-sink monitor is the default input.

While the session fixture is up, PULSE_SERVER (and PULSE_CLIENTCONFIG) point this test process at it, so
PortAudio's ALSA `default` and `pulse` devices record whatever `virtual_mic.play(wav)` plays; sounddevice is
re-initialised on the way in and out so its cached device list matches. Other test folders reuse it with
`from tests.integration.conftest import virtual_mic  # noqa: F401` in their conftest.py.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.pulse import (
    INSTALL_HINT,
    PulseServer,
    missing_binaries,
    reinit_portaudio,
    start_pulse,
    stop_pulse,
)


@pytest.fixture(scope="session")
def virtual_mic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseServer]:
    missing = missing_binaries()
    if missing:
        pytest.fail(f"The virtual microphone needs {', '.join(missing)}: {INSTALL_HINT}", pytrace=False)
    server = start_pulse(tmp_path_factory.mktemp("pulse"))
    saved = {key: os.environ.get(key) for key in server.client_env()}
    os.environ.update(server.client_env())
    try:
        reinit_portaudio()
        yield server
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop_pulse(server)
        reinit_portaudio()


QUESTION = "What is the capital of France?"


@pytest.fixture(scope="session")
def spoken_question(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """espeak-ng's en-us voice saying QUESTION: a 22050 Hz mono WAV of about 1.9 s. (Its default voice says it so
    that Whisper tiny.en with the fitted encoder window, asr.window_pad_s, hears "capital on France".)"""
    path = tmp_path_factory.mktemp("speech") / "question.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), QUESTION], check=True, capture_output=True, timeout=60)
    return path
