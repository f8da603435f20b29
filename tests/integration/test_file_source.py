"""Audio files through the live path: real decoding (WAV/MP3/OGG/FLAC made by ffmpeg), real webrtcvad."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.io import load_audio
from assistant.audio.sources import file_events, segment_file
from assistant.audio.vad import SpeechStarted, VadSettings
from assistant.errors import AudioFormatError, AudioTooLongError
from assistant.events import Utterance

pytestmark = pytest.mark.integration

SETTINGS = VadSettings()


def ffmpeg(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), *args, str(dst)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return dst


def voiced_span_s(path: Path) -> float:
    samples = load_audio(path)
    loud = np.nonzero(np.abs(samples) > 0.01)[0]
    return float(loud[-1] - loud[0]) / 16000


@pytest.fixture(scope="module")
def encoded(spoken_question: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("encoded")
    # A second of silence first, so the pre-roll has something to keep (espeak starts speaking at once).
    padded = ffmpeg(spoken_question, out / "padded.wav", "-af", "adelay=1000")
    return {
        "wav 22050 Hz stereo": ffmpeg(padded, out / "q_stereo.wav", "-ac", "2", "-ar", "22050"),
        "mp3 44100 Hz": ffmpeg(padded, out / "q.mp3", "-ar", "44100", "-c:a", "libmp3lame", "-q:a", "4"),
        "ogg vorbis 48000 Hz stereo": ffmpeg(
            padded, out / "q.ogg", "-ac", "2", "-ar", "48000", "-c:a", "libvorbis"
        ),
        "flac 8000 Hz": ffmpeg(padded, out / "q.flac", "-ar", "8000"),
    }


@pytest.mark.parametrize(
    "kind", ["wav 22050 Hz stereo", "mp3 44100 Hz", "ogg vorbis 48000 Hz stereo", "flac 8000 Hz"]
)
def test_each_format_gives_one_utterance(encoded: dict[str, Path], spoken_question: Path, kind: str):
    path = encoded[kind]
    events = list(file_events(path, SETTINGS))
    assert [type(e) for e in events] == [SpeechStarted, Utterance]
    utt = events[1]
    assert utt.source == str(path) and utt.sample_rate_hz == 16000 and not utt.cut_at_max
    expected_s = voiced_span_s(spoken_question) + (SETTINGS.preroll_ms + SETTINGS.tail_ms) / 1000
    assert abs(utt.duration_s - expected_s) < 0.35, (utt.duration_s, expected_s)
    # The speech begins 1.0 s into the file; the utterance begins one pre-roll earlier.
    assert abs(utt.start_s - (1.0 - SETTINGS.preroll_ms / 1000)) < 0.1, utt.start_s


def test_speech_still_open_at_the_end_of_the_file_is_emitted(encoded: dict[str, Path], tmp_path: Path):
    cut = ffmpeg(encoded["wav 22050 Hz stereo"], tmp_path / "cut.wav", "-t", "2.0")  # ends mid-sentence
    (utt,) = segment_file(cut)
    assert utt.end_s == pytest.approx(2.0, abs=0.01)
    assert utt.duration_s > 0.9


def test_two_questions_give_two_utterances(spoken_question: Path, tmp_path: Path):
    twice = tmp_path / "twice.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(spoken_question),
            "-i",
            str(spoken_question),
            "-filter_complex",
            "[0]apad=pad_dur=1[a];[a][1]concat=n=2:v=0:a=1",
            str(twice),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    first, second = segment_file(twice)
    assert second.start_s - first.end_s > 0.5


def test_a_file_of_silence_gives_nothing(tmp_path: Path):
    silence = tmp_path / "silence.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "anullsrc=r=44100:cl=stereo",
            "-t",
            "3",
            str(silence),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert list(file_events(silence)) == []


@pytest.mark.parametrize(
    "name, content",
    [
        ("noise.wav", bytes(range(256)) * 64),
        ("text.mp3", b"this is not audio at all\n" * 100),
        ("empty.ogg", b""),
    ],
)
def test_a_corrupt_file_gives_audio_format_error(tmp_path: Path, name: str, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioFormatError, match=name):
        segment_file(path)


def test_a_missing_file_gives_file_not_found(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        file_events(tmp_path / "nope.wav")


def test_a_too_long_file_is_refused_before_any_work(encoded: dict[str, Path]):
    with pytest.raises(AudioTooLongError, match="limit"):
        file_events(encoded["mp3 44100 Hz"], max_duration_s=1.0)
