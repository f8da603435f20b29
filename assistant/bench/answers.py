"""`assistant bench answers`: how often the assistant hears a spoken question right and answers it right, with
whatever models are installed (the bundled SmolLM2-135M and Whisper tiny.en until better ones are downloaded).

The questions (data/answers.yaml: facts, everyday help, arithmetic, follow-ups that need the previous turn, one
request to decline) are spoken by each voice (`--voices`: espeak-ng en-us and the bundled Piper voice by default,
synthesised by `assistant.bench.asr.speak_questions`) and each recording goes through the app's own turn path
headless, as `assistant bench turn` does it (`feed_and_answer`): the VAD segmenter fed at real-time pace, the
app's `TurnTaking` (early start included), then the Session's ASR, dialogue (with its history) and TTS. The pace is
real time because the timing below is read off the wall clock against the moment speech ended, and a speculative
turn works while the end-of-speech silence is still being fed. The Session runs as the desktop app's (live=True):
the live stream would animate the speech, so no talking-head video is rendered per reply. The conversation
history is reset before every question except a follow-up, which keeps the turn before it.

Per question and voice, and summed per voice and overall:
- `heard_exactly`: the transcript equals the question after `assistant.bench.asr.normalise` (lower case,
  contractions expanded, numbers as words, no punctuation); `wer` over all words (jiwer);
- `answer_right`: one of the question's accepted answers appears in the reply as whole words, both normalised the
  same way (so "56" and "fifty-six" are one answer; "eight" does not match "eighteen");
- `first_audio_computed_s`: COMPUTED from the pipeline's event times, not measured at a speaker: the end of the
  question's speech (its last voiced sample as fed) -> the reply's first audio (SpeechReady) delivered to the
  app's listener (a speculative turn's audio waits for the confirmed end of speech, as in the app).
Models used: `Session.engines_summary()`.

Needs espeak-ng and the bundled Piper voice for the default voices, and the models the config names.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from assistant.bench.asr import (
    LEAD_SILENCE_S,
    VOICES,
    Question,
    Voice,
    normalise,
    number_words,
    speak_questions,
    word_errors,
)
from assistant.bench.turn import feed_and_answer
from assistant.errors import AssistantError
from assistant.events import SpeechReady, TurnEvent

DATA_PATH = Path(__file__).parent / "data" / "answers.yaml"
DEFAULT_VOICES = ("espeak-en-us", "piper-joe")
KINDS = ("fact", "help", "arithmetic", "decline")


# ---- the questions ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerQuestion:
    text: str
    accept: tuple[str, ...]  # alternatives, lower case; any one of them in the reply is a right answer
    kind: str  # one of KINDS; "decline": accept lists refusal words
    follow_up: bool = False  # keeps the previous turn in the history (the question needs it)


def load_questions(path: Path = DATA_PATH) -> tuple[AnswerQuestion, ...]:
    """The questions of `path`, checked: a follow-up never comes first, every accepted answer is lower case."""
    try:
        items = yaml.safe_load(path.read_text(encoding="utf-8"))["questions"]
        questions = tuple(
            AnswerQuestion(
                item["text"], tuple(item["accept"]), item["kind"], bool(item.get("follow_up", False))
            )
            for item in items
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise AssistantError(f"cannot read the benchmark questions {path}: {e}") from e
    for i, q in enumerate(questions):
        problem = (
            "a follow-up needs a question before it" if q.follow_up and i == 0
            else f"kind {q.kind!r} is not one of {', '.join(KINDS)}" if q.kind not in KINDS
            else "no accepted answer" if not q.accept
            else "accepted answers must be lower case" if any(a != a.lower() for a in q.accept)
            else "'|' is not allowed (it marks a pause in bench asr)" if "|" in q.text
            else None
        )  # fmt: skip
        if problem:
            raise AssistantError(f"{path}: question {i + 1} ({q.text!r}): {problem}")
    return questions


def first_questions(questions: Sequence[AnswerQuestion], limit: int | None) -> list[AnswerQuestion]:
    """The first `limit` questions (all for None). Follow-ups come after their lead, so a prefix keeps it."""
    if limit is None:
        return list(questions)
    if limit < 1:
        raise AssistantError("--limit must be at least 1")
    return list(questions[:limit])


# ---- scoring ------------------------------------------------------------------------------------------------


def heard_exactly(question: str, transcript: str) -> bool:
    """The transcript says the question word for word, after normalise() (case, punctuation, digits as words)."""
    return normalise(transcript) == normalise(question)


_UNITS = {number_words(n): n for n in range(20)}  # zero .. nineteen
_TENS = {number_words(n): n for n in range(20, 100, 10)}  # twenty .. ninety
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}


def _number_value(words: Sequence[str]) -> int:
    """The value of number words that make one number ("one thousand twenty four" -> 1024)."""
    total = current = 0
    for w in words:
        if w == "hundred":
            current = (current or 1) * 100
        elif w in _SCALES:
            total, current = total + (current or 1) * _SCALES[w], 0
        else:
            current += _UNITS.get(w, 0) + _TENS.get(w, 0)
    return total + current


def _continues(run: Sequence[str], w: str) -> bool:
    """Whether number word `w` goes on the number in `run` rather than starting another ("fifty six" is one
    number; "seven eight" and "twelve five" are two)."""
    last = run[-1]
    if w in _SCALES:
        return w != "hundred" or (last not in _SCALES and _number_value(run) % 1000 < 100)
    if w in _TENS:
        return last in _SCALES
    return last in _SCALES or (last in _TENS and 0 < _UNITS[w] < 10)


def answer_words(text: str) -> list[str]:
    """normalise()'s words with every number one token of digits, however it was written: "56", "fifty-six" and
    "fifty six" are all "56", and "twenty eight" is "28", so it never matches "8" inside it."""
    out: list[str] = []
    run: list[str] = []
    for w in normalise(text).split():
        if w in _UNITS or w in _TENS or w in _SCALES:  # a scale alone is one of it: "a hundred" -> "a 100"
            if run and not _continues(run, w):
                out.append(str(_number_value(run)))
                run = []
            run.append(w)
            continue
        if run:
            out.append(str(_number_value(run)))
            run = []
        out.append(w)
    return out + ([str(_number_value(run))] if run else [])


def matched_answer(reply: str, accept: Sequence[str]) -> str | None:
    """The first accepted answer found in `reply` as whole words (a run of the reply's words), or None. Both are
    read by answer_words(): numbers match as one token whether written in digits or words ("56" accepts
    "fifty-six"), and never as a part of a longer number ("8" does not accept "28" or "eighteen")."""
    words = answer_words(reply)
    for answer in accept:
        wanted = answer_words(answer)
        n = len(wanted)
        if n and any(words[i : i + n] == wanted for i in range(len(words) - n + 1)):
            return answer
    return None


# ---- running the questions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerResult:
    question: str
    voice: str
    kind: str
    follow_up: bool
    history_turns: int  # turns in the dialogue history when the question was asked (0: a fresh conversation)
    transcript: str  # "" when the VAD found no speech or Whisper dropped it
    heard_exactly: bool
    wer: float
    reply: str
    answer_right: bool
    matched: str | None  # the accepted answer found in the reply
    accepted: tuple[str, ...]
    speech_s: float  # the spoken question as the VAD cut it
    # COMPUTED from event times: end of speech -> first reply audio delivered to the listener (None: no audio)
    first_audio_computed_s: float | None


def pick_voices(names: Sequence[str]) -> list[Voice]:
    """The named voices of `assistant.bench.asr.VOICES`, each speaking every question (a follow-up needs its lead)."""
    by_name = {v.name: v for v in VOICES}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise AssistantError(f"unknown voice(s) {', '.join(unknown)}; choose from {', '.join(by_name)}")
    return [dataclasses.replace(by_name[n], every=1) for n in names]


def check_voices(voices: Sequence[Voice], models_dir: Path) -> None:
    """Fail now, naming the voice and the fix, when a voice cannot speak (espeak-ng or the Piper voice missing)."""
    from assistant.tts.espeak import EspeakEngine
    from assistant.tts.piper import resolve_voice

    for voice in voices:
        try:
            if voice.engine == "piper":
                import piper  # noqa: F401 - the package the speaker needs

                resolve_voice(voice.voice, models_dir)
            else:
                EspeakEngine(voice.voice).load()  # is espeak-ng there, does it have the voice
        except (AssistantError, ImportError) as e:
            raise AssistantError(f"voice {voice.name} cannot speak the questions: {e}") from e


def ask(
    session, delivered: list[tuple[float, TurnEvent]], vad, samples: np.ndarray
) -> tuple[Any, float | None]:
    """One spoken question through the app's turn path; (FedTurn or None when no speech was found, the computed
    end of speech -> first reply audio delivered). `delivered`: what the session's listener gets, with when."""
    from assistant.audio.vad import VadSegmenter

    delivered.clear()
    lead = np.zeros(int(LEAD_SILENCE_S * vad.sample_rate_hz), np.float32)  # the pre-roll fills as from a mic
    segmenter = VadSegmenter.from_settings(vad)
    fed = feed_and_answer(
        session, segmenter, np.concatenate([lead, samples]), vad.sample_rate_hz, vad.frame_ms
    )
    if fed is None:
        return None, None
    audio_at = [at for at, e in delivered if isinstance(e, SpeechReady) and e.turn_id == fed.result.turn_id]
    return fed, (min(audio_at) - fed.eos_at) if audio_at else None


def score(
    q: AnswerQuestion, voice: str, history_turns: int, fed: Any, first_audio_s: float | None
) -> AnswerResult:
    transcript = fed.result.transcript if fed else ""
    reply = fed.result.reply if fed else ""
    matched = matched_answer(reply, q.accept)
    return AnswerResult(
        question=q.text, voice=voice, kind=q.kind, follow_up=q.follow_up, history_turns=history_turns,
        transcript=transcript, heard_exactly=heard_exactly(q.text, transcript),
        wer=round(word_errors([q.text], [transcript]).wer, 4), reply=reply, answer_right=matched is not None,
        matched=matched, accepted=q.accept, speech_s=round(fed.speech_s, 3) if fed else 0.0,
        first_audio_computed_s=round(first_audio_s, 3) if first_audio_s is not None else None,
    )  # fmt: skip


def run_bench(settings, questions: Sequence[AnswerQuestion], voices: Sequence[Voice], work_dir: Path,
              progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:  # fmt: skip
    from assistant.audio.vad import VadSettings
    from assistant.session import Session

    started = time.monotonic()
    check_voices(voices, settings.models_dir)
    vad = VadSettings.from_config(settings.audio)
    spoken = speak_questions([Question(q.text) for q in questions], voices, settings.models_dir,
                             vad.sample_rate_hz, work_dir)  # fmt: skip
    progress(f"{len(spoken)} spoken questions ready in {time.monotonic() - started:.0f} s")
    # The benchmark's turns are not the user's conversation: its log goes to the work folder.
    settings.paths.data_dir = work_dir / "data"
    delivered: list[tuple[float, TurnEvent]] = []  # (when the app's listener got it, event)
    session = Session(settings, lambda e: delivered.append((time.monotonic(), e)), out_dir=work_dir / "replies",
                      live=True)  # fmt: skip
    session.load()
    results: list[AnswerResult] = []
    try:
        for i, (said, voice, samples) in enumerate(spoken):
            q = questions[i % len(questions)]  # speak_questions: each voice speaks every question, in order
            assert said.text == q.text
            if not q.follow_up:
                session.reset_conversation()
            history_turns = len(getattr(session.dialogue, "history", ()))
            fed, first_audio_s = ask(session, delivered, vad, samples)
            results.append(score(q, voice.name, history_turns, fed, first_audio_s))
            r = results[-1]
            progress(f"{voice.name} {i % len(questions) + 1}/{len(questions)}: heard {r.transcript!r} -> "
                     f"{r.reply[:70]!r} ({'right' if r.answer_right else 'wrong'})")  # fmt: skip
        engines = session.engines_summary()
    finally:
        session.close()
    return report(results, voices, engines, vad, settings.dialogue, time.monotonic() - started)


def report(results: Sequence[AnswerResult], voices: Sequence[Voice], engines: dict[str, str], vad, dialogue,
           elapsed_s: float) -> dict[str, Any]:  # fmt: skip
    """The benchmark's JSON object; `dialogue`: the settings' dialogue section (its sampling shapes the replies)."""
    return {
        "engines": engines,
        "settings": {
            "voices": [v.name for v in voices],
            "pace": "real time",
            "end_silence_ms": vad.silence_ms,
            "early_start_ms": vad.early_start_ms,
            "temperature": dialogue.temperature,  # no fixed seed: with temperature > 0 replies vary between runs
            "max_tokens": dialogue.max_tokens,
            "history": "reset before every question but a follow-up",
            "normalisation": "lower case, contractions expanded, numbers as words, punctuation dropped",
            "first_audio_computed_s": "COMPUTED from the pipeline's event times: end of the question's speech -> "
            "first reply audio delivered to the app's listener; no speaker involved",
        },
        "overall": summarize(results),
        "voices": {v.name: summarize([r for r in results if r.voice == v.name]) for v in voices},
        "elapsed_s": round(elapsed_s, 1),
        "questions": [asdict(r) for r in results],
    }


def summarize(results: Sequence[AnswerResult]) -> dict[str, Any]:
    if not results:
        return {"questions": 0}
    errors = word_errors([r.question for r in results], [r.transcript for r in results])
    first = [r.first_audio_computed_s for r in results if r.first_audio_computed_s is not None]
    return {
        "questions": len(results),
        "heard_exactly": sum(r.heard_exactly for r in results),
        "wer": round(errors.wer, 4),
        "words": errors.reference_words,
        "answers_right": sum(r.answer_right for r in results),
        "first_audio_computed_s": {
            "median": round(statistics.median(first), 3) if first else None,
            "max": round(max(first), 3) if first else None,
            "turns_without_audio": len(results) - len(first),
        },
    }


def format_text(rep: dict[str, Any]) -> str:
    lines = ["engines: " + "; ".join(f"{k} {v}" for k, v in rep["engines"].items()), "",
             "| voice | questions | heard exactly | WER % | answers right | first audio s (computed) median / max |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, g in [*rep["voices"].items(), ("all", rep["overall"])]:
        if not g["questions"]:
            continue
        fa = g["first_audio_computed_s"]
        timing = "-" if fa["median"] is None else f"{fa['median']:.2f} / {fa['max']:.2f}"
        lines.append(f"| {name} | {g['questions']} | {g['heard_exactly']} | {100 * g['wer']:.1f} | "
                     f"{g['answers_right']} | {timing} |")  # fmt: skip
    lines += ["", "| voice | question | heard | right | first audio s | reply |", "|---|---|---|---|---|---|"]
    for r in rep["questions"]:
        heard = "exact" if r["heard_exactly"] else repr(r["transcript"])
        fa = "-" if r["first_audio_computed_s"] is None else f"{r['first_audio_computed_s']:.2f}"
        reply = " ".join(r["reply"].split())[:70]
        lines.append(f"| {r['voice']} | {r['question']} | {heard} | {'yes' if r['answer_right'] else 'no'} | {fa} "
                     f"| {reply} |")  # fmt: skip
    return "\n".join(lines)


# ---- command line -------------------------------------------------------------------------------------------


def apply_overrides(settings, items: Sequence[str]):
    """Settings with each KEY=VALUE (dotted key, YAML value) applied, validated as a config file would be."""
    from assistant.config import settings_to_dict, validate_dict

    data = settings_to_dict(settings)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AssistantError(f"--set wants KEY=VALUE, got {item!r}")
        node = data
        *path, leaf = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise AssistantError(f"--set {key}: {part} is not a section")
        node[leaf] = yaml.safe_load(value)
    return validate_dict(data, "--set").model_copy(
        update={"user_keys": settings.user_keys, "load_notices": settings.load_notices}
    )


def register(bsub: argparse._SubParsersAction) -> None:
    parser = bsub.add_parser(
        "answers", help="spoken questions through the whole turn: heard right, answered right"
    )
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N questions")
    parser.add_argument("--json", action="store_true", help="print one JSON object (with every reply)")
    parser.add_argument("--voices", nargs="+", default=list(DEFAULT_VOICES), metavar="VOICE",
                        help=f"who asks: {', '.join(v.name for v in VOICES)} (default: %(default)s)")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config value, e.g. --set dialogue.model=qwen2.5-1.5b (repeatable)")  # fmt: skip
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from assistant.config import load_settings

    settings = apply_overrides(load_settings(args.config), args.set)
    questions = first_questions(load_questions(), args.limit)
    voices = pick_voices(args.voices)
    with tempfile.TemporaryDirectory(prefix="bench-answers-") as tmp:
        rep = run_bench(settings, questions, voices, Path(tmp), progress=lambda s: print(s, file=sys.stderr))
    print(json.dumps(rep, indent=2) if args.json else format_text(rep))
    return 0
