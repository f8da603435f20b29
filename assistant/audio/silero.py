"""Silero VAD on a 16 kHz stream: the probability that the latest 32 ms are speech.

The barge-in guard (`assistant.audio.echo`) asks it as well as webrtcvad while the avatar speaks. webrtcvad takes
any loud broadband sound for speech: replayed over recorded replies of `assistant bench echo`, a 150 ms cough-like
burst at -12 dBFS interrupted the avatar 55 times in 60 and a knock 20 in 60 with the 180 ms onset; Silero's
network (the `silero-vad` package's ONNX model, run by onnxruntime through the package's own wrapper) let none of
them through while it heard every interrupting question. It adds ~0.13 ms of CPU per 32 ms window.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

RATE_HZ = 16000
WINDOW = 512  # samples the model takes at 16 kHz (32 ms)


class SileroUnavailable(Exception):
    """The Silero model cannot run here; the message says why and what to do."""


class SileroSpeech:
    """Feed it every frame of the stream in order (`push`); `probability` is the latest window's."""

    def __init__(self, rate_hz: int = RATE_HZ) -> None:
        if rate_hz != RATE_HZ:
            raise SileroUnavailable(f"Silero VAD here runs at {RATE_HZ} Hz, not {rate_hz} Hz")
        try:
            import torch
            from silero_vad import load_silero_vad
        except ImportError as e:
            raise SileroUnavailable(
                f"the silero-vad package is not installed ({e}); install it with: .venv/bin/pip install silero-vad"
            ) from e
        try:
            self._model: Any = load_silero_vad(onnx=True)
        except Exception as e:  # noqa: BLE001 - a broken model file or runtime: say so, the caller goes on without
            raise SileroUnavailable(f"the Silero VAD model failed to load ({e!r}); reinstall silero-vad") from e
        self._torch = torch
        self._pending = np.zeros(0, np.float32)
        self.probability = 0.0

    def push(self, frame: np.ndarray) -> float:
        """Add int16 samples; runs the model on each whole 32 ms window and returns the latest probability."""
        x = frame.astype(np.float32) / 32768.0
        pending = np.concatenate([self._pending, x]) if len(self._pending) else x
        n = len(pending) - len(pending) % WINDOW
        for i in range(0, n, WINDOW):
            window = self._torch.from_numpy(np.ascontiguousarray(pending[i : i + WINDOW]))
            self.probability = float(self._model(window, RATE_HZ))
        self._pending = pending[n:].copy()
        return self.probability

    def reset(self) -> None:
        self._model.reset_states()
        self._pending = np.zeros(0, np.float32)
        self.probability = 0.0


def load_silero(rate_hz: int = RATE_HZ) -> SileroSpeech | None:
    """A Silero VAD, or None (logged) when it cannot run here."""
    try:
        return SileroSpeech(rate_hz)
    except SileroUnavailable as e:
        log.warning("no Silero VAD for the barge-in guard: %s; webrtcvad alone decides (noises interrupt more)", e)
        return None
