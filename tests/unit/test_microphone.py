"""The app's microphone as the config sets it up (assistant.audio.microphone): the window and `bench echo` both
build their listener here, so what one gets the other gets."""

from __future__ import annotations

import numpy as np

from assistant.audio.microphone import (
    HANDS_FREE,
    PTT_RELEASE_MS,
    PUSH_TO_TALK,
    hands_free_listener,
    open_listener,
    vad_settings_for,
)
from assistant.audio.vad import VadSettings
from assistant.config import AudioSettings


class Events:
    def __init__(self) -> None:
        self.got: list[tuple[str, object]] = []

    def __getattr__(self, name: str):
        if not name.startswith("on_mic_"):
            raise AttributeError(name)
        return lambda arg: self.got.append((name, arg))


class Echo:
    far_active = False
    for_asr = np.zeros(0, np.int16)

    def process(self, chunk: np.ndarray, captured_at: float) -> np.ndarray:
        return chunk

    def is_speech(self, frame: np.ndarray) -> bool:
        return False


def test_push_to_talk_ends_at_the_key_release_and_hands_free_keeps_the_users_vad() -> None:
    audio = AudioSettings(end_silence_ms=600, early_start_ms=300)
    assert vad_settings_for(audio, HANDS_FREE) == VadSettings.from_config(audio)
    ptt = vad_settings_for(audio, PUSH_TO_TALK)
    assert (ptt.silence_ms, ptt.tail_ms, ptt.early_start_ms) == (PTT_RELEASE_MS, 0, 0)


def test_hands_free_with_a_canceller_runs_it_before_the_vad_with_the_barge_in_onset() -> None:
    audio = AudioSettings(barge_in_min_speech_ms=210, input_device="mic 2")
    echo = Echo()
    listener = hands_free_listener(audio, Events(), echo)
    assert listener.echo is echo and listener._barge_in_onset_ms == 210
    assert listener._is_speech == echo.is_speech  # the canceller's guard decides what is speech
    assert listener.device == "mic 2" and listener.vad == vad_settings_for(audio, HANDS_FREE)
    plain = hands_free_listener(audio, Events(), None)
    assert plain.echo is None and plain._barge_in_onset_ms is None


def test_the_listener_reports_to_the_events_object() -> None:
    events = Events()
    listener = open_listener(AudioSettings(), VadSettings(), events)
    listener.on_level(-20.0)
    listener.on_notice("Listening on 'x'")
    listener.on_utterance("u")
    assert events.got == [("on_mic_level", -20.0), ("on_mic_notice", "Listening on 'x'"), ("on_mic_utterance", "u")]
