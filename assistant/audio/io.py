"""Read any common audio file (WAV/MP3/FLAC/OGG, any rate, any channel count) as 16 kHz mono float32, and write WAVs.

Needs libsndfile (bundled with the soundfile wheel, which decodes MP3 too) and soxr for resampling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from assistant.errors import AudioFormatError, AudioTooLongError

SUPPORTED_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus")


def load_audio(
    path: str | Path, sample_rate_hz: int = 16000, max_duration_s: float | None = None
) -> np.ndarray:
    """Decode `path` to mono float32 in [-1, 1] at `sample_rate_hz`.

    Raises FileNotFoundError for a missing file, AudioFormatError (a ValueError) for a file that does not
    decode, AudioTooLongError (a ValueError) when it is longer than `max_duration_s`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Audio file not found: {path}")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioFormatError(
            f"Cannot decode audio file {path}: {e}. Use WAV, MP3, FLAC or OGG "
            f"(convert with: ffmpeg -i '{path}' out.wav)"
        ) from e
    if max_duration_s is not None and info.duration > max_duration_s:
        raise AudioTooLongError(
            f"Audio file {path} lasts {info.duration:.1f} s, over the limit of {max_duration_s:.0f} s; "
            "split it or shorten it"
        )
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioFormatError(f"Cannot decode audio file {path}: {e}") from e
    if data.shape[0] == 0:
        raise AudioFormatError(f"Audio file {path} holds no samples")
    mono = data.mean(axis=1)  # (n,) float32
    return resample(mono, rate, sample_rate_hz)


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Resample mono float32 audio; a no-op when the rates match."""
    if from_hz == to_hz:
        return np.ascontiguousarray(samples, dtype=np.float32)
    return soxr.resample(samples.astype(np.float32), from_hz, to_hz).astype(np.float32)


def audio_duration_s(path: str | Path) -> float:
    """Duration of an audio file in seconds, without decoding it all."""
    try:
        return float(sf.info(str(path)).duration)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioFormatError(f"Cannot read audio file {path}: {e}") from e


def write_wav(path: str | Path, samples: np.ndarray, sample_rate_hz: int) -> Path:
    """Write mono float32 samples as 16-bit PCM WAV, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(samples, -1.0, 1.0), sample_rate_hz, subtype="PCM_16")
    return path
