"""The app's microphone as the config sets it up: the segmenter settings for a mode and the `LiveListener` with the
barge-in echo canceller, in one place for the window (`ui/microphone.py`), `assistant bench echo` and the tests.

Hands-free with barge-in: the canceller (`assistant.audio.echo.barge_in_setup`) runs on every microphone chunk
before the VAD and, while the avatar speaks, an utterance needs `audio.barge_in_min_speech_ms` of voiced audio to
start. Push-to-talk reuses the same segmenter with the key as the speech detector (`is_speech`) and no canceller.

Needs assistant.audio.capture (sounddevice when a real device is opened).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from assistant.audio.capture import EchoStage, LiveListener
from assistant.audio.vad import SpeechPaused, SpeechResumed, SpeechStarted, VadSettings
from assistant.errors import AssistantError
from assistant.events import Utterance

HANDS_FREE, PUSH_TO_TALK = "hands_free", "push_to_talk"
PTT_RELEASE_MS = 90  # silence after the key is released that ends a push-to-talk utterance (3 frames of 30 ms)


class MicrophoneEvents(Protocol):
    """Where the listener's thread reports (the window's bridge turns these into Qt signals; a benchmark records)."""

    def on_mic_utterance(self, utterance: Utterance) -> None: ...

    def on_mic_speech_start(self, started: SpeechStarted) -> None: ...

    def on_mic_speech_paused(self, paused: SpeechPaused) -> None: ...

    def on_mic_speech_resumed(self, resumed: SpeechResumed) -> None: ...

    def on_mic_level(self, dbfs: float) -> None: ...

    def on_mic_error(self, error: AssistantError | Exception) -> None: ...

    def on_mic_notice(self, message: str) -> None: ...


def vad_settings_for(audio: Any, mode: str) -> VadSettings:
    """The segmenter settings for a mode from the config's `audio` section: the user's VAD settings, with a short
    release for push-to-talk."""
    vad = VadSettings.from_config(audio)
    if mode == PUSH_TO_TALK:
        # The key release already says when speech ends: end quickly, keep no tail, no early start.
        return dataclasses.replace(vad, silence_ms=max(vad.frame_ms, PTT_RELEASE_MS), tail_ms=0, early_start_ms=0)
    return vad


def open_listener(
    audio: Any,
    vad: VadSettings,
    events: MicrophoneEvents,
    is_speech: Callable[[np.ndarray], bool] | None = None,
    echo: EchoStage | None = None,
    barge_in_onset_ms: int | None = None,
) -> LiveListener:
    """The app's `LiveListener` on `audio.input_device` (not started), reporting to `events`; `echo` and
    `barge_in_onset_ms` for hands-free barge-in (see `hands_free_listener`)."""
    return LiveListener(
        audio.input_device,
        vad,
        on_utterance=events.on_mic_utterance,
        on_speech_start=events.on_mic_speech_start,
        on_speech_paused=events.on_mic_speech_paused,
        on_speech_resumed=events.on_mic_speech_resumed,
        on_level=events.on_mic_level,
        on_error=events.on_mic_error,
        on_notice=events.on_mic_notice,
        is_speech=is_speech,
        echo=echo,
        barge_in_onset_ms=barge_in_onset_ms,
    )


def hands_free_listener(audio: Any, events: MicrophoneEvents, echo: EchoStage | None) -> LiveListener:
    """The hands-free listener as the window starts it: with `echo` (barge-in on), the canceller before the VAD
    and the longer onset while the avatar speaks; without, the plain VAD."""
    vad = vad_settings_for(audio, HANDS_FREE)
    if echo is None:
        return open_listener(audio, vad, events)
    return open_listener(audio, vad, events, echo=echo, barge_in_onset_ms=audio.barge_in_min_speech_ms)
