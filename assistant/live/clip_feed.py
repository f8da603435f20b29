"""The one hand-off of speech into the live stream: a clip is prepared by the renderer when it makes frames ahead
(Wav2Lip), said once it may start, and reported unsaid when a cancel comes first.

The desktop app (`ui/live_avatar.py`) and `assistant stream` (`assistant/livestream/speaker.py`) both queue their
speech through a `ClipFeed`, so the stream speaks with the engine it names: a renderer with `prepare(key, samples,
rate, on_ready)` gets each clip first and releases its sound through `on_ready` when enough frames exist; any other
renderer (light, static) takes the sound at once. A cancel drops the clips still being prepared (each reported
through the stream's `on_event` as a `StreamSpeechFinished` with nothing played, like the clips the stream itself
drops), stops the renderer's work and fades out what the stream is saying. When a clip has finished, the renderer
forgets its frames (`finished`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from assistant.audio.io import load_audio
from assistant.live.stream import LiveStream, StreamSpeechFinished


class ClipFeed:
    """Queues speech into `stream`, through its renderer's preparation when it has one."""

    def __init__(self, stream: LiveStream, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self._clock = clock
        self._lock = threading.Lock()
        self._preparing: dict[Any, str] = {}  # clips the renderer makes frames for, not yet on the stream

    def say(self, key: Any, samples: np.ndarray, rate_hz: int, text: str = "") -> None:
        """Queue mono float audio as clip `key` (said right after what is queued before it)."""
        stream = self.stream
        prepare = getattr(stream.renderer, "prepare", None)
        if prepare is None:
            stream.say(samples, rate_hz, key, text)
            return
        with self._lock:
            self._preparing[key] = text

        def release() -> None:  # on the renderer's worker thread
            with self._lock:
                still_wanted = self._preparing.pop(key, None) is not None
            if still_wanted:
                stream.say(samples, rate_hz, key, text)

        prepare(key, samples, rate_hz, release)

    def say_file(self, key: Any, path: str | Path, text: str = "") -> None:
        rate = self.stream.settings.audio_rate_hz
        self.say(key, load_audio(path, rate), rate, text)

    def cancel(self) -> bool:
        """Drop what is being prepared (reported unsaid), stop the renderer's work, fade out the stream's speech.
        True when something was being said or prepared (the player then drops what it still holds)."""
        was_busy = self.busy
        renderer_cancel = getattr(self.stream.renderer, "cancel", None)
        if renderer_cancel is not None:
            renderer_cancel()
        with self._lock:
            unsaid, self._preparing = dict(self._preparing), {}
        for key, text in unsaid.items():
            self.stream.on_event(StreamSpeechFinished(-1, self._clock(), key, text, 0.0, 0.0, True))
        self.stream.cancel()
        return was_busy

    @property
    def busy(self) -> bool:
        """Something is being said or prepared."""
        with self._lock:
            preparing = bool(self._preparing)
        return preparing or self.stream.speaking

    def finished(self, key: Any) -> None:
        """Clip `key` has played (or was cut): the renderer may drop its frames."""
        forget = getattr(self.stream.renderer, "forget", None)
        if forget is not None:
            forget(key)
