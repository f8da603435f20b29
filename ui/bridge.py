"""Turn the core's callbacks (turn events, microphone callbacks) into Qt signals delivered on the GUI thread.

The core calls `EventBridge.post(event)` from whichever thread produced the event (the session worker, the
pipeline's TTS and talking-head threads, the microphone thread). Emitting a signal from a thread other than
the receiver's makes Qt queue it, so every connected slot (`_on_<signal>`) runs on the GUI thread and may
touch widgets. The bridge itself does no work: one `isinstance` dispatch per event.

Needs PySide6 and assistant.events.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QObject, Signal

from assistant.errors import AssistantError
from assistant.events import (
    ConversationReset,
    Notice,
    ReplySentenceReady,
    SegmentReady,
    SpeechReady,
    StageFailed,
    TranscriptReady,
    TurnDone,
    TurnEvent,
    UtteranceCaptured,
    VideoReady,
)

log = logging.getLogger(__name__)

# Event class -> signal name. Order matters only for subclasses (none today); exact type lookup first.
_SIGNAL_OF: dict[type, str] = {
    UtteranceCaptured: "utterance_captured",
    TranscriptReady: "transcript_ready",
    ReplySentenceReady: "reply_sentence_ready",
    SpeechReady: "speech_ready",
    VideoReady: "video_ready",
    SegmentReady: "segment_ready",
    StageFailed: "stage_failed",
    Notice: "notice",
    ConversationReset: "conversation_reset",
    TurnDone: "turn_done",
}


class EventBridge(QObject):
    """One signal per core event type, plus the microphone's callbacks. Safe to call from any thread."""

    # Turn events (the payload is the frozen event dataclass itself).
    utterance_captured = Signal(object)  # UtteranceCaptured
    transcript_ready = Signal(object)  # TranscriptReady
    reply_sentence_ready = Signal(object)  # ReplySentenceReady
    speech_ready = Signal(object)  # SpeechReady
    video_ready = Signal(object)  # VideoReady
    segment_ready = Signal(object)  # SegmentReady
    stage_failed = Signal(object)  # StageFailed
    notice = Signal(object)  # Notice
    conversation_reset = Signal(object)  # ConversationReset
    turn_done = Signal(object)  # TurnDone

    # Microphone (LiveListener callbacks).
    # The float of an utterance or a pause: time.monotonic() at the end of speech, i.e. the last voiced frame when
    # the VAD stamped it (voice_ended_at), else when the event came; a turn's stage times count from it.
    mic_utterance = Signal(object, float)  # Utterance, time.monotonic() when speech ended
    mic_speech_started = Signal(object)  # assistant.audio.vad.SpeechStarted
    mic_speech_paused = Signal(object, float)  # assistant.audio.vad.SpeechPaused, time.monotonic() speech ended
    mic_speech_resumed = Signal(object)  # assistant.audio.vad.SpeechResumed
    mic_level = Signal(float)  # RMS dBFS of the latest frame
    mic_error = Signal(str)  # a DeviceError / AudioError message
    mic_notice = Signal(str)  # "Listening on ...", "Microphone back ..."

    def post(self, event: TurnEvent) -> None:
        """The core's `on_event` callback: emit the signal for this event type."""
        name = _SIGNAL_OF.get(type(event))
        if name is None:
            for cls, candidate in _SIGNAL_OF.items():
                if isinstance(event, cls):
                    name = candidate
                    break
        if name is None:
            log.warning("no signal for event %s; ignored", type(event).__name__)
            return
        getattr(self, name).emit(event)

    __call__ = post

    # ---- LiveListener callbacks (run on the microphone thread: emit and return) ----

    def on_mic_utterance(self, utterance: object) -> None:
        self.mic_utterance.emit(utterance, _speech_ended_at(utterance))

    def on_mic_speech_start(self, started: object) -> None:
        self.mic_speech_started.emit(started)

    def on_mic_speech_paused(self, paused: object) -> None:
        self.mic_speech_paused.emit(paused, _speech_ended_at(paused))

    def on_mic_speech_resumed(self, resumed: object) -> None:
        self.mic_speech_resumed.emit(resumed)

    def on_mic_level(self, dbfs: float) -> None:
        self.mic_level.emit(float(dbfs))

    def on_mic_error(self, error: AssistantError | Exception) -> None:
        self.mic_error.emit(str(error))

    def on_mic_notice(self, message: str) -> None:
        self.mic_notice.emit(str(message))


def _speech_ended_at(event: object) -> float:
    """When the speech of a VAD event ended on time.monotonic(): its last voiced frame, not when it was sure."""
    at = getattr(event, "voice_ended_at", None)
    return float(at) if at is not None else time.monotonic()
