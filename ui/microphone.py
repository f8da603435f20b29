"""The window's microphone control: hands-free (VAD) or push-to-talk, mute, and the echo guard.

The capture itself (`assistant.audio.capture.LiveListener`) runs on its own thread and reports through the
bridge's `on_mic_*` callbacks. Push-to-talk reuses the same segmenter with the key as the speech detector:
while the key (or button) is held every frame counts as speech, so the utterance starts with the usual
pre-roll and ends a moment after release. Without echo cancellation the microphone would hear the avatar, so
in hands-free mode listening pauses while a reply plays (`set_speaking`); push-to-talk is unaffected. With an
echo canceller (`echo`, barge-in) hands-free capture runs it before the VAD and stays open while the avatar speaks.

Which listener a mode gets (the segmenter settings, the canceller) is the core's `assistant.audio.microphone`, shared
with `assistant bench echo`; this class decides when it runs.

Needs PySide6 and assistant.audio.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from PySide6.QtCore import QObject, Signal

from assistant.audio.microphone import HANDS_FREE, PUSH_TO_TALK, open_listener, vad_settings_for
from assistant.audio.vad import VadSettings
from assistant.config import Settings
from ui.bridge import EventBridge

log = logging.getLogger(__name__)

__all__ = [
    "HANDS_FREE", "PUSH_TO_TALK", "ListenerFactory", "ListenerLike", "MicrophoneControl", "default_listener_factory",
]  # fmt: skip


class ListenerLike(Protocol):
    def start(self) -> None: ...

    def stop(self, timeout_s: float = 5.0) -> None: ...

    def set_muted(self, muted: bool) -> None: ...


# (settings, vad, bridge, is_speech[, echo=, barge_in_onset_ms=]) -> listener; the keywords only with barge-in
ListenerFactory = Callable[..., ListenerLike]


def default_listener_factory(
    settings: Settings,
    vad: VadSettings,
    bridge: EventBridge,
    is_speech: Callable[[np.ndarray], bool] | None,
    echo: Any = None,
    barge_in_onset_ms: int | None = None,
) -> ListenerLike:
    """The core's listener (`assistant.audio.microphone`), reporting through the bridge."""
    return open_listener(settings.audio, vad, bridge, is_speech, echo, barge_in_onset_ms)


class MicrophoneControl(QObject):
    """Owns the LiveListener: starts, stops, rebuilds it; mute, mode and push-to-talk state (GUI thread)."""

    state_changed = Signal(str)  # a short description for the window ("listening", "muted", ...)

    def __init__(self, bridge: EventBridge, settings: Settings, factory: ListenerFactory | None) -> None:
        super().__init__()
        self._bridge = bridge
        self._settings = settings
        self._factory = factory
        self.listener: ListenerLike | None = None
        self.mode = settings.audio.mode
        self.user_muted = False
        self.speaking = False  # a reply is playing
        self._ptt_down = threading.Event()  # read by the listener thread for every frame
        self.echo: Any = None  # an assistant.audio.echo.EchoCanceller when hands-free barge-in is on
        self.barge_in_onset_ms: int | None = None

    @property
    def available(self) -> bool:
        return self._factory is not None

    @property
    def ptt_down(self) -> bool:
        return self._ptt_down.is_set()

    @property
    def effective_muted(self) -> bool:
        return self.user_muted or (self.mode == HANDS_FREE and self.speaking)

    def describe(self) -> str:
        if self.listener is None:
            return "microphone off"
        if self.user_muted:
            return "muted"
        if self.mode == PUSH_TO_TALK:
            return "recording (push-to-talk)" if self.ptt_down else "hold Space or the button to talk"
        return "paused while the avatar speaks" if self.speaking else "listening"

    # ---- lifecycle ----
    def start(self) -> None:
        if self._factory is None or self.listener is not None:
            return
        is_speech = self._ptt_is_speech if self.mode == PUSH_TO_TALK else None
        try:
            args = (self._settings, vad_settings_for(self._settings.audio, self.mode), self._bridge, is_speech)
            if self.echo is not None and self.mode == HANDS_FREE:
                self.listener = self._factory(*args, echo=self.echo, barge_in_onset_ms=self.barge_in_onset_ms)
            else:
                self.listener = self._factory(*args)
        except Exception as e:
            log.exception("cannot create the microphone listener")
            self._bridge.on_mic_error(e)
            return
        self._apply_mute()
        self.listener.start()
        self.state_changed.emit(self.describe())

    def stop(self) -> None:
        """Stop capturing and release the device (joins the listener thread)."""
        listener, self.listener = self.listener, None
        self._ptt_down.clear()
        if listener is not None:
            listener.stop()
        self.state_changed.emit(self.describe())

    def restart(self, settings: Settings | None = None) -> None:
        """Rebuild the listener (another device, other VAD settings, another mode)."""
        if settings is not None:
            self._settings = settings
            self.mode = settings.audio.mode
        was_running = self.listener is not None
        self.stop()
        if was_running or settings is not None:
            self.start()

    # ---- controls ----
    def set_mode(self, mode: str) -> None:
        if mode not in (HANDS_FREE, PUSH_TO_TALK):
            raise ValueError(f"unknown microphone mode {mode!r}: use {HANDS_FREE} or {PUSH_TO_TALK}")
        if mode == self.mode:
            return
        self.mode = mode
        if self.listener is not None:
            self.restart()
        self.state_changed.emit(self.describe())

    def set_user_muted(self, muted: bool) -> None:
        self.user_muted = bool(muted)
        self._apply_mute()
        self.state_changed.emit(self.describe())

    def set_speaking(self, speaking: bool) -> None:
        if speaking == self.speaking:
            return
        self.speaking = speaking
        self._apply_mute()
        self.state_changed.emit(self.describe())

    def ptt_press(self) -> None:
        if self.mode != PUSH_TO_TALK:
            return
        self._ptt_down.set()
        self.state_changed.emit(self.describe())

    def ptt_release(self) -> None:
        if not self._ptt_down.is_set():
            return
        self._ptt_down.clear()
        self.state_changed.emit(self.describe())

    # ---- internals ----
    def _ptt_is_speech(self, _frame: np.ndarray) -> bool:
        return self._ptt_down.is_set()  # called on the listener thread for every frame

    def _apply_mute(self) -> None:
        if self.listener is not None:
            self.listener.set_muted(self.effective_muted)
