"""`assistant bench asr`: the guard rails of a faster reply (issue 12): word accuracy, false end-of-turn cut-offs
and speculative early starts, on a fixed set of spoken questions.

Each question in QUESTIONS is spoken by espeak-ng (en-us; en-gb+f3 for every other question) and by the bundled
Piper voice (its sampling noise off, so every run hears the same audio); those marked with "|" get `pause_ms` of
silence there (the two halves are spoken separately, the first ending in a comma so it keeps its continuation
rise). The audio is fed to the app's VAD segmenter (`VadSegmenter` with the config's VadSettings) in frame-sized
chunks, with 0.5 s of silence before and 1.5 s after, as a microphone delivers it but as fast as the CPU allows:
the segmenter counts pushed samples and reads no clock unless a chunk comes with a capture time, which is not
given here, so pacing changes nothing. Every utterance it cuts is recognised by Whisper with the app's settings
(`WhisperASR`, model from the profile), and:

- `wer`: word error rate of the joined transcripts of each question against its text, over all words (jiwer), after
  `normalise()`: lower case, common contractions expanded, numbers as words ("81" -> "eighty one"), punctuation and
  apostrophes dropped;
- `false_cutoffs`: questions cut into more than one utterance, or whose rest was discarded as too short after the
  first one (either way the end of the turn was declared inside the question);
- `early_starts`: SpeechPaused events (`early_start_ms` of silence) per question, and the wasted ones, after which
  speech resumed: the app threw a speculative turn away;
- ASR time per question (all its utterances; one warm-up transcription first, not counted), the audio length, RSS;
- `end_of_turn_delay_s`: from the end of the question's audio to the moment the segmenter emitted its last
  utterance, in stream time (the silence the user waits through before a reply may be heard), mean / median / max.

MID_THOUGHT adds questions with a 500-700 ms pause after an unfinished phrase ("... the capital of | France"): the
pauses a learned end of turn must not take for the end. `--end-of-turn smart_turn|silence|both` picks what ends a
turn (default: the config's `audio.end_of_turn`); `both` runs the two on the same spoken audio, one table each.

With `--twin NAME` the recogniser is the bundled tiny.en, and after each of its transcriptions the speed twin of
NAME (random weights, NAME's shape: assistant.twins.whisper; built in <models_dir>/twins/NAME if missing) decodes
the same utterance through the same WhisperASR path, teacher-forced to as many tokens as tiny.en's transcript
has: `twin.asr_s` is NAME's recognition time on this machine, to the extent that NAME would write as many tokens
(and would not fall back to a higher temperature). The twin's words are random, so it has no WER.

Needs espeak-ng, the bundled Whisper and Piper models (`make setup`), and jiwer.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from assistant.audio.smart_turn import end_of_turn_for
from assistant.audio.vad import (
    EndOfTurn,
    FrameClassifier,
    SegmenterEvent,
    SpeechDiscarded,
    SpeechPaused,
    SpeechResumed,
    VadSegmenter,
    VadSettings,
)
from assistant.bench.soak import rss_mb
from assistant.errors import AssistantError
from assistant.events import Utterance


@dataclass(frozen=True)
class Question:
    text: str  # what is said; "|" marks where `pause_ms` of silence goes
    pause_ms: int = 0

    @property
    def parts(self) -> list[str]:
        return [p.strip() for p in self.text.split("|")]

    @property
    def reference(self) -> str:
        return " ".join(self.parts)


QUESTIONS = (
    Question("What is the weather like | in Berlin today?", 400),
    Question("Set a timer for ten minutes."),
    Question("How many days are left until Christmas?"),
    Question("Can you remind me | to call my mother tomorrow?", 350),
    Question("What time is it in Tokyo right now?"),
    Question("Play some relaxing music | in the living room.", 450),
    Question("How do I make a cup of green tea?"),
    Question("Who wrote the novel Pride and Prejudice?"),
    Question("What is the capital of Australia?"),
    Question("Turn off the lights | in the kitchen please.", 300),
    Question("How far is it from London to Paris?"),
    Question("Tell me a joke about computers."),
    Question("What should I cook for dinner | if I have rice and eggs?", 400),
    Question("Is it going to rain this weekend?"),
    Question("Add milk and bread to my shopping list."),
    Question("How long should I boil an egg?"),
    Question("When does the next train | to the airport leave?", 450),
    Question("What is the tallest building in the world?"),
    Question("Translate good morning into Spanish."),
    Question("How many calories are in a banana?"),
    Question("Wake me up at seven in the morning."),
    Question("Why is the sky blue | during the day?", 300),
    Question("What is the square root of eighty one?"),
    Question("Read me the latest news headlines."),
    Question("How do you say thank you in French?"),
    Question("Call Sarah | and tell her I will be late.", 350),
)
# Longer pauses after a phrase that cannot end a sentence: a silence rule must wait them out, a learned end of turn
# should hear that the speaker is not done (issue 21).
MID_THOUGHT = (
    Question("I would like to know, um, the capital of | France.", 600),
    Question("Can you tell me how to get | to the train station?", 500),
    Question("What is the best way to | learn a new language?", 700),
    Question("I need a recipe for | chocolate chip cookies.", 550),
    Question("Please remind me to buy | some milk tonight.", 650),
)


@dataclass(frozen=True)
class Voice:
    name: str
    engine: str  # "espeak" or "piper"
    voice: str  # espeak-ng voice, or the Piper voice's registry name
    every: int = 1  # speaks every n-th question (from the first)


VOICES = (
    Voice("espeak-en-us", "espeak", "en-us"),
    Voice("espeak-en-gb-f3", "espeak", "en-gb+f3", every=2),
    Voice("piper-joe", "piper", "piper-joe"),  # the bundled Piper voice, en_US-joe-medium
)
ESPEAK_RATE_WPM = 165  # the app's espeak rate (TTSOptions), as `bench live` speaks its questions
LEAD_SILENCE_S = 0.5  # before the question: the segmenter's pre-roll fills as from a live microphone
TRAIL_SILENCE_S = 1.5  # after it, more than end_silence_ms, so the end of speech is seen without a flush
TRIM_DBFS = -55.0  # a 10 ms window quieter than this at the edges of a half is silence (kept the decaying tail)

# ---- text normalisation -------------------------------------------------------------------------------------

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()  # fmt: skip
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
            "twelve": "twelfth"}  # fmt: skip
_CONTRACTIONS = {
    "what's": "what is", "it's": "it is", "that's": "that is", "there's": "there is", "how's": "how is",
    "where's": "where is", "who's": "who is", "let's": "let us", "i'm": "i am", "i'll": "i will", "i'd": "i would",
    "i've": "i have", "you're": "you are", "we're": "we are", "they're": "they are", "don't": "do not",
    "doesn't": "does not", "didn't": "did not", "can't": "cannot", "won't": "will not", "isn't": "is not",
    "aren't": "are not",
}  # fmt: skip
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?(?:st|nd|rd|th)?")


def number_words(n: int) -> str:
    """A whole number 0..999,999,999 in words, without "and" ("one hundred twenty three")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((1_000_000, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return f"{number_words(n // size)} {name}" + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError("unreachable")


def _number_token(match: re.Match[str]) -> str:
    token = match.group(0)
    digits = token.rstrip("stndrh")
    if "." in digits:
        whole, frac = digits.split(".")
        return f" {number_words(int(whole))} point {' '.join(_ONES[int(d)] for d in frac)} "
    words = number_words(int(digits))
    if digits != token:  # an ordinal: 21st -> twenty first
        *head, last = words.split()
        last = _ORDINAL.get(last, last[:-1] + "ieth" if last.endswith("y") else last + "th")
        words = " ".join([*head, last])
    return f" {words} "


def normalise(text: str) -> str:
    """Text as WER compares it: lower case, contractions expanded, numbers as words, no punctuation."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"(\d),(\d{3})\b", r"\1\2", text)  # 1,000 -> 1000
    text = re.sub(r"(\d):00\b", r"\1", text)  # 7:00 -> 7
    text = text.replace("%", " percent ").replace("+", " plus ").replace(":", " ")
    text = _NUMBER_RE.sub(_number_token, text)
    words = [_CONTRACTIONS.get(w, w) for w in re.split(r"[\s\-/]+", text)]
    text = re.sub(r"[^a-z0-9\s]", "", " ".join(words))  # apostrophes too: "mother's" -> "mothers"
    return " ".join(text.split())


@dataclass(frozen=True)
class WordErrors:
    reference_words: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def wer(self) -> float:
        return (self.substitutions + self.deletions + self.insertions) / max(1, self.reference_words)


def word_errors(references: Sequence[str], hypotheses: Sequence[str]) -> WordErrors:
    """Word errors over all pairs, after normalise(); an empty hypothesis is all deletions."""
    import jiwer

    refs, hyps = [normalise(r) for r in references], [normalise(h) for h in hypotheses]
    if not refs or not all(refs):
        raise ValueError("every reference needs at least one word")
    out = jiwer.process_words(refs, hyps)
    n = sum(len(r.split()) for r in refs)
    return WordErrors(n, out.substitutions, out.deletions, out.insertions)


# ---- audio as a microphone delivers it ----------------------------------------------------------------------


def voiced_span(samples: np.ndarray, rate_hz: int, threshold_dbfs: float = TRIM_DBFS) -> tuple[int, int]:
    """Sample range from the first to the end of the last 10 ms window louder than `threshold_dbfs`."""
    win = rate_hz // 100
    n = len(samples) // win
    rms = np.sqrt(np.mean(np.square(samples[: n * win].reshape(n, win), dtype=np.float64), axis=1) + 1e-20)
    loud = np.flatnonzero(20 * np.log10(rms) > threshold_dbfs)
    return (int(loud[0] * win), int((loud[-1] + 1) * win)) if len(loud) else (0, 0)


def join_with_pause(parts: Sequence[np.ndarray], rate_hz: int, pause_ms: int) -> np.ndarray:
    """The parts with their silent edges trimmed, `pause_ms` of digital silence between them."""
    gap = np.zeros(rate_hz * pause_ms // 1000, np.float32)
    pieces: list[np.ndarray] = []
    for i, part in enumerate(parts):
        start, end = voiced_span(part, rate_hz)
        pieces += [gap] if i else []
        pieces.append(part[start:end].astype(np.float32))
    return np.concatenate(pieces)


@dataclass(frozen=True)
class Segmentation:
    """What the segmenter made of one question."""

    utterances: tuple[Utterance, ...]
    discarded: int  # starts it dropped as too short
    discarded_after_end: int  # ... of them after the first utterance: question words the turn left out
    early_starts: int  # SpeechPaused events
    early_starts_wasted: int  # ... followed by SpeechResumed: the speculative turn was thrown away
    emitted_s: tuple[float, ...] = ()  # stream time at which each utterance was emitted

    @property
    def false_cutoff(self) -> bool:
        """The turn ended inside the question: more speech followed the first utterance (kept or discarded)."""
        return len(self.utterances) > 1 or (len(self.utterances) == 1 and self.discarded_after_end > 0)


def tally(events: Iterable[SegmenterEvent], emitted_s: Sequence[float] = ()) -> Segmentation:
    """`emitted_s`: when each utterance among `events` was emitted, if known."""
    utterances: list[Utterance] = []
    discarded = discarded_after = paused = wasted = 0
    for event in events:
        if isinstance(event, SpeechPaused):
            paused += 1
        elif isinstance(event, SpeechResumed):
            wasted += 1
        elif isinstance(event, SpeechDiscarded):
            discarded += 1
            discarded_after += bool(utterances)
        elif isinstance(event, Utterance):
            utterances.append(event)
    return Segmentation(tuple(utterances), discarded, discarded_after, paused, wasted, tuple(emitted_s))


def segment(samples: np.ndarray, vad: VadSettings, is_speech: FrameClassifier | None = None,
            end_of_turn: EndOfTurn | None = None) -> Segmentation:  # fmt: skip
    """Feed `samples` (at vad.sample_rate_hz) framed by silence to a fresh segmenter, one frame per push;
    `end_of_turn`: the learned end of turn the segmenter asks at its pauses (None: silence decides)."""
    segmenter = VadSegmenter.from_settings(vad, is_speech=is_speech, end_of_turn_model=end_of_turn)
    rate, n = vad.sample_rate_hz, vad.frame_samples
    wait_ms = max(vad.silence_ms, vad.incomplete_silence_ms if end_of_turn else 0)
    trail_s = max(TRAIL_SILENCE_S, wait_ms / 1000 + 1.0)
    fed = np.concatenate([np.zeros(int(LEAD_SILENCE_S * rate), np.float32), samples,
                          np.zeros(int(trail_s * rate), np.float32)])  # fmt: skip
    events: list[SegmenterEvent] = []
    emitted_s: list[float] = []
    for i in range(0, len(fed) + n, n):
        # the last round flushes: only an end silence longer than the trail needs it
        new = segmenter.push(fed[i : i + n]) if i < len(fed) else segmenter.flush()
        emitted_s += [segmenter.position_s] * sum(isinstance(e, Utterance) for e in new)
        events += new
    return tally(events, emitted_s)


ALL_QUESTIONS = QUESTIONS + MID_THOUGHT
MID_THOUGHT_REFERENCES = frozenset(q.reference for q in MID_THOUGHT)

# ---- the benchmark ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionResult:
    question: str
    voice: str
    pause_ms: int
    audio_s: float  # the spoken question, without the silence around it
    utterances: int
    utterance_s: list[float]
    discarded: int
    false_cutoff: bool
    early_starts: int
    early_starts_wasted: int
    transcripts: list[str]  # one per utterance ("" for one Whisper dropped)
    dropped: list[str]  # Whisper's drop reasons
    reference_normalised: str
    hypothesis_normalised: str
    errors: WordErrors
    asr_s: float  # Whisper's time over all the question's utterances
    twin_asr_s: float | None = None  # the speed twin's, teacher-forced (`--twin`)
    # From the end of the question's audio to the emission of its last utterance (stream time); None: no utterance
    end_of_turn_delay_s: float | None = None
    wer: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "wer", round(self.errors.wer, 4))


def _piper_speaker(voice: str, models_dir: Path, rate_hz: int) -> Callable[[str], np.ndarray]:
    """Piper without its sampling noise (noise_scale and noise_w_scale 0): the same audio on every run, so WER and
    cut-offs compare between runs. With the voice's own noise (0.667, 0.8) a question's length varied by up to
    0.15 s between two runs, and Whisper heard one of the 26 questions differently."""
    from piper import PiperVoice, SynthesisConfig

    from assistant.audio.io import resample
    from assistant.tts.piper import resolve_voice

    onnx = resolve_voice(voice, models_dir)
    piper = PiperVoice.load(onnx, config_path=Path(f"{onnx}.json"), use_cuda=False)
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)

    def speak(text: str) -> np.ndarray:
        audio = np.concatenate([chunk.audio_float_array for chunk in piper.synthesize(text, config)])
        return resample(audio, piper.config.sample_rate, rate_hz)

    return speak


def _espeak_speaker(voice: str, rate_hz: int, wav: Path) -> Callable[[str], np.ndarray]:
    """The app's espeak-ng engine at its rate; espeak-ng says the same text the same way every time."""
    from assistant.audio.io import load_audio
    from assistant.tts.espeak import EspeakEngine

    engine = EspeakEngine(voice, ESPEAK_RATE_WPM)
    return lambda text: load_audio(engine.synthesize(text, wav).wav_path, rate_hz)


def speak_questions(questions: Sequence[Question], voices: Sequence[Voice], models_dir: Path, rate_hz: int,
                    work_dir: Path) -> list[tuple[Question, Voice, np.ndarray]]:  # fmt: skip
    """Each question in each voice that speaks it, as mono float32 at `rate_hz`."""
    out = []
    for voice in voices:
        if voice.engine == "piper":
            speak = _piper_speaker(voice.voice, models_dir, rate_hz)
        else:
            speak = _espeak_speaker(voice.voice, rate_hz, work_dir / f"{voice.name}.wav")
        for qi, q in enumerate(questions):
            if qi % voice.every:
                continue
            texts = [p + "," for p in q.parts[:-1]] + [q.parts[-1]]  # the comma keeps a mid-sentence rise
            out.append((q, voice, join_with_pause([speak(t) for t in texts], rate_hz, q.pause_ms)))
        del speak  # frees Piper's ONNX session before Whisper loads
    return out


def build_asr(settings, resolved) -> Any:
    """WhisperASR as the app's Session builds it: the profile's model (the bundled tiny.en until a configured one
    is downloaded) and the asr section's options. `resolved`: assistant.profile.resolve(settings)."""
    from assistant.asr import WhisperASR
    from assistant.errors import ModelError
    from assistant.models import locate
    from assistant.session import BUNDLED_ASR

    wanted, name = resolved.asr_model, resolved.asr_model
    try:
        path = Path(wanted).expanduser() if Path(wanted).expanduser().exists() else locate(wanted, settings.models_dir)
    except ModelError:
        path, name = locate(BUNDLED_ASR, settings.models_dir), BUNDLED_ASR
    asr = WhisperASR.from_settings(settings.asr, path, resolved.asr_device, name)
    asr.load()
    return asr


def build_twin_asr(settings, resolved, name: str) -> Any:
    """WhisperASR on the speed twin of registry model `name`, with the app's asr options; built if missing."""
    from assistant.asr import WhisperASR
    from assistant.twins.whisper import build_whisper_twin

    folder = Path(settings.models_dir) / "twins" / name
    if not (folder / "model.bin").is_file():
        build_whisper_twin(name, folder)
    asr = WhisperASR.from_settings(settings.asr, folder, resolved.asr_device, f"twin of {name}")
    asr.load()
    return asr


def _timed_twin(twin: Any, reference: Any, utterance: Utterance, transcript: Any) -> float:
    """The twin's time on `utterance`, forced to the token count of the reference model's `transcript`."""
    from assistant.twins.whisper import count_tokens, forced_decode_options

    tokens = count_tokens(reference.tokenizer(), transcript.text if transcript else "")
    options = forced_decode_options(twin.tokenizer(), tokens)
    started = time.monotonic()
    twin.transcribe(utterance, overrides=options)
    return time.monotonic() - started


def run_bench(settings, questions: Sequence[Question] = ALL_QUESTIONS, voices: Sequence[Voice] = VOICES,
              progress: Callable[[str], None] = lambda s: None, twin: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The report for the config's `audio.end_of_turn`."""
    return run_bench_modes(settings, [settings.audio.end_of_turn], questions, voices, progress, twin)[
        settings.audio.end_of_turn
    ]


def run_bench_modes(settings, modes: Sequence[str], questions: Sequence[Question] = ALL_QUESTIONS,
                    voices: Sequence[Voice] = VOICES, progress: Callable[[str], None] = lambda s: None,
                    twin: str | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
    """One report per end-of-turn mode ("smart_turn", "silence"), on the same spoken audio and recogniser."""
    vad = VadSettings.from_config(settings.audio)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-asr-") as tmp:
        spoken = speak_questions(questions, voices, settings.models_dir, vad.sample_rate_hz, Path(tmp))
    progress(f"{len(spoken)} spoken questions ready in {time.monotonic() - started:.0f} s")
    from assistant.profile import resolve

    # The profile's CUDA probe imports torch (~190 MB), as in the app: before the RSS baseline, so the growth
    # from it is Whisper's.
    resolved = resolve(settings, llm_gpu_probe=lambda: False)  # only the ASR choice is wanted here
    if twin is not None:
        from assistant.session import BUNDLED_ASR

        resolved = replace(resolved, asr_model=BUNDLED_ASR)  # the twin is forced to tiny.en's token counts
    rss_before = rss_mb()
    asr = build_asr(settings, resolved)
    twin_asr = None if twin is None else build_twin_asr(settings, resolved, twin)
    warm_up = Utterance(spoken[0][2], vad.sample_rate_hz, 0.0, len(spoken[0][2]) / vad.sample_rate_hz)
    for recogniser in (asr, twin_asr):
        if recogniser is not None:
            recogniser.transcribe(warm_up)
    reports = {}
    for mode in modes:
        mode_vad = replace(vad, end_of_turn=mode)
        model = end_of_turn_for(mode_vad, on_notice=progress)
        results = [
            _question_result(q, voice, samples, mode_vad, model, asr, twin_asr, progress)
            for q, voice, samples in spoken
        ]
        reports[mode] = {
            "settings": {
                "early_start_ms": vad.early_start_ms, "end_silence_ms": vad.silence_ms, "frame_ms": vad.frame_ms,
                "vad_aggressiveness": vad.aggressiveness, "asr_model": asr.name, "asr_device": asr.resolved_device,
                "asr_compute_type": asr.resolved_compute_type, "beam_size": asr.beam_size,
                "end_of_turn": mode if model is not None or mode == "silence" else "silence (no model)",
                "end_of_turn_threshold": vad.end_of_turn_threshold,
                "incomplete_silence_ms": vad.incomplete_silence_ms,
                "normalisation": "lower case, contractions expanded, numbers as words, punctuation and apostrophes "
                "dropped",
            },  # fmt: skip
            "overall": summarize(results),
            "with_pause": summarize([r for r in results if r.pause_ms]),
            "mid_thought": summarize([r for r in results if r.question in MID_THOUGHT_REFERENCES]),
            "voices": {v.name: summarize([r for r in results if r.voice == v.name]) for v in voices},
            "rss_mb": {"before_asr": round(rss_before, 1), "end": round(rss_mb(), 1),
                       "peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)},  # fmt: skip
            "elapsed_s": round(time.monotonic() - started, 1),
            "twin": None if twin_asr is None else _twin_summary(twin, twin_asr, results),
            "questions": [asdict(r) for r in results],
        }
    return reports


def _question_result(q: Question, voice: Voice, samples: np.ndarray, vad: VadSettings, model: EndOfTurn | None,
                     asr: Any, twin_asr: Any, progress: Callable[[str], None]) -> QuestionResult:  # fmt: skip
    """Segment one spoken question as the microphone would, recognise what it cut, score it."""
    seg = segment(samples, vad, end_of_turn=model)
    transcripts, dropped, asr_s, twin_s = [], [], 0.0, 0.0
    for utt in seg.utterances:
        t = time.monotonic()
        transcript = asr.transcribe(utt)
        asr_s += time.monotonic() - t
        if twin_asr is not None:
            twin_s += _timed_twin(twin_asr, asr, utt, transcript)
        transcripts.append(transcript.text if transcript else "")
        if transcript is None:
            dropped.append(asr.last_drop_reason or "")
    hypothesis = " ".join(transcripts)
    audio_s = len(samples) / vad.sample_rate_hz
    delay = seg.emitted_s[-1] - (LEAD_SILENCE_S + audio_s) if seg.emitted_s else None
    r = QuestionResult(
        question=q.reference, voice=voice.name, pause_ms=q.pause_ms, audio_s=round(audio_s, 3),
        utterances=len(seg.utterances), utterance_s=[round(u.duration_s, 3) for u in seg.utterances],
        discarded=seg.discarded, false_cutoff=seg.false_cutoff, early_starts=seg.early_starts,
        early_starts_wasted=seg.early_starts_wasted, transcripts=transcripts, dropped=dropped,
        reference_normalised=normalise(q.reference), hypothesis_normalised=normalise(hypothesis),
        errors=word_errors([q.reference], [hypothesis]), asr_s=round(asr_s, 3),
        twin_asr_s=None if twin_asr is None else round(twin_s, 3),
        end_of_turn_delay_s=None if delay is None else round(delay, 3),
    )  # fmt: skip
    progress(f"{vad.end_of_turn} {voice.name}: {q.reference!r} -> {transcripts} (WER {r.wer:.2f}, "
             f"{r.utterances} utterance(s), end of turn +{delay if delay is not None else float('nan'):.2f} s)")  # fmt: skip
    return r


def _twin_summary(name: str, twin: Any, results: Sequence[QuestionResult]) -> dict[str, Any]:
    times = [r.twin_asr_s for r in results if r.twin_asr_s is not None]
    return {"of": name, "folder": str(twin.source), "forced_to": "token counts of the bundled tiny.en's transcripts",
            "asr_s": {"median": round(statistics.median(times), 3), "max": round(max(times), 3)}}  # fmt: skip


def summarize(results: Sequence[QuestionResult]) -> dict[str, Any]:
    if not results:
        return {"questions": 0}
    errors = WordErrors(*(sum(getattr(r.errors, f) for r in results) for f in
                          ("reference_words", "substitutions", "deletions", "insertions")))  # fmt: skip
    fired = sum(r.early_starts for r in results)
    wasted = sum(r.early_starts_wasted for r in results)
    delays = [r.end_of_turn_delay_s for r in results if r.end_of_turn_delay_s is not None]

    def stat(values: list[float]) -> dict[str, float]:
        return {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}

    return {
        "questions": len(results),
        "wer": round(errors.wer, 4),
        "words": errors.reference_words,
        "substitutions": errors.substitutions, "deletions": errors.deletions, "insertions": errors.insertions,
        "false_cutoffs": sum(r.false_cutoff for r in results),
        "missed": sum(r.utterances == 0 for r in results),  # no utterance at all
        "discarded": sum(r.discarded for r in results),
        "early_starts": {"fired": fired, "wasted": wasted, "per_question": round(fired / len(results), 2),
                         "wasted_per_question": round(wasted / len(results), 2)},  # fmt: skip
        "asr_s": stat([r.asr_s for r in results]),
        "audio_s": stat([r.audio_s for r in results]),
        "end_of_turn_delay_s": {**stat(delays), "mean": round(statistics.fmean(delays), 3)} if delays else None,
    }  # fmt: skip


def format_text(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        (f"{s['asr_model']} on {s['asr_device']} ({s['asr_compute_type']}, beam {s['beam_size']}); VAD end silence "
         f"{s['end_silence_ms']} ms, early start {s['early_start_ms']} ms; end of turn: {_end_of_turn_text(s)}"),
        ("| set | questions | WER % | false cut-offs | early starts (wasted) | end of turn s mean / max "
         "| ASR s median / max | audio s median |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    groups = [("all", report["overall"]), ("with a pause", report["with_pause"]),
              ("mid-thought pause", report.get("mid_thought", {"questions": 0})), *report["voices"].items()]  # fmt: skip
    for name, g in groups:
        if not g["questions"]:
            continue
        es, eot = g["early_starts"], g.get("end_of_turn_delay_s")
        delay = f"{eot['mean']:.2f} / {eot['max']:.2f}" if eot else "-"
        lines.append(f"| {name} | {g['questions']} | {100 * g['wer']:.1f} | {g['false_cutoffs']} | {es['fired']} "
                     f"({es['wasted']}) | {delay} | {g['asr_s']['median']:.2f} / {g['asr_s']['max']:.2f} | "
                     f"{g['audio_s']['median']:.2f} |")  # fmt: skip
    if report.get("twin"):
        t = report["twin"]
        lines.append(f"twin of {t['of']} (random weights, forced to tiny.en's token counts; no WER): ASR s median / "
                     f"max {t['asr_s']['median']:.2f} / {t['asr_s']['max']:.2f}")  # fmt: skip
    rss = report["rss_mb"]
    lines.append(f"RSS {rss['before_asr']:.0f} MB before Whisper (questions spoken, Piper closed, torch in), "
                 f"{rss['end']:.0f} MB at the end, peak {rss['peak']:.0f} MB")
    return "\n".join(lines)


def _end_of_turn_text(s: dict[str, Any]) -> str:
    if s.get("end_of_turn") != "smart_turn":
        return s.get("end_of_turn", "silence")
    return (f"smart_turn (finished at p >= {s['end_of_turn_threshold']}, else {s['incomplete_silence_ms']} ms of "
            "silence)")  # fmt: skip


def register(bsub: argparse._SubParsersAction) -> None:
    parser = bsub.add_parser(
        "asr", help="guard rails: word error rate, false end-of-turn cut-offs and early starts on spoken questions"
    )
    parser.add_argument("--early-start-ms", type=int, default=None, help="override audio.early_start_ms (0 = off)")
    parser.add_argument("--end-silence-ms", type=int, default=None, help="override audio.end_silence_ms")
    parser.add_argument("--end-of-turn", choices=("smart_turn", "silence", "both"), default=None,
                        help="what ends a turn (default: audio.end_of_turn); both: one table each, same audio")
    parser.add_argument("--threshold", type=float, default=None, help="override audio.end_of_turn_threshold")
    parser.add_argument("--incomplete-silence-ms", type=int, default=None,
                        help="override audio.incomplete_silence_ms")
    parser.add_argument("--json", action="store_true", help="print one JSON object (with every transcript)")
    parser.add_argument("--twin", metavar="NAME", help="also time the speed twin of model NAME (e.g. whisper-small.en), "
                        "teacher-forced to the bundled tiny.en's token counts")  # fmt: skip
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from assistant.config import load_settings

    settings = load_settings(args.config)
    try:
        if args.early_start_ms is not None:
            settings.audio.early_start_ms = args.early_start_ms
        if args.end_silence_ms is not None:
            settings.audio.end_silence_ms = args.end_silence_ms
        if args.threshold is not None:
            settings.audio.end_of_turn_threshold = args.threshold
        if args.incomplete_silence_ms is not None:
            settings.audio.incomplete_silence_ms = args.incomplete_silence_ms
    except ValueError as e:  # pydantic validates the assignment against the config's limits
        raise AssistantError(f"bad benchmark setting: {e}") from e
    wanted = args.end_of_turn or settings.audio.end_of_turn
    modes = ["silence", "smart_turn"] if wanted == "both" else [wanted]
    reports = run_bench_modes(settings, modes, progress=lambda s: print(s, file=sys.stderr), twin=args.twin)
    if args.json:
        print(json.dumps(reports if len(reports) > 1 else reports[wanted], indent=2))
    else:
        print("\n\n".join(format_text(r) for r in reports.values()))
    return 0
