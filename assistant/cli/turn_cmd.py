"""`assistant ask "TEXT"` and `assistant listen AUDIO_FILE`: one whole turn, headless, from the command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import AudioError
from assistant.events import Notice, ReplySentenceReady, StageFailed, TranscriptReady, TurnEvent, Utterance
from assistant.inputs import InputError, check_audio_file, text_arg

LISTEN_MAX_S = 300.0  # a recorded question longer than 5 minutes is refused, not silently cut


def register(sub: argparse._SubParsersAction) -> None:
    ask = sub.add_parser("ask", help="one turn from typed text: reply text, speech and video")
    ask.add_argument("text", type=text_arg, help="what you would say to the assistant")
    _common(ask)
    ask.set_defaults(func=_ask)
    listen = sub.add_parser("listen", help="one turn from a recorded question (WAV/MP3/FLAC/OGG)")
    listen.add_argument("audio", type=Path, help="audio file with the spoken question")
    _common(listen)
    listen.set_defaults(func=_listen)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="folder for the reply's audio and video (default: user data dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-video", action="store_true", help="audio only (talking head off)")


def _session(args: argparse.Namespace, quiet: bool):
    from assistant.config import load_settings
    from assistant.session import Session

    settings = load_settings(args.config)
    if args.no_video:
        settings.talking_head.enabled = False

    failures: list[tuple[str, str]] = []  # (stage, message): told even with --json (on stderr)

    def on_event(event: TurnEvent) -> None:
        if isinstance(event, StageFailed) and (event.stage, event.message) not in failures:
            failures.append((event.stage, event.message))
        if quiet:
            return
        if isinstance(event, TranscriptReady):
            print(f"you: {event.transcript.text}", file=sys.stderr)
        elif isinstance(event, ReplySentenceReady):
            print(f"assistant: {event.sentence.text}", file=sys.stderr)
        elif isinstance(event, (StageFailed, Notice)):
            print(f"note: {getattr(event, 'message', '')}", file=sys.stderr)

    out_dir = args.out.resolve() / "segments" if args.out else None
    return Session(settings, on_event, out_dir=out_dir), failures


def _utterance_from_file(path: Path, settings) -> Utterance:
    """The question in a recorded file, through the same VAD path as the microphone."""
    from assistant.audio.sources import segment_file
    from assistant.audio.vad import VadSettings

    utterances = segment_file(path, VadSettings.from_config(settings.audio), max_duration_s=LISTEN_MAX_S)
    if not utterances:
        raise AudioError(f"No speech found in {path}: record the question again, closer to the microphone")
    if len(utterances) == 1:
        return utterances[0]
    # Pauses inside one recorded question split it; the question is all of it.
    samples = np.concatenate([u.samples for u in utterances])
    return Utterance(samples, utterances[0].sample_rate_hz, utterances[0].start_s, utterances[-1].end_s,
                     source=str(path))  # fmt: skip


def reply_paths(out_dir: Path, now: float | None = None) -> tuple[Path, Path]:
    """A fresh (wav, mp4) pair for one reply in `out_dir`, named after the local time: `reply-20250101-120000`,
    then `-2`, `-3`, ... when that name is taken, so a later reply never overwrites an earlier one."""
    stem = "reply-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    n = 1
    while True:
        name = stem if n == 1 else f"{stem}-{n}"
        wav, mp4 = out_dir / f"{name}.wav", out_dir / f"{name}.mp4"
        if not wav.exists() and not mp4.exists():
            return wav, mp4
        n += 1


def _run(args: argparse.Namespace, text: str | None, audio: Path | None) -> int:
    from assistant.video import concat_segments

    t_start = time.monotonic()
    session, failures = _session(args, quiet=args.json)
    if text is not None and not text.strip():
        raise InputError('Nothing to ask: the question is empty; type some words, e.g. assistant ask "Hello?"')
    if audio is not None:
        check_audio_file(audio, LISTEN_MAX_S)  # its own message for a folder, FIFO, no permission, a cut WAV
    utterance = _utterance_from_file(audio, session.settings) if audio else None
    session.load()
    load_s = time.monotonic() - t_start
    try:
        result = session.run_turn(utterance=utterance, text=text)
    finally:
        engines = session.engines_summary()
        notices = list(getattr(session, "notices", []))  # every substitution still in effect, with its reason
        session.close()
    if result.dropped:
        raise AudioError(f"{audio} holds no recognisable speech: nothing was sent to the assistant")
    out_dir = args.out.resolve() if args.out else session.out_dir
    audio_path = video_path = None
    if result.segments:
        wav_out, mp4_out = reply_paths(out_dir)
        audio_path, video_path = concat_segments(
            [s.speech.wav_path for s in result.segments],
            [s.video.mp4_path if s.video else None for s in result.segments],
            wav_out,
            mp4_out,
        )
    timings = {k: round(v, 3) for k, v in result.timings_s.items()}
    timings["load_models"] = round(load_s, 3)
    out: dict[str, Any] = {
        "transcript": result.transcript,
        "reply": result.reply,
        "audio_path": str(audio_path) if audio_path else None,
        "video_path": str(video_path) if video_path else None,
        "engines": {**result.engines, "summary": engines},
        "notices": notices,
        "timings_s": timings,
        "segments": len(result.segments),
        "cancelled": result.cancelled,
        "errors": [message for _, message in failures],
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(result.reply)
        print(f"audio: {out['audio_path']}\nvideo: {out['video_path']}", file=sys.stderr)
    unspoken = [message for stage, message in failures if stage == "tts"]
    if not result.segments or unspoken:  # audio missing a sentence is not the reply: no success
        why = "; ".join(unspoken or [m for _, m in failures]) or "no speech was made"
        print(f"error: the reply was not {'fully ' if result.segments else ''}spoken: {why}", file=sys.stderr)
        return 1
    return 0


def _ask(args: argparse.Namespace) -> int:
    return _run(args, args.text, None)


def _listen(args: argparse.Namespace) -> int:
    return _run(args, None, args.audio)

