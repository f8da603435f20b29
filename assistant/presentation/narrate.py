"""A slide's sound: each narration sentence synthesized on its own (so its place in the sound is known exactly),
joined with short pauses, padded to whole video frames, and cut into pieces no longer than one lip-sync call takes.

Needs a TTS engine (anything with `synthesize(text, wav_path) -> SpeechAudio`, e.g. `build_tts`'s chain), numpy and
soundfile.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf

from assistant.audio.io import resample
from assistant.events import SpeechAudio
from assistant.presentation.timing import SentenceSpan, plan_cuts


class Speaker(Protocol):
    def synthesize(self, text: str, out_path: Path) -> SpeechAudio: ...


@dataclass(frozen=True)
class NarrationTiming:
    """How a slide's sound is laid out."""

    pause_s: float = 0.35  # between two sentences
    lead_s: float = 0.4  # silence before the first sentence (the slide settles before the voice starts)
    tail_s: float = 0.7  # after the last
    silent_s: float = 4.0  # a slide with nothing to say lasts this long
    max_segment_s: float = 300.0  # the lip-sync limit per call


@dataclass(frozen=True)
class SlideSound:
    """The sound of one slide: the whole WAV, its pieces for lip sync, and where each sentence is."""

    wav_path: Path
    piece_paths: tuple[Path, ...]  # one WAV per lip-sync call, in order; their lengths are whole frames
    spans: tuple[SentenceSpan, ...]
    duration_s: float  # whole frames
    sample_rate_hz: int
    engine: str  # the TTS engine that spoke ("none" for a silent slide)


def synthesize_slide(
    sentences: tuple[str, ...] | list[str],
    out_dir: Path,
    speaker: Speaker | None,
    fps: float,
    timing: NarrationTiming = NarrationTiming(),
    on_sentence: Callable[[int, int], None] | None = None,
) -> SlideSound:
    """Speak `sentences` into `out_dir` (narration.wav, piece-NN.wav, sentence-NN.wav). A slide without sentences gets
    `timing.silent_s` of silence. `on_sentence(done, total)` reports progress."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rate = 22050
    parts: list[np.ndarray] = []
    spans: list[SentenceSpan] = []
    engine = "none"
    if sentences:
        if speaker is None:
            raise ValueError("sentences to speak but no speaker")
        clips = []
        for i, text in enumerate(sentences):
            speech = speaker.synthesize(text, out_dir / f"sentence-{i:02d}.wav")
            data, sr = sf.read(str(speech.wav_path), dtype="float32", always_2d=True)
            clips.append((text, data.mean(axis=1), sr))
            engine = speech.engine
            if on_sentence is not None:
                on_sentence(i + 1, len(sentences))
        rate = clips[0][2]
        t = 0.0
        parts.append(np.zeros(round(timing.lead_s * rate), np.float32))
        t += len(parts[-1]) / rate
        for i, (text, mono, sr) in enumerate(clips):
            if sr != rate:
                mono = resample(mono, sr, rate)
            if i:
                parts.append(np.zeros(round(timing.pause_s * rate), np.float32))
                t += len(parts[-1]) / rate
            spans.append(SentenceSpan(text, round(t, 4), round(t + len(mono) / rate, 4)))
            parts.append(mono.astype(np.float32))
            t += len(mono) / rate
        parts.append(np.zeros(round(timing.tail_s * rate), np.float32))
    else:
        parts.append(np.zeros(round(timing.silent_s * rate), np.float32))
    sound = np.concatenate(parts)
    # Whole frames: each piece's video then lasts exactly as long as its sound and the pieces join without drift.
    frames = math.ceil(len(sound) / rate * fps - 1e-6)
    samples = round(frames * rate / fps)
    sound = np.pad(sound, (0, max(0, samples - len(sound))))[:samples]
    duration_s = samples / rate
    wav_path = out_dir / "narration.wav"
    sf.write(str(wav_path), sound, rate, subtype="PCM_16")

    cuts = plan_cuts(list(spans), duration_s, timing.max_segment_s, fps)
    bounds = [0.0, *cuts, duration_s]
    pieces = []
    for k in range(len(bounds) - 1):
        a, b = round(bounds[k] * rate), round(bounds[k + 1] * rate)
        piece = out_dir / f"piece-{k:02d}.wav"
        sf.write(str(piece), sound[a:b], rate, subtype="PCM_16")
        pieces.append(piece)
    return SlideSound(wav_path, tuple(pieces), tuple(spans), duration_s, rate, engine)
