"""One conversation turn: utterance -> transcript -> reply sentences -> speech per sentence -> video per sentence.

The stages overlap: the language model streams sentences into a queue, a TTS thread speaks each one as it comes, a
talking-head thread turns each spoken sentence into a video segment, so the first segment is ready long before the
reply is finished. Every step is reported as a typed event (assistant.events) to one callback. A cancel token stops
a reply in flight (new user speech). A transcript that is a spoken command (assistant.commands: "new
conversation") is carried out and answered without the language model. Qt-free: the desktop app drives it from
a QThread, the CLI from the main thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from assistant.cancel import CancelToken
from assistant.commands import NEW_CONVERSATION, SpokenCommand, recognise_command
from assistant.errors import AssistantError, Cancelled, VideoOutOfMemoryError
from assistant.events import (
    AvatarVideo,
    ConversationReset,
    Notice,
    ReplySentence,
    ReplySentenceReady,
    SegmentReady,
    SpeechAudio,
    SpeechReady,
    StageFailed,
    Transcript,
    TranscriptReady,
    TurnDone,
    TurnEvent,
    Utterance,
    UtteranceCaptured,
    VideoReady,
)

log = logging.getLogger(__name__)

EventCallback = Callable[[TurnEvent], None]


class Recognizer(Protocol):
    name: str

    def transcribe(self, utterance: Utterance) -> Transcript | None: ...


class Responder(Protocol):
    name: str

    def stream_reply(self, user_text: str, cancel: CancelToken) -> Iterator[ReplySentence]: ...


class Speaker(Protocol):
    name: str

    def synthesize(self, text: str, out_path: Path) -> SpeechAudio: ...


class Animator(Protocol):
    name: str

    def render(self, audio_path: Path, output_path: Path) -> AvatarVideo: ...


@dataclass
class Stages:
    """The four engines a turn runs through; talking_head None means audio only."""

    asr: Recognizer
    dialogue: Responder
    tts: Speaker
    talking_head: Animator | None = None


@dataclass
class TurnResult:
    turn_id: int
    transcript: str
    reply: str
    segments: list[SegmentReady] = field(default_factory=list)
    cancelled: bool = False
    dropped: bool = False  # the utterance held no speech: nothing was sent to the model
    discarded: bool = False  # a speculative turn the user talked over: never shown
    timings_s: dict[str, float] = field(default_factory=dict)
    engines: dict[str, str] = field(default_factory=dict)

    @property
    def audio_paths(self) -> list[Path]:
        return [s.speech.wav_path for s in self.segments]

    @property
    def video_paths(self) -> list[Path]:
        return [s.video.mp4_path for s in self.segments if s.video is not None]


_DONE = object()  # end-of-stream marker between the stage threads
FIRST_SPEECH_WAIT_S = 2.0  # the language model pauses after the first sentence until its speech exists (at most
# this long): on 2 cores llama.cpp's threads writing the rest of the reply slowed Piper's first sentence 3-4x
# (0.2-0.33 s in `bench live` against 0.05 s alone), and that sentence is what the user waits for


class Hold:
    """Keeps a speculative turn's events back until `release()`; `discard()` cancels the turn and drops them.

    A turn started at a pause in speech (before the end of speech is confirmed) runs under a Hold: its work goes
    on, but nothing reaches the listener (so nothing is shown or played) until the end of speech is confirmed.
    If the speaker goes on instead, the turn is cancelled, its events vanish and its exchange is taken back out
    of the dialogue history.
    """

    def __init__(self) -> None:
        self.cancel = CancelToken()
        self._lock = threading.Lock()
        self._buffer: list[TurnEvent] = []
        self._emit: EventCallback | None = None
        self.state = "held"  # "held", "released" or "discarded"
        self._rollback: Callable[[], None] | None = None
        self._on_release: list[Callable[[], None]] = []
        self.released_at: float | None = None

    def attach(self, emit: EventCallback) -> None:
        with self._lock:
            self._emit = emit

    def deliver(self, event: TurnEvent) -> None:
        with self._lock:
            if self.state == "held":
                self._buffer.append(event)
            elif self.state == "released" and self._emit is not None:
                self._emit(event)

    def release(self) -> None:
        """The end of speech is confirmed: deliver what was held back, and everything after it at once."""
        with self._lock:
            if self.state != "held":
                return
            self.state = "released"
            self.released_at = time.monotonic()
            actions, self._on_release = self._on_release, []
            for action in actions:  # before the events that report it
                action()
            buffered, self._buffer = self._buffer, []
            if self._emit is not None:
                for event in buffered:
                    self._emit(event)

    def discard(self, reason: str = "speech resumed") -> None:
        with self._lock:
            if self.state == "discarded":
                return
            self.state = "discarded"
            self._buffer.clear()
            self._on_release.clear()
            self.cancel.cancel(reason)
            rollback, self._rollback = self._rollback, None
        if rollback is not None:
            rollback()

    def when_released(self, action: Callable[[], None]) -> None:
        """Run `action` once the turn is confirmed: now if it is, at release() while held, never if discarded
        (a speculative "start over" the speaker went on from must not forget the conversation)."""
        with self._lock:
            if self.state == "held":
                self._on_release.append(action)
                return
            confirmed = self.state == "released"
        if confirmed:
            action()

    def finished(self, rollback: Callable[[], None]) -> None:
        """The turn ended; `rollback` undoes its effects if it is (or later gets) discarded."""
        with self._lock:
            discarded = self.state == "discarded"
            if not discarded:
                self._rollback = rollback
        if discarded:
            rollback()


def split_speech(speech: SpeechAudio, max_s: float) -> list[SpeechAudio]:
    """Cut `speech` into pieces of at most `max_s`, 2 x `max_s`, 4 x `max_s`, ... seconds, each cut at the quietest
    20 ms of the last 40% of its allowed length. Each piece renders in less time than the piece before it plays
    (any engine faster than 0.5 x real time), so the first frame comes sooner and no gap opens after it.
    Pieces are written beside the original WAV; the audio is unchanged end to end."""
    import soundfile as sf

    if speech.duration_s < 1.6 * max_s:
        return [speech]
    samples, rate = sf.read(str(speech.wav_path), dtype="float32")
    if samples.ndim > 1:
        samples = samples.mean(axis=1)
    win = rate // 50  # 20 ms
    cuts, pos, limit = [], 0, max_s
    while len(samples) - pos > 1.6 * limit * rate:
        lo, hi = int(0.6 * limit * rate) // win, int(limit * rate) // win
        energy = [float(np.mean(samples[pos + k * win : pos + (k + 1) * win] ** 2)) for k in range(lo, hi)]
        pos += (lo + int(np.argmin(energy))) * win + win // 2
        cuts.append(pos)
        limit *= 2
    pieces = []
    for n, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(samples)])):
        path = speech.wav_path.with_name(f"{speech.wav_path.stem}{chr(ord('a') + n)}.wav")
        sf.write(str(path), samples[a:b], rate, subtype="PCM_16")
        pieces.append(dataclasses.replace(speech, wav_path=path, duration_s=(b - a) / rate))
    return pieces


class TurnRunner:
    """Runs turns through `Stages`, one at a time, reporting events to `on_event`."""

    def __init__(
        self, stages: Stages, on_event: EventCallback, out_dir: Path, first_segment_max_s: float = 1.0
    ) -> None:
        self.stages = stages
        # The first sentence's speech is cut at a quiet point before this many seconds, so the first video
        # segment (render + encode) is short and shows sooner; the rest renders while it plays. 0 = off.
        self.first_segment_max_s = first_segment_max_s
        self.on_event = on_event
        self.out_dir = Path(out_dir)
        self._turn_id = 0
        # Where this turn's events go: straight to the listener, or through a Hold when the turn is speculative.
        self._deliver: EventCallback = self._safe_listener
        self._lock = threading.Lock()
        self._current: CancelToken | None = None
        # True when a live stream animates the speech (the desktop app): segments are audio, no video files.
        self.video_by_stream = False
        # After an out-of-memory, the rest of that turn is audio only; the next turn tries video again.
        self._video_suspended_for_turn: int | None = None

    # ---- control ----
    def cancel_current(self, reason: str = "new user speech") -> bool:
        """Cancel the reply in flight, if any. Returns True when one was running."""
        token = self._current
        if token is not None and not token.cancelled:
            token.cancel(reason)
            return True
        return False

    def _emit(self, event: TurnEvent) -> None:
        self._deliver(event)  # either way ends in _safe_listener: a faulty listener never kills the turn

    # ---- one turn ----
    def run(
        self,
        utterance: Utterance | None = None,
        text: str | None = None,
        cancel: CancelToken | None = None,
        end_of_speech_at: float | None = None,
        hold: Hold | None = None,
    ) -> TurnResult:
        """One whole turn from an utterance (ASR runs) or from typed `text` (ASR skipped).

        `end_of_speech_at` (time.monotonic) is when the user stopped speaking; stage times are measured from it.
        Under a `hold` (a speculative turn) events are kept back until the hold is released.
        """
        if (utterance is None) == (text is None):
            raise ValueError("give exactly one of utterance or text")
        with self._lock:
            self._turn_id += 1
            turn_id = self._turn_id
            token = hold.cancel if hold is not None else (cancel or CancelToken())
            self._current = token
            if hold is not None:
                hold.attach(self._safe_listener)
                self._deliver = hold.deliver
            else:
                self._deliver = self._safe_listener
        t0 = end_of_speech_at if end_of_speech_at is not None else time.monotonic()
        result = TurnResult(turn_id, "", "")
        result.engines = {
            "asr": getattr(self.stages.asr, "name", "?"),
            "llm": getattr(self.stages.dialogue, "name", "?"),
            "tts": getattr(self.stages.tts, "name", "?"),
            "talking_head": getattr(self.stages.talking_head, "name", "none") if self.stages.talking_head else "none",
        }
        # The process id keeps two runs started in the same second (two `assistant ask`) out of each other's folder.
        turn_dir = self.out_dir / f"turn-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{turn_id:04d}"
        try:
            user_text = self._recognize(turn_id, utterance, text, result, t0)
            if user_text is None:
                result.dropped = True
                return result
            result.transcript = user_text
            command = recognise_command(user_text)
            if command is NEW_CONVERSATION:
                self._start_new_conversation(turn_id, hold)
            self._respond(turn_id, user_text, token, turn_dir, result, t0, command)
        except Cancelled:
            result.cancelled = True
        finally:
            result.cancelled = result.cancelled or token.cancelled
            result.timings_s["total"] = time.monotonic() - t0
            with self._lock:
                if self._current is token:
                    self._current = None
            if not result.dropped:
                self._emit(
                    TurnDone(
                        turn_id,
                        time.monotonic(),
                        transcript=result.transcript,
                        reply=result.reply,
                        segments=len(result.segments),
                        cancelled=result.cancelled,
                        timings_s=dict(result.timings_s),
                        engines=dict(result.engines),
                        end_of_speech_at=end_of_speech_at,
                    )
                )
            if hold is not None:
                hold.finished(lambda: self._roll_back(result))
                result.discarded = hold.state == "discarded"
        return result

    def _safe_listener(self, event: TurnEvent) -> None:
        try:
            self.on_event(event)
        except Exception:  # a faulty listener must not kill the turn
            log.exception("event listener failed on %s", type(event).__name__)

    def _roll_back(self, result: TurnResult) -> None:
        """Take a discarded speculative turn back out of the conversation."""
        result.discarded = True
        forget = getattr(self.stages.dialogue, "forget_last_turn", None)
        if forget is not None and result.transcript:
            forget(result.transcript)
        log.info("speculative turn %d discarded: the speaker went on", result.turn_id)

    def _start_new_conversation(self, turn_id: int, hold: Hold | None) -> None:
        """The user said "new conversation": the dialogue forgets its history (once a speculative turn is
        confirmed), and the listener hears of it."""
        reset = getattr(self.stages.dialogue, "reset", None)
        if reset is not None and hold is not None:
            hold.when_released(reset)
        elif reset is not None:
            reset()
        self._emit(ConversationReset(turn_id, time.monotonic()))

    def _recognize(
        self, turn_id: int, utterance: Utterance | None, text: str | None, result: TurnResult, t0: float
    ) -> str | None:
        if utterance is None:
            return (text or "").strip() or None
        self._emit(UtteranceCaptured(turn_id, time.monotonic(), utterance))
        start = time.monotonic()
        try:
            transcript = self.stages.asr.transcribe(utterance)
        except AssistantError as e:
            self._emit(StageFailed(turn_id, time.monotonic(), "asr", str(e)))
            raise Cancelled(f"speech recognition failed: {e}") from e
        result.timings_s["asr"] = time.monotonic() - start
        if transcript is None or not transcript.text.strip():
            log.info("utterance of %.1f s held no speech; dropped", utterance.duration_s)
            return None
        self._emit(TranscriptReady(turn_id, time.monotonic(), transcript))
        return transcript.text.strip()

    def _respond(
        self, turn_id: int, user_text: str, token: CancelToken, turn_dir: Path, result: TurnResult, t0: float,
        command: SpokenCommand | None = None,
    ) -> None:
        """Speak the reply: the language model's, or a spoken command's answer (the model is not asked)."""
        speech_q: queue.Queue = queue.Queue()
        video_q: queue.Queue = queue.Queue()
        errors: list[BaseException] = []
        first_speech = threading.Event()  # set once the first sentence has been synthesised (or failed)
        llm_start = time.monotonic()

        tts_thread = threading.Thread(
            target=self._tts_loop,
            args=(turn_id, speech_q, video_q, token, turn_dir, result, t0, errors, first_speech),
            name=f"tts-{turn_id}", daemon=True,
        )
        th_thread = threading.Thread(
            target=self._video_loop, args=(turn_id, video_q, token, turn_dir, result, t0, errors),
            name=f"talking-head-{turn_id}", daemon=True,
        )
        tts_thread.start()
        th_thread.start()
        sentences: list[str] = []
        try:
            replies = (
                iter([ReplySentence(0, command.reply, is_last=True)]) if command is not None
                else self.stages.dialogue.stream_reply(user_text, token)
            )  # fmt: skip
            for sentence in replies:
                if token.cancelled:
                    break
                if not sentences:
                    result.timings_s["llm_first_sentence"] = time.monotonic() - llm_start
                sentences.append(sentence.text)
                self._emit(ReplySentenceReady(turn_id, time.monotonic(), sentence, time.monotonic() - llm_start))
                speech_q.put(sentence)
                if len(sentences) == 1:
                    first_speech.wait(FIRST_SPEECH_WAIT_S)  # the generator is paused: the cores go to the voice
        except Cancelled:
            pass
        except AssistantError as e:
            self._emit(StageFailed(turn_id, time.monotonic(), "dialogue", str(e)))
        finally:
            result.timings_s["llm_total"] = time.monotonic() - llm_start
            result.reply = " ".join(sentences)
            speech_q.put(_DONE)
            tts_thread.join()
            th_thread.join()
        if errors:
            raise errors[0]

    def _tts_loop(self, turn_id, speech_q, video_q, token, turn_dir, result, t0, errors, first_speech=None) -> None:
        segment_index = 0  # segments are played in this order; the first sentence may make two
        first_speech = first_speech or threading.Event()
        try:
            while True:
                item = speech_q.get()
                if item is _DONE or token.cancelled:
                    break
                sentence: ReplySentence = item
                start = time.monotonic()
                try:
                    speech = self.stages.tts.synthesize(sentence.text, turn_dir / f"seg-{sentence.index:03d}.wav")
                except AssistantError as e:
                    self._emit(StageFailed(turn_id, time.monotonic(), "tts", str(e)))
                    continue
                finally:
                    first_speech.set()
                result.timings_s.setdefault("tts_first_audio", time.monotonic() - start)
                result.timings_s["tts_total"] = result.timings_s.get("tts_total", 0.0) + time.monotonic() - start
                result.timings_s.setdefault("first_audio_from_end_of_speech", time.monotonic() - t0)
                if speech.fallback_reason:
                    self._emit(Notice(turn_id, time.monotonic(), f"TTS fell back: {speech.fallback_reason}", "warning"))
                result.engines["tts"] = speech.engine
                self._emit(SpeechReady(turn_id, time.monotonic(), sentence.index, speech))
                pieces = [speech]
                if segment_index == 0 and self.stages.talking_head is not None and self.first_segment_max_s:
                    pieces = split_speech(speech, self.first_segment_max_s)
                for piece in pieces:
                    video_q.put((segment_index, piece))
                    segment_index += 1
        except BaseException as e:  # noqa: BLE001 - handed to the turn's thread
            errors.append(e)
        finally:
            first_speech.set()
            video_q.put(_DONE)

    def _video_loop(self, turn_id, video_q, token, turn_dir, result, t0, errors) -> None:
        try:
            while True:
                item = video_q.get()
                if item is _DONE:
                    break
                if token.cancelled:
                    continue  # drain: the speech thread still puts _DONE
                index, speech = item
                video, reason = self._make_video(turn_id, index, speech, turn_dir, result)
                segment = SegmentReady(turn_id, time.monotonic(), index, speech, video, reason)
                result.segments.append(segment)
                result.timings_s.setdefault("first_segment_from_end_of_speech", time.monotonic() - t0)
                self._emit(segment)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def _make_video(
        self, turn_id: int, index: int, speech: SpeechAudio, turn_dir: Path, result: TurnResult
    ) -> tuple[AvatarVideo | None, str | None]:
        animator = self.stages.talking_head
        if animator is None:
            # With a live stream the stream animates the speech: a segment is its audio, nothing is missing.
            return None, None if self.video_by_stream else "talking head disabled"
        if self._video_suspended_for_turn == turn_id:
            return None, "video paused for this reply after running out of memory"
        start = time.monotonic()
        try:
            video = animator.render(speech.wav_path, speech.wav_path.with_suffix(".mp4"))
        except VideoOutOfMemoryError as e:
            self._video_suspended_for_turn = turn_id
            msg = f"Video ran out of memory; this reply plays as audio only ({e})"
            self._emit(StageFailed(turn_id, time.monotonic(), "talking_head", msg))
            self._emit(Notice(turn_id, time.monotonic(), msg, "warning"))
            return None, msg
        except AssistantError as e:
            msg = f"Video generation failed; audio only: {e}"
            self._emit(StageFailed(turn_id, time.monotonic(), "talking_head", msg))
            return None, msg
        elapsed = time.monotonic() - start
        result.timings_s.setdefault("talking_head_first_segment", elapsed)
        result.timings_s["talking_head_total"] = result.timings_s.get("talking_head_total", 0.0) + elapsed
        result.engines["talking_head"] = video.engine
        for reason in video.fallback_reasons:
            self._emit(Notice(turn_id, time.monotonic(), f"Talking head fell back: {reason}", "warning"))
        self._emit(VideoReady(turn_id, time.monotonic(), index, video))
        return video, None
