"""One browser's conversation: its own live avatar stream, history, turn-taking and turns, over the shared models.

The same parts as the desktop window, without Qt: a `LiveStream` (idle motion, speech, cancel; its own copy of the
renderer) whose frames go to the browser's tracks (`media.StreamTracks`), the `ClipFeed` that queues each reply
segment into it, the core `TurnTaking` state machine (hands-free with barge-in: the browser cancels the avatar's
echo in the microphone), a VAD segmenter on the browser's microphone, and a `TurnWorker` running the turns through
a `TurnRunner` whose stages queue for the shared models.

To the page go small JSON messages (`send`, thread-safe): the state ("Listening", "Thinking…", "Speaking"), what
was heard and the reply as it is written, notices. From the page come `{"type": "ask", "text": ...}`,
`{"type": "stop"}`, `{"type": "mute", "muted": bool}` and `{"type": "ping"}` every PING_S (`handle_message`). No conversation text is logged at
info level: the log says that a turn ran, not what was said.

Needs the live stream, the pipeline and webrtcvad.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from assistant.audio.vad import (
    SpeechDiscarded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    VadSegmenter,
    VadSettings,
)
from assistant.events import (
    ConversationReset,
    Notice,
    ReplySentenceReady,
    SegmentReady,
    StageFailed,
    TranscriptReady,
    TurnDone,
    TurnEvent,
    Utterance,
)
from assistant.live.build import LiveSetup
from assistant.live.clip_feed import ClipFeed
from assistant.live.stream import (
    FrameSink,
    LiveStream,
    StreamDrained,
    StreamEvent,
    StreamSpeechFinished,
    StreamSpeechStarted,
)
from assistant.pipeline import Hold, TurnResult, TurnRunner
from assistant.retention import prune_media
from assistant.serve.turn_queue import SharedModels
from assistant.serve.worker import TurnWorker, WorkerCallbacks
from assistant.turn_taking import HANDS_FREE, TurnState, TurnTaking

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], None]
KEEP_TURN_FOLDERS = 3
PING_S = 2.0  # the page pings this often (app.js), so a tab that vanished is noticed without ICE timeouts


class MessageError(ValueError):
    """A message from the page that cannot be used; the text says why (it goes back to the page)."""


class BrowserSession:
    def __init__(
        self,
        session_id: str,
        models: SharedModels,
        setup: LiveSetup,
        vad: VadSettings,
        out_dir: Path,
        send: Send,
        max_message_chars: int = 1000,
    ) -> None:
        self.id = session_id
        self.send = send
        self.max_message_chars = max_message_chars
        # Speech, a question, a reply: what the idle timeout counts from.
        self.last_activity = time.monotonic()
        self.last_message_at = time.monotonic()  # anything from the page, its pings included
        self.closed = False
        self.turns_run = 0
        # The renderer keeps its frame buffer and rig state: each browser animates its own copy.
        self.stream = LiveStream(
            copy.deepcopy(setup.renderer), setup.settings, on_event=self._on_stream_event
        )
        self.feed = ClipFeed(self.stream)
        self.segmenter = VadSegmenter.from_settings(vad, source=f"browser {session_id}")
        self.vad_rate_hz = vad.sample_rate_hz
        self.speech_dir = out_dir / session_id  # each turn's WAVs, read into the stream as they come
        runner = TurnRunner(models.for_session(), self._on_turn_event, self.speech_dir)
        runner.video_by_stream = True  # the live stream animates the speech
        self.worker = TurnWorker(
            runner,
            WorkerCallbacks(self._turn_started, self._turn_finished, self._turn_failed),
            name=f"serve-turns-{session_id}",
        )
        self.listening = True
        self.turns = TurnTaking(self, HANDS_FREE, loaded=True, barge_in=True)

    # ---- lifecycle ----
    def start(self, sink: FrameSink) -> None:
        self.stream.add_sink(sink)
        self.stream.start()
        self.send({"type": "state", "state": self.turns.state.value, "text": self.turns.text})

    def close(self, reason: str) -> None:
        """Stop the reply, the turns and the stream (its sinks end the browser's tracks). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.turns.stop(reason)
        self.worker.stop()
        self.stream.stop(close_sinks=True)
        shutil.rmtree(self.speech_dir, ignore_errors=True)
        log.info("session %s closed (%s) after %d turns", self.id, reason, self.turns_run)

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def idle_s(self, now: float | None = None) -> float:
        """How long nothing happened: no speech, no question, no reply being made or spoken."""
        if self.turns.state is not TurnState.LISTENING:
            self.touch()
        return (now if now is not None else time.monotonic()) - self.last_activity

    def page_silent_s(self, now: float | None = None) -> float:
        """How long the page has sent nothing, not even its ping (every PING_S): a tab closed without a word."""
        return (now if now is not None else time.monotonic()) - self.last_message_at

    # ---- from the page ----
    def handle_message(self, raw: str | bytes) -> None:
        """One data-channel message from the page; raises MessageError for one that cannot be used."""
        if len(raw) > self.max_message_chars + 200:
            raise MessageError(f"message too long ({len(raw)} characters; at most {self.max_message_chars})")
        try:
            message = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise MessageError(f"not JSON: {e}") from e
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise MessageError('a message is a JSON object with a "type"')
        kind = message["type"]
        self.last_message_at = time.monotonic()
        if kind == "ping":
            return
        self.touch()
        if kind == "ask":
            text = message.get("text")
            if not isinstance(text, str) or not text.strip():
                raise MessageError('"ask" needs a non-empty "text"')
            if len(text) > self.max_message_chars:
                raise MessageError(
                    f"question too long ({len(text)} characters; at most {self.max_message_chars})"
                )
            self.turns.typed(text)
        elif kind == "stop":
            self.turns.stop()
        elif kind == "mute":
            self.turns.set_muted(bool(message.get("muted")))
        else:
            raise MessageError(f'unknown message type {kind!r}: use "ask", "stop", "mute" or "ping"')

    def hear(self, samples: np.ndarray, at: float) -> None:
        """The browser's microphone, int16 mono at `vad_rate_hz`, arrived at `at` (time.monotonic())."""
        if self.closed:
            return
        events = self.segmenter.push(samples if self.listening else np.zeros_like(samples), at=at)
        for event in events:
            self.touch()
            if isinstance(event, SpeechStarted):
                self.turns.speech_started()
            elif isinstance(event, SpeechPaused):
                self.turns.speech_paused(event.utterance, event.voice_ended_at or at)
            elif isinstance(event, SpeechResumed):
                self.turns.speech_resumed()
            elif isinstance(event, SpeechDiscarded):
                self.turns.speech_discarded()
            elif isinstance(event, Utterance):
                self.turns.utterance_ended(event, getattr(event, "voice_ended_at", None) or at)

    # ---- TurnTaking's actions ----
    def submit_turn(
        self,
        utterance: Utterance | None = None,
        text: str | None = None,
        end_of_speech_at: float | None = None,
        hold: Hold | None = None,
    ) -> int:
        return self.worker.submit(utterance, text, end_of_speech_at, hold)

    def cancel_turn(self, reason: str) -> None:
        self.worker.cancel(reason)

    def speak(self, segment: SegmentReady) -> None:
        key = (segment.turn_id, segment.index)
        try:
            self.feed.say_file(key, segment.speech.wav_path, segment.speech.text)
        except Exception as e:  # an unreadable WAV loses one segment, not the session
            log.exception("session %s: cannot queue a reply segment", self.id)
            self.send({"type": "notice", "level": "warning", "text": f"A piece of the reply was lost: {e}"})

    def stop_speech(self, reason: str) -> None:
        self.feed.cancel()

    def set_listening(self, listening: bool) -> None:
        self.listening = listening

    def state_changed(self, state: TurnState, text: str) -> None:
        self.send({"type": "state", "state": state.value, "text": text})

    # ---- the worker (its thread) ----
    def _turn_started(self, job: int) -> None:
        self.turns.turn_started(job)

    def _turn_finished(self, result: TurnResult) -> None:
        if not result.dropped:
            self.turns_run += 1
        # A long session keeps only its newest turns' speech files (a held turn's may still be queued).
        prune_media(self.speech_dir, KEEP_TURN_FOLDERS, 0)
        log.info(
            "session %s: turn %d %s in %.1f s", self.id, result.turn_id,
            "dropped (no words)" if result.dropped else ("cancelled" if result.cancelled else "answered"),
            result.timings_s.get("total", 0.0),
        )  # fmt: skip
        self.turns.turn_finished(result)

    def _turn_failed(self, message: str) -> None:
        self.turns.turn_failed(message)
        self.send({"type": "notice", "level": "error", "text": f"The turn failed: {message}"})

    def _on_turn_event(self, event: TurnEvent) -> None:
        self.touch()
        if isinstance(event, SegmentReady):
            self.turns.segment_ready(event)
        elif isinstance(event, TurnDone):
            if self.turns.turn_done(event):
                self.send({"type": "turn_done", "turn": event.turn_id, "cancelled": event.cancelled})
        elif not self.turns.turn_event(event):
            return
        elif isinstance(event, TranscriptReady):
            log.debug("session %s heard: %s", self.id, event.transcript.text)
            self.send({"type": "heard", "turn": event.turn_id, "text": event.transcript.text.strip()})
        elif isinstance(event, ReplySentenceReady):
            log.debug("session %s replies: %s", self.id, event.sentence.text)
            self.send({"type": "reply", "turn": event.turn_id, "text": event.sentence.text})
        elif isinstance(event, ConversationReset):
            self.send(
                {
                    "type": "notice",
                    "level": "info",
                    "text": "New conversation: the avatar forgot the last one.",
                }
            )
        elif isinstance(event, (StageFailed, Notice)):
            level = "error" if isinstance(event, StageFailed) else event.level
            self.send({"type": "notice", "level": level, "text": event.message})

    # ---- the stream (its clock thread) ----
    def _on_stream_event(self, event: StreamEvent) -> None:
        if isinstance(event, StreamSpeechStarted):
            self.touch()
            if isinstance(event.key, tuple):
                self.turns.playback_started(event.key[0])
        elif isinstance(event, StreamSpeechFinished):
            self.feed.finished(event.key)
        elif isinstance(event, StreamDrained):
            self.touch()
            key = event.last_key if isinstance(event.last_key, tuple) else (None, None)
            self.turns.playback_drained(*key)
