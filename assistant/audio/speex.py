"""Speex's linear echo canceller (libspeexdsp's MDF filter), for what the recogniser hears of a barge-in.

AEC3 (`assistant.audio.echo`) decides whether the user speaks over the avatar; its echo suppressor, which makes
the cancelled signal quiet enough for that decision, also removes the user's weak sounds under the echo. The first
250-300 ms of an interrupting question overlap the avatar's voice until the reply stops, and there it took the
"H" and the "t" of "How tall is the Eiffel tower" (8-25 dB down): Whisper heard "I'll call with the Eiffel Tower"
in 5 of 5 runs of `assistant bench echo`. A linear canceller only subtracts its estimate of the echo and leaves
the rest alone; replayed over the same recorded sessions (`tap.npz`), its output gave every question's key words
(40 of 40 with the Piper voice at 40, 100 and 200 ms of room delay, against 31 of 40 from AEC3's output).

This module is a ctypes binding to the system's libspeexdsp (Debian `libspeexdsp1`, which PulseAudio and VLC
already pull in; Homebrew's `speexdsp`): the filter is Xiph's, nothing adaptive is written here, and nothing has
to be compiled at install time. Without the library `load_linear_canceller` returns None (logged) and the
recogniser hears AEC3's output as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

import numpy as np

log = logging.getLogger(__name__)

FRAME_MS = 10  # speex's frame: 160 samples at 16 kHz
FILTER_MS = 512  # the filter's reach: 8192 taps at 16 kHz. The echo trails the reference by the alignment margin
# (150 ms) plus the player's and the room's delay error; AEC3's delay estimator reaches ~500 ms, and so does this
SET_SAMPLING_RATE = 24  # SPEEX_ECHO_SET_SAMPLING_RATE (speex/speex_echo.h)
LIBRARY_NAMES = ("speexdsp", "libspeexdsp.so.1", "libspeexdsp-1")
INSTALL_HINT = "install libspeexdsp (Debian/Ubuntu: apt install libspeexdsp1; macOS: brew install speexdsp)"


class SpeexUnavailable(Exception):
    """libspeexdsp cannot be used here; the message says why and what to do."""


def _load_library() -> ctypes.CDLL:
    errors = []
    for name in LIBRARY_NAMES:
        path = ctypes.util.find_library(name) or name
        try:
            lib = ctypes.CDLL(path)
            break
        except OSError as e:
            errors.append(f"{path}: {e}")
    else:
        raise SpeexUnavailable(f"libspeexdsp was not found ({'; '.join(errors)}); {INSTALL_HINT}")
    lib.speex_echo_state_init.restype = ctypes.c_void_p
    lib.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_echo_state_destroy.restype = None
    lib.speex_echo_state_destroy.argtypes = [ctypes.c_void_p]
    lib.speex_echo_state_reset.restype = None
    lib.speex_echo_state_reset.argtypes = [ctypes.c_void_p]
    lib.speex_echo_ctl.restype = ctypes.c_int
    lib.speex_echo_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    int16_p = ctypes.POINTER(ctypes.c_int16)
    lib.speex_echo_cancellation.restype = None
    lib.speex_echo_cancellation.argtypes = [ctypes.c_void_p, int16_p, int16_p, int16_p]
    return lib


class LinearEchoCanceller:
    """Speex's MDF filter on a mono int16 stream: `process(mic, reference)` returns as many samples as it gets.

    It works on whole 10 ms frames; other chunk sizes are buffered, and from the first such chunk on the output
    trails the input by a frame less a sample (zeros there), always as one unbroken signal."""

    def __init__(self, rate_hz: int = 16000, filter_ms: int = FILTER_MS) -> None:
        if rate_hz % 100:
            raise SpeexUnavailable(f"speex's echo canceller needs a rate in whole 10 ms frames, not {rate_hz} Hz")
        self._lib = _load_library()
        self.rate_hz = rate_hz
        self.frame = rate_hz * FRAME_MS // 1000
        self.taps = rate_hz * filter_ms // 1000
        self._state = self._lib.speex_echo_state_init(self.frame, self.taps)
        if not self._state:
            raise SpeexUnavailable("speex_echo_state_init failed (out of memory?)")
        rate = ctypes.c_int(rate_hz)
        self._lib.speex_echo_ctl(self._state, SET_SAMPLING_RATE, ctypes.byref(rate))
        self._mic = np.zeros(0, np.int16)  # input not yet a whole frame
        self._ref = np.zeros(0, np.int16)
        self._out = np.zeros(0, np.int16)  # output not yet handed back

    def process(self, mic: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """`mic` and `reference`: (n,) int16, the reference aligned so that its echo comes after it."""
        asked = len(mic)
        if len(reference) != asked:
            raise ValueError(f"microphone and reference chunks differ in length ({asked} vs {len(reference)})")
        mic = np.concatenate([self._mic, mic.astype(np.int16, copy=False)])
        ref = np.concatenate([self._ref, reference.astype(np.int16, copy=False)])
        whole = len(mic) - len(mic) % self.frame
        out = np.empty(whole, np.int16)
        if whole:
            mic_w, ref_w = np.ascontiguousarray(mic[:whole]), np.ascontiguousarray(ref[:whole])
            int16_p = ctypes.POINTER(ctypes.c_int16)
            for i in range(0, whole, self.frame):
                self._lib.speex_echo_cancellation(
                    self._state,
                    mic_w[i:].ctypes.data_as(int16_p),
                    ref_w[i:].ctypes.data_as(int16_p),
                    out[i:].ctypes.data_as(int16_p),
                )
        self._mic, self._ref = mic[whole:].copy(), ref[whole:].copy()
        ready = np.concatenate([self._out, out]) if len(self._out) else out
        if len(ready) < asked:
            # The first chunk that is not whole frames: from here on the output trails the input by a frame less
            # a sample, which is as much as can ever be pending, so it never runs short again.
            ready = np.concatenate([np.zeros(self.frame - 1, np.int16), ready])
        self._out = ready[asked:].copy()
        return ready[:asked]

    def reset(self) -> None:
        """Forget the echo path (the reference was re-aimed: it has to be learnt again)."""
        self._lib.speex_echo_state_reset(self._state)

    def close(self) -> None:
        if self._state:
            self._lib.speex_echo_state_destroy(self._state)
            self._state = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def load_linear_canceller(rate_hz: int) -> LinearEchoCanceller | None:
    """A linear canceller, or None (logged) when libspeexdsp cannot be used here. Never raises."""
    try:
        return LinearEchoCanceller(rate_hz)
    except SpeexUnavailable as e:
        log.warning("no linear echo canceller for recognition (%s): a question started over the avatar's voice "
                    "may lose its first sounds", e)
    except Exception:  # noqa: BLE001 - a broken library must not take the app down
        log.exception("the linear echo canceller failed to start")
    return None
