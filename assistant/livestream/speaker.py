"""Speak validated messages on the live stream, one after another, and say when each one has gone out.

`Speaker.submit(message, on_done, on_failed)` queues a message; a worker thread prepares them in order (text: split
into sentences, each synthesized and queued as soon as it is ready, so the first words start while the rest is
being made; chat: the dialogue model's answer, sentence by sentence as it is generated; audio: the decoded
samples as they are) and queues the audio into the `LiveStream` under keys of its own. The stream's clock reports
`StreamSpeechFinished` for each key (`on_stream_event`, called on the clock thread); when the last piece of a message
has gone out, `on_done` is called (on the clock thread: keep it short, the consumer only queues an ack). A message
that cannot be made into speech (TTS or dialogue failed) calls `on_failed(reason)` instead and the next one goes on.

Needs a TTS engine (`assistant.tts`) and, for chat messages, a dialogue model (`assistant.dialogue`).
"""

from __future__ import annotations

import itertools
import logging
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.audio.io import load_audio
from assistant.live.clip_feed import ClipFeed
from assistant.live.stream import LiveStream, StreamEvent, StreamSpeechFinished, StreamSpeechStarted
from assistant.livestream.messages import AudioMessage, ChatMessage, Message, TextMessage, describe
from assistant.sentences import split_sentences

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpeechKey:
    """The stream key of one piece of a message's speech."""

    job: int
    piece: int


@dataclass
class Job:
    seq: int
    message: Message
    on_done: Callable[[Job], None]
    on_failed: Callable[[Job, str], None]
    tag: Any = None  # the caller's handle (the consumer's delivery)
    queued: int = 0  # pieces handed to the stream
    finished: int = 0  # pieces the stream reported finished
    all_queued: bool = False
    settled: bool = False
    cancelled: bool = False
    submitted_at: float = field(default_factory=time.monotonic)
    first_sound_at: float | None = None  # when its first piece started on the stream
    spoken_text: list[str] = field(default_factory=list)


class Speaker:
    def __init__(
        self,
        stream: LiveStream,
        tts: Any,  # TTSEngine: synthesize(text, wav_path) -> SpeechAudio
        dialogue_factory: Callable[[], Any] | None = None,  # builds a DialogueManager on the first chat message
        work_dir: Path | None = None,
    ) -> None:
        self.stream = stream
        self.feed = ClipFeed(stream)  # Wav2Lip prepares each clip's frames before its sound goes out
        self.tts = tts
        self._dialogue_factory = dialogue_factory
        self._dialogue: Any = None
        self._owns_work_dir = work_dir is None  # removed by close(): a run leaves no /tmp/assistant-stream-*
        self._work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="assistant-stream-"))
        self._jobs: dict[int, Job] = {}
        self._lock = threading.Lock()
        self._todo: queue.Queue[Job | None] = queue.Queue()
        self._seq = itertools.count(1)
        self._thread = threading.Thread(target=self._run, name="livestream-speaker", daemon=True)
        self._thread.start()
        self.on_started: Callable[[Job, StreamSpeechStarted], None] = lambda job, event: None

    # ---- in ----
    def submit(
        self,
        message: Message,
        on_done: Callable[[Job], None],
        on_failed: Callable[[Job, str], None],
        tag: Any = None,
    ) -> Job:
        job = Job(next(self._seq), message, on_done, on_failed, tag)
        with self._lock:
            self._jobs[job.seq] = job
        self._todo.put(job)
        return job

    @property
    def busy(self) -> bool:
        with self._lock:
            return bool(self._jobs)

    # ---- the worker ----
    def _run(self) -> None:
        while True:
            job = self._todo.get()
            if job is None:
                return
            if job.cancelled:
                continue
            started = time.monotonic()
            try:
                self._prepare(job)
            except Exception as e:  # noqa: BLE001 - one message that cannot be spoken must not stop the others
                log.exception("cannot speak %s", describe(job.message))
                self._settle(job, failed=f"{type(e).__name__}: {e}")
                continue
            log.debug("prepared %s in %.2f s", describe(job.message), time.monotonic() - started)

    def _prepare(self, job: Job) -> None:
        message = job.message
        if isinstance(message, AudioMessage):
            self._say(job, message.samples, message.sample_rate_hz, message.text or "(audio)")
        elif isinstance(message, TextMessage):
            for sentence in split_sentences(message.text) or [message.text]:
                if job.cancelled:
                    return
                self._speak_text(job, sentence)
        elif isinstance(message, ChatMessage):
            if self._dialogue is None:
                if self._dialogue_factory is None:
                    raise RuntimeError("chat messages need a dialogue model, and none is configured")
                self._dialogue = self._dialogue_factory()
            replies = self._dialogue.stream_reply(message.text)
            try:
                for sentence in replies:
                    if job.cancelled:
                        break
                    self._speak_text(job, sentence.text)
            finally:
                replies.close()
        with self._lock:
            job.all_queued = True
            done = job.finished >= job.queued
        if done:  # every piece already went out (or there was nothing to say)
            self._settle(job)

    def _speak_text(self, job: Job, text: str) -> None:
        wav = self._work_dir / f"job{job.seq}-{job.queued}.wav"
        speech = self.tts.synthesize(text, wav)
        samples = load_audio(speech.wav_path, self.stream.settings.audio_rate_hz)
        wav.unlink(missing_ok=True)
        self._say(job, samples, self.stream.settings.audio_rate_hz, text)

    def _say(self, job: Job, samples: Any, rate: int, text: str) -> None:
        with self._lock:
            key = SpeechKey(job.seq, job.queued)
            job.queued += 1
        self.feed.say(key, samples, rate, text)

    # ---- out (clock thread) ----
    def on_stream_event(self, event: StreamEvent) -> None:
        key = getattr(event, "key", None)
        if not isinstance(key, SpeechKey):
            return
        if isinstance(event, StreamSpeechFinished):
            self.feed.finished(key)
        with self._lock:
            job = self._jobs.get(key.job)
            if job is None:
                return
            if isinstance(event, StreamSpeechStarted):
                if job.first_sound_at is None:
                    job.first_sound_at = event.at_s
                    started = True
                else:
                    started = False
            elif isinstance(event, StreamSpeechFinished):
                started = False
                job.finished += 1
                if not event.cancelled:
                    job.spoken_text.append(event.text)
            else:
                return
            done = isinstance(event, StreamSpeechFinished) and job.all_queued and job.finished >= job.queued
        if started:
            self.on_started(job, event)  # type: ignore[arg-type]
        if done:
            self._settle(job)

    def _settle(self, job: Job, failed: str | None = None) -> None:
        with self._lock:
            if job.settled:
                return
            job.settled = True
            self._jobs.pop(job.seq, None)
        try:
            if failed is None:
                job.on_done(job)
            else:
                job.on_failed(job, failed)
        except Exception:  # noqa: BLE001 - a callback bug must not kill the clock thread
            log.exception("a speaker callback failed")

    def close(self) -> None:
        """Stop preparing: jobs not yet spoken are dropped without their callbacks (the caller requeues them)."""
        with self._lock:
            for job in self._jobs.values():
                job.cancelled = True
                job.settled = True
            self._jobs.clear()
        self._todo.put(None)
        self._thread.join(10.0)
        if self._dialogue is not None and hasattr(self._dialogue, "close"):
            self._dialogue.close()
        if self._owns_work_dir:
            shutil.rmtree(self._work_dir, ignore_errors=True)
