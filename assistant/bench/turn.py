"""`assistant bench turn`: whole conversation turns from recorded questions through the real pipeline, headless.

Each question (spoken by espeak-ng into a WAV) is fed to the VAD segmenter at real-time pace, exactly as a microphone
would deliver it, followed by silence. The end of speech is the moment the last voiced sample was fed; from there the
benchmark times end-of-speech detection, ASR, the language model's first sentence, the first audio, the first video
segment, and TTFF (time to first frame): end of speech -> the first segment ready to show with its audio. It also
reports real-time factors and peak RSS (VRAM on CUDA), and two COMPUTED figures that no player measured: how late
a segment would be if segments played back to back at their nominal durations (`segment_late_ms`), and the A/V
offset read from each segment's stream metadata (`av_offset_metadata_ms`).
Needs espeak-ng (questions), ffmpeg and the bundled models.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.audio.io import load_audio
from assistant.errors import AssistantError
from assistant.events import SegmentReady, TurnEvent, Utterance

QUESTIONS = (
    "What is the capital of France?",
    "How far away is the moon?",
    "What color is the sky?",
    "Tell me a fun fact about cats.",
    "What is the tallest mountain on Earth?",
)
TRAILING_SILENCE_S = 1.5  # fed after each question so the VAD can see the end of speech
VOICED_DBFS = -45.0  # a 10 ms window louder than this is speech, for finding where speech really ends


@dataclass
class TurnMeasurement:
    question: str
    transcript: str
    reply: str
    speech_s: float
    eos_detect_s: float  # end of speech -> utterance released by the VAD (end of speech confirmed)
    early_start_s: float | None  # end of speech -> speculative start at the pause (None: early start off)
    asr_s: float
    llm_first_sentence_s: float
    tts_first_audio_s: float
    talking_head_first_segment_s: float
    ttff_s: float  # end of speech -> first segment (video + its audio) ready
    segments: int
    segment_late_ms_max: float  # computed from ready times and nominal durations, not measured at a player
    av_offset_metadata_ms_max: float  # from ffprobe stream start times and durations, not from the picture
    asr_rtf: float
    tts_rtf: float
    talking_head_rtf: float
    engines: dict[str, str] = field(default_factory=dict)


def speak_question(text: str, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True, capture_output=True)
    return path


def last_voiced_s(samples: np.ndarray, rate: int) -> float:
    """Where speech really ends in a clean recording: the end of the last 10 ms window above VOICED_DBFS."""
    win = rate // 100
    n = len(samples) // win
    rms = np.sqrt(np.mean(samples[: n * win].reshape(n, win) ** 2, axis=1) + 1e-12)
    voiced = np.nonzero(20 * np.log10(rms) > VOICED_DBFS)[0]
    return float((voiced[-1] + 1) * win / rate) if len(voiced) else 0.0


@dataclass
class FedTurn:
    """What feeding one question produced: the turn's result and when things happened (time.monotonic)."""

    result: Any
    eos_at: float  # the last voiced sample was "recorded"
    confirmed_at: float  # the VAD released the utterance (end of speech confirmed)
    early_start_at: float | None  # the VAD saw a pause and the turn started early (None: early start off)
    speech_s: float


class _BenchTurns:
    """`TurnTaking`'s actions for the benchmark: each turn runs on a thread of its own; nothing is played."""

    def __init__(self, session) -> None:
        self.session = session
        self.results: list[Any] = []
        self.worker: threading.Thread | None = None
        self.early_at: float | None = None  # when the last speculative turn started
        self.jobs = 0

    def submit_turn(self, utterance=None, text=None, end_of_speech_at=None, hold=None) -> int:
        if hold is not None:
            self.early_at = time.monotonic()

        def run() -> None:
            turn = self.session.run_turn(
                utterance=utterance, text=text, end_of_speech_at=end_of_speech_at, hold=hold
            )
            self.results.append(turn)

        self.worker = threading.Thread(target=run, name="bench-turn", daemon=True)
        self.worker.start()
        self.jobs += 1
        return self.jobs

    def cancel_turn(self, reason: str) -> None:
        self.session.cancel_current(reason)

    def speak(self, segment: SegmentReady) -> None:
        pass  # segments are timed from the session's events; nothing plays them

    def stop_speech(self, reason: str) -> None:
        pass

    def set_listening(self, listening: bool) -> None:
        pass  # the recording is fed whole: there is no microphone to close

    def state_changed(self, state, text: str) -> None:
        pass


def feed_and_answer(session, segmenter, samples: np.ndarray, rate: int, frame_ms: int) -> FedTurn | None:
    """Push `samples` frame by frame on the wall clock, as a microphone would, and answer them the way the app
    does, through the app's own `TurnTaking`: a speculative turn at the pause (SpeechPaused), released when
    the end of speech is confirmed, discarded if speech resumes."""
    from assistant.audio.vad import SpeechDiscarded, SpeechPaused, SpeechResumed, SpeechStarted
    from assistant.turn_taking import TurnState, TurnTaking

    frame = rate * frame_ms // 1000
    speech_end = last_voiced_s(samples, rate)
    padded = np.concatenate([samples, np.zeros(int(TRAILING_SILENCE_S * rate), np.float32)])
    turns = _BenchTurns(session)
    taking = TurnTaking(turns, loaded=True)

    t0 = time.monotonic()
    eos_at = t0 + speech_end
    events = []
    for i in range(0, len(padded) - frame + 1, frame):
        due = t0 + (i + frame) / rate  # a frame is available once its last sample has been "recorded"
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        events = segmenter.push(padded[i : i + frame])
        for event in events:
            if isinstance(event, SpeechStarted):
                taking.speech_started()
            elif isinstance(event, SpeechDiscarded):
                taking.speech_discarded()
            elif isinstance(event, SpeechPaused):
                taking.speech_paused(event.utterance, eos_at)
            elif isinstance(event, SpeechResumed) and taking.state is TurnState.EARLY_START:
                taking.speech_resumed()  # discards the speculative turn: it cancels itself
                assert turns.worker is not None
                turns.worker.join()
                turns.results.clear()
                turns.worker, turns.early_at = None, None
            elif isinstance(event, Utterance):
                confirmed_at = time.monotonic()
                taking.utterance_ended(event, eos_at)  # releases the speculative turn, or starts one
                assert turns.worker is not None
                turns.worker.join()
                return FedTurn(turns.results[-1], eos_at, confirmed_at, turns.early_at, event.duration_s)
    return None


def segment_late_ms(segments: list[SegmentReady]) -> float:
    """How late the latest segment would be, computed (no player involved): segments played back to back at their
    nominal durations from the moment the first one is ready; a segment ready after the one before it would have
    ended is late by the difference."""
    gap_s = 0.0
    playing_until: float | None = None
    for seg in sorted(segments, key=lambda s: s.index):
        if playing_until is None:
            start = seg.at_s
        else:
            gap_s = max(gap_s, seg.at_s - playing_until)
            start = max(seg.at_s, playing_until)
        playing_until = start + (seg.video.duration_s if seg.video else seg.speech.duration_s)
    return gap_s * 1000.0


def av_offset_metadata_ms(segments: list[SegmentReady]) -> float:
    """Largest start or duration difference between a segment's video and audio streams, as ffprobe reports them
    (stream metadata, not a measurement of what is seen and heard)."""
    from assistant.video import probe

    worst = 0.0
    for seg in segments:
        if seg.video is None:
            continue
        info = probe(seg.video.mp4_path)
        worst = max(worst, abs(info.video_start_s - info.audio_start_s) * 1000.0,
                    abs(info.video_duration_s - info.audio_duration_s) * 1000.0)  # fmt: skip
    return worst


def run_bench(runs: int, settings, work_dir: Path, progress=print) -> dict[str, Any]:
    from assistant.audio.vad import VadSegmenter, VadSettings
    from assistant.session import Session

    delivered: list[tuple[float, TurnEvent]] = []  # (when the listener got it, event)
    session = Session(settings, lambda e: delivered.append((time.monotonic(), e)), out_dir=work_dir / "replies")
    t = time.monotonic()
    session.load()
    load_s = time.monotonic() - t
    vad_settings = VadSettings.from_config(settings.audio)
    measurements: list[TurnMeasurement] = []
    for i in range(runs):
        question = QUESTIONS[i % len(QUESTIONS)]
        wav = speak_question(question, work_dir / f"q{i}.wav")
        samples = load_audio(wav, vad_settings.sample_rate_hz)
        session.reset_conversation()  # every run answers a fresh question, as the first turn would
        segmenter = VadSegmenter.from_settings(vad_settings)
        delivered.clear()
        fed = feed_and_answer(session, segmenter, samples, vad_settings.sample_rate_hz, vad_settings.frame_ms)
        if fed is None:
            raise AssistantError(f"the VAD found no speech in the benchmark question {question!r}")
        result, eos_at = fed.result, fed.eos_at
        segs = [e for _, e in delivered if isinstance(e, SegmentReady)]
        if not segs:
            raise AssistantError(f"turn {i + 1} produced no reply segment ({result.transcript!r})")
        # When the listener got each segment: a speculative turn's segments wait for the confirmed end of speech.
        first_ready = min(at for at, e in delivered if isinstance(e, SegmentReady))
        tm = result.timings_s
        speech_total = sum(s.speech.duration_s for s in segs)
        video_total = sum(s.video.duration_s for s in segs if s.video)
        m = TurnMeasurement(
            question=question, transcript=result.transcript, reply=result.reply,
            speech_s=fed.speech_s, eos_detect_s=fed.confirmed_at - eos_at,
            early_start_s=(fed.early_start_at - eos_at) if fed.early_start_at else None, asr_s=tm.get("asr", 0.0),
            llm_first_sentence_s=tm.get("llm_first_sentence", 0.0), tts_first_audio_s=tm.get("tts_first_audio", 0.0),
            talking_head_first_segment_s=tm.get("talking_head_first_segment", 0.0), ttff_s=first_ready - eos_at,
            segments=len(segs), segment_late_ms_max=segment_late_ms(segs),
            av_offset_metadata_ms_max=av_offset_metadata_ms(segs), asr_rtf=tm.get("asr", 0.0) / max(fed.speech_s, 1e-6),
            tts_rtf=tm.get("tts_total", 0.0) / max(speech_total, 1e-6),
            talking_head_rtf=tm.get("talking_head_total", 0.0) / max(video_total, 1e-6) if video_total else 0.0,
            engines=dict(result.engines),
        )  # fmt: skip
        measurements.append(m)
        progress(f"run {i + 1}/{runs}: TTFF {m.ttff_s:.2f} s  ({question!r} -> {result.reply[:60]!r})")
    summary = summarize(measurements)
    summary["load_models_s"] = round(load_s, 2)
    summary["engines"] = session.engines_summary()
    summary["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    summary["peak_vram_mb"] = _peak_vram_mb()
    session.close()
    return summary


def _peak_vram_mb() -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


STAGES = (
    ("early_start_s", "early start (pause seen, reply work begins)"),
    ("eos_detect_s", "end-of-speech confirmed"),
    ("asr_s", "ASR"),
    ("llm_first_sentence_s", "LLM first sentence"),
    ("tts_first_audio_s", "TTS first audio"),
    ("talking_head_first_segment_s", "talking head first segment (render + encode)"),
    ("ttff_s", "TTFF (end of speech -> first frame with audio)"),
)


def summarize(ms: list[TurnMeasurement]) -> dict[str, Any]:
    def stat(key: str) -> dict[str, float | None]:
        values = [v for v in (getattr(m, key) for m in ms) if v is not None]
        if not values:
            return {"median": None, "max": None}
        return {"median": round(statistics.median(values), 3), "max": round(max(values), 3)}

    return {
        "runs": len(ms),
        "ttff_s": stat("ttff_s"),
        "stages_s": {key.removesuffix("_s"): stat(key)["median"] for key, _ in STAGES if key != "ttff_s"},
        "stages_max_s": {key.removesuffix("_s"): stat(key)["max"] for key, _ in STAGES if key != "ttff_s"},
        "realtime_factors": {k: stat(k)["median"] for k in ("asr_rtf", "tts_rtf", "talking_head_rtf")},
        "segment_late_ms": {"max": round(max(m.segment_late_ms_max for m in ms), 1)},
        "av_offset_metadata_ms": {"max": round(max(m.av_offset_metadata_ms_max for m in ms), 1)},
        "turns": [asdict(m) for m in ms],
    }


def format_table(summary: dict[str, Any]) -> str:
    lines = ["| stage | median s | max s |", "|---|---|---|"]
    for key, label in STAGES:
        k = key.removesuffix("_s")
        if key == "ttff_s":
            med, worst = summary["ttff_s"]["median"], summary["ttff_s"]["max"]
        else:
            med, worst = summary["stages_s"][k], summary["stages_max_s"][k]
        if med is None:
            lines.append(f"| {label} | off | off |")
        else:
            lines.append(f"| {label} | {med:.2f} | {worst:.2f} |")
    rtf = summary["realtime_factors"]
    lines += [
        "",
        f"runs {summary['runs']}; engines: {summary['engines']}",
        f"real-time factors (work s / audio s): ASR {rtf['asr_rtf']:.2f}, TTS {rtf['tts_rtf']:.2f}, "
        f"talking head {rtf['talking_head_rtf']:.2f}",
        f"computed, not measured: segment late max {summary['segment_late_ms']['max']:.0f} ms, "
        f"A/V offset from stream metadata max {summary['av_offset_metadata_ms']['max']:.0f} ms;"
        f" peak RSS {summary['peak_rss_mb']:.0f} MB; VRAM {summary['peak_vram_mb']}; model load {summary['load_models_s']} s",
    ]
    return "\n".join(lines)


def register(bsub: argparse._SubParsersAction) -> None:
    parser = bsub.add_parser("turn", help="end-to-end turns from recorded questions: TTFF and every stage")
    parser.add_argument("--runs", type=int, default=5, help="number of turns (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import sys

    from assistant.config import load_settings

    if args.runs < 1:
        raise AssistantError("--runs must be at least 1")
    settings = load_settings(args.config)
    with tempfile.TemporaryDirectory(prefix="bench-turn-") as tmp:
        summary = run_bench(args.runs, settings, Path(tmp), progress=lambda s: print(s, file=sys.stderr))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_table(summary))
    return 0

