"""The live encoder, for real: one ffmpeg encodes the stream once into a player's MPEG-TS pipe and a session
recording (MP4) at the same time; the recording holds every frame and the speech exactly where the clock put it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.io import load_audio
from assistant.bench import measure
from assistant.config import PROJECT_ROOT
from assistant.live import LiveStream, RigRenderer, StreamSettings
from assistant.video import LiveEncoder, extract_audio, probe

pytestmark = pytest.mark.integration

AVATAR = PROJECT_ROOT / "assets" / "avatars" / "astronaut.png"
W, H, FPS, RATE = 320, 180, 25, 48000


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_pipe_and_recording_from_one_encode(tmp_path: Path):
    record = tmp_path / "session.mp4"
    encoder = LiveEncoder([("mpegts", None), ("mp4", record)], W, H, FPS, RATE)
    received = bytearray()

    def drain() -> None:  # a player reading the pipe
        assert encoder.read_fd is not None
        while chunk := os.read(encoder.read_fd, 65536):
            received.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stream = LiveStream(RigRenderer(AVATAR, W, H), StreamSettings(W, H, FPS, RATE))
    stream.add_sink(encoder)
    def ticks(n: int) -> None:  # at the frame rate, as the stream's clock does: a live encoder drops frames
        for _ in range(n):       # (with their audio) when fed faster than it can encode, by design
            stream.tick()
            time.sleep(1 / FPS)

    ticks(25)  # 1 s idle
    stream.say(tone(1.0), RATE, key="a")
    ticks(50)  # 1 s of speech, 1 s idle
    stream.stop()  # closes the encoder: the MP4 gets its index
    reader.join(10)
    assert encoder.frames_written == 75 and encoder.frames_dropped == 0 and encoder.failed is None
    assert received[:1] == b"\x47" and len(received) > 10_000  # MPEG-TS packets reached the player's pipe
    info = probe(record)
    assert info.has_video and info.has_audio and info.frames == 75
    assert abs(info.video_duration_s - 3.0) < 0.05 and abs(info.audio_duration_s - 3.0) < 0.1
    audio = load_audio(extract_audio(record, tmp_path / "a.wav", RATE), RATE)
    (sound,) = measure.sound_onsets(audio, RATE)
    assert abs(sound.start_s - 1.0) < 0.03 and abs(sound.end_s - 2.0) < 0.03  # where the clock put it
    frames = measure.video_file_analysis(record)
    assert frames.black_frames() == 0 and frames.max_frozen_s() < 0.5
