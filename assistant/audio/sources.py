"""Audio files as a speech source: a recorded file takes exactly the path a live microphone takes.

The file is decoded to mono at the VAD rate (any WAV/MP3/FLAC/OGG, any rate and channel count, through
`assistant.audio.io.load_audio`), converted to int16 like the microphone's frames, cut into VAD frames and
pushed into the same `VadSegmenter`; at the end of the file the segmenter is flushed, so an utterance still
open there is emitted. Utterances carry the file path as their `source`.

Needs what io.py needs (soundfile, soxr) and webrtcvad; with `end_of_turn: smart_turn` settings, the Smart Turn
model (assistant.audio.smart_turn), as the microphone does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from assistant.audio.io import load_audio
from assistant.audio.smart_turn import end_of_turn_for
from assistant.audio.vad import FrameClassifier, SegmenterEvent, VadSegmenter, VadSettings, to_int16
from assistant.events import Utterance


def feed_samples(segmenter: VadSegmenter, samples: np.ndarray) -> Iterator[SegmenterEvent]:
    """Push already-decoded mono samples (at the segmenter's rate) one frame at a time, then flush."""
    pcm = to_int16(samples)  # the same int16 the microphone delivers
    step = segmenter.settings.frame_samples
    for i in range(0, len(pcm), step):
        yield from segmenter.push(pcm[i : i + step])
    yield from segmenter.flush()


def file_events(
    path: str | Path,
    settings: VadSettings | None = None,
    *,
    max_duration_s: float | None = None,
    is_speech: FrameClassifier | None = None,
) -> Iterator[SegmenterEvent]:
    """Every event a live microphone would have produced had it heard the file: SpeechStarted, Utterance,
    SpeechDiscarded. Times are seconds from the start of the file.

    Raises FileNotFoundError for a missing file, AudioFormatError for one that does not decode,
    AudioTooLongError past `max_duration_s` (all before the first event is yielded).
    """
    settings = settings or VadSettings()
    samples = load_audio(path, settings.sample_rate_hz, max_duration_s=max_duration_s)  # (n,) float32
    segmenter = VadSegmenter.from_settings(
        settings, source=str(path), is_speech=is_speech, end_of_turn_model=end_of_turn_for(settings)
    )
    return feed_samples(segmenter, samples)


def segment_file(
    path: str | Path,
    settings: VadSettings | None = None,
    *,
    max_duration_s: float | None = None,
    is_speech: FrameClassifier | None = None,
) -> list[Utterance]:
    """The utterances in an audio file, in order."""
    events = file_events(path, settings, max_duration_s=max_duration_s, is_speech=is_speech)
    return [e for e in events if isinstance(e, Utterance)]
