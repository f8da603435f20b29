"""Acoustic echo cancellation for hands-free barge-in: remove the avatar's own voice from the microphone.

The reference is the avatar's sound as played. With the direct player (`assistant.live.playout`) `EchoReference`
listens to the player: every block handed to the sound device, silence included, stamped with the time.monotonic()
when it is heard (the device's reported delay). That is one unbroken signal on the sound card's clock, so whatever
the player does to its queue (priming, trimming silence after a hiccup, dropping it on a cancel) the echo stays at the
same lag behind it: with the stream's release times instead, each such change moved the echo against the reference
and AEC3 lost it for a moment (tests/unit/test_echo.py: after a stall the player catches up from, 38 dB of echo
removed with the player's sound as the reference, 2 dB with the stream's).
`EchoCanceller.process(chunk, captured_at)` runs on the microphone thread, at the microphone's rate, before
voice-activity detection: it takes the reference heard `HEARD_ALIGN_MS` before the chunk was captured and hands both
to WebRTC's AEC3 (the `pywebrtc-audio` package), which removes the echo and estimates the room's delay itself.

With VLC (`live.player: vlc`) the reference is the stream's audio as its clock releases it (a `FrameSink`), heard
`player_delay_ms` later (the encoder, VLC's input buffer, the sound server: 250-420 ms), then the room adds its own
path. AEC3 only cancels echo that comes *after* its reference, and its delay estimator finds any lag from about 10
to 500 ms, so the reference is taken `align_ms` = the configured delay (`audio.echo_delay_ms`) minus a margin early
(but never less than MIN_ALIGN_MS after it was due, so the stream's tick has written it).

Either way the reference is read as one unbroken signal, each chunk at the microphone's own sample clock (fitted to
its earliest stamps, so a held-up microphone thread does not move it) and never re-aimed for a drift of the clocks
(the echo drifts with the microphone). Every jump of the reference costs AEC3 a re-convergence, and that is where the
residual echo that interrupted the avatar came from. Drift is followed only between replies (`REAIM_MS`,
`REAIM_QUIET_S`), with a fresh AEC3.

Barge-in guard (`is_speech`): a frame counts as the user's speech only if webrtcvad hears speech in AEC3's
output and, while the avatar speaks (or its echo may still be arriving), Silero VAD hears speech too (webrtcvad alone
takes coughs and knocks for speech, see `assistant.audio.silero`), the louder of the two cancelled levels is within
`residual_margin_db` of the raw microphone level (a user speaking dominates the microphone; residual echo is 20-40 dB
below it) and above a floor, and not just after the machine stalled (`STALL_MS`, `STALL_HOLD_S`).
Silero listens to what the recogniser hears (`for_asr`, below; `asr_speech_threshold`), not to AEC3's output:
AEC3's suppressor shapes the first syllables of a question under the avatar's voice out of speech (recorded in bench
echo, 40 ms, -3 dB: Silero's onset came 109-855 ms after the question's first sound on AEC3's output, 26-176 ms on
the linear canceller's). But where the linear canceller has not learnt the room yet (a session's first reply) its
residual echo sounds like speech to Silero, and a cough on top of it read 0.6-0.9 and interrupted the avatar (2 of 3
first replies); so its verdict counts only while the echo alone did not reach `speech_threshold` in the last
`ECHO_SPEECH_FRAMES` echo-only frames, and Silero on AEC3's output decides otherwise. Replayed over the chunks of ten
recorded sessions (rooms of 40-250 ms and first replies: 86 questions, 25 replies with two coughs and a knock each),
the question's first sound -> the guard's start: 255 / 945 ms (median / max) with Silero on AEC3's output alone and
a 120 ms onset, 200 / 455 ms with this and 90 ms; no false start with either.

What the recogniser hears (`for_asr`): AEC3's echo suppressor also removes the user's weak sounds under the
avatar's voice (the first 250-300 ms of an interrupting question, until the reply stops), so the utterance is cut
from a linear canceller's output instead (speex's, `assistant.audio.speex`, fed the same reference, read as its own
unbroken signal: `LINEAR_REAIM_MS`), as long as that one is cancelling the echo (`LINEAR_MIN_ERLE_DB` over the
recent echo-only frames); otherwise, and without libspeexdsp, from AEC3's.

Needs numpy, soxr and webrtcvad; `pywebrtc-audio` is optional: without it `load_echo_canceller` says why and the
app stays half-duplex. Without `silero-vad` the guard is webrtcvad's alone (logged).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr
import webrtcvad

from assistant.audio.capture import SILENCE_DBFS, rms_dbfs
from assistant.audio.silero import SileroSpeech, load_silero
from assistant.audio.speex import LinearEchoCanceller, load_linear_canceller

log = logging.getLogger(__name__)

AEC_RATE_HZ = 16000  # the microphone's default rate (audio.sample_rate_hz); AEC3 also runs at 32 and 48 kHz
STREAM_RATE_HZ = 48000  # the live stream's audio rate
REFERENCE_KEEP_S = 3.0  # reference history kept: the longest delay (player + room + margin) with room to spare
ALIGN_MARGIN_MS = 150.0  # the reference leads the echo by at least this: AEC3 cancels nothing of an echo that
# comes before its reference (bench echo at 40 ms with a 60 ms margin: ERLE 2.5 dB), and finds leads up to ~500 ms
MIN_ALIGN_MS = 80.0  # the reference is read at least this long after it was due: the stream writes it one 40 ms
# frame per tick, a tick may start late, and a read past what was written hands AEC3 zeros in the middle of the
# avatar's voice (bench echo with the reference read at capture time: 43% of the voiced chunks had such holes,
# ERLE 16 dB and 4 false barge-ins in 6 replies on a loaded machine)
RESYNC_MS = 500.0  # the reference is read as one unbroken signal unless the clocks put it this far off (a
# restarted stream, a long stall). Not less: the clocks do drift apart (the microphone's sample clock ran 100 ppm
# fast against time.monotonic() in bench echo), but the echo drifts with the microphone (speaker and microphone
# share the sound server's clock), so the continuous read kept the echo at the same lag for 8 minutes while the
# clock estimate wandered 58 ms; following that estimate (a 30 ms jump mid-speech, a 58 ms one in a pause, or
# one-sample slips) each time made AEC3 lose the echo and interrupt the avatar
REAIM_MS = 30.0  # ... and follows the drift only between replies: once the read is this far from where the
# clocks put it and the avatar has been silent for REAIM_QUIET_S, it is re-aimed and AEC3 starts afresh (reset).
# A converged AEC3 that is handed a shifted reference keeps its old filter and lost the echo at the next reply's
# start (the false barge-ins above); a fresh one converges within the first words, as at every session's start.
# Without this, a microphone clock 100 ppm fast brings the read to what the stream has written in ~15 minutes,
# and one 100 ppm slow moves the echo out of AEC3's reach (~500 ms) in about an hour.
REAIM_QUIET_S = 1.0  # the reference silent (no far-end window active) this long, on the microphone's clock
STALL_MS = 80.0  # a microphone chunk or a stream tick this late: the machine stalled (a loaded CPU) ...
STALL_HOLD_S = 0.6  # ... and for this long after it no frame counts as the user's speech while the avatar speaks.
# A stall shifts the echo against its reference (the player runs dry and resumes later, or the capture catches
# up), and AEC3 needs a few hundred ms to find the echo again: in bench echo on a 2-core machine at load 4.5, a
# 200 ms stall of the microphone thread let the echo through at -30 dBFS (raw -28) for 300 ms, and the guard took
# it for the user (1 false barge-in in 20 replies). A user who starts speaking inside the hold is heard at its end,
# pre-roll included.
MIC_CLOCK_WINDOW_S = 5.0  # the microphone's sample clock is fitted to the earliest stamps of this long
MIC_GAP_S = 0.5  # stamps this much later than the sample clock: chunks were not handed over (muted); start again
ECHO_SPEECH_FRAMES = 10  # Silero's verdict on the recogniser's signal counts while none of its last this many
# echo-only frames (300 ms of the avatar alone) reached speech_threshold (see the docstring)
FAR_ACTIVE_DBFS = -50.0  # reference louder than this in the window around the aligned time: the avatar speaks
FAR_BACK_S = 0.5  # the window reaches this far back from the aligned read: the echo in a chunk is of reference read
# up to this long before (the room's delay, the lag AEC3 finds). It reached forward instead (into what was not
# written yet: zeros), so a room over ~120 ms still echoed the end of a sentence when the guard already took the
# avatar for silent, and webrtcvad alone started an utterance on it (bench echo, 250 ms room: a reply stopped 0.26 s
# before its question)
FAR_AHEAD_S = 0.1  # ... and this far ahead (what the player has already handed over: a room shorter than the read)
LINEAR_MIN_ERLE_DB = 6.0  # the recogniser hears the linear canceller only while it removes at least this much
# echo (a fresh or lost filter passes the avatar's voice through; AEC3's output is then the better of the two) ...
LINEAR_ERLE_DECAY = 0.99  # ... measured over the echo-only frames of the last few seconds (30 ms frames: ~3 s)
LINEAR_MIN_FRAMES = 30  # ... and at least this many of them since it started (or was reset): ~1 s of echo
LINEAR_REAIM_MS = 120.0  # the linear canceller reads its own unbroken reference, not re-aimed with AEC3's: an
# adaptive filter follows a slow drift of the echo by itself, while a reset costs it 5-10 s of echo to learn the
# path again (the recogniser hears AEC3 meanwhile: in bench echo at 200 ms the one question that lost its key
# words came 2.5 s into the first reply after a re-aim). It follows AEC3's read, with a reset, only once the two
# are this far apart, between replies (REAIM_QUIET_S), or at once for what makes AEC3's jump (RESYNC_MS, unwritten
# reference). 100 ppm of drift takes 20 minutes to get there; the filter (512 ms) holds the echo that long.
HEARD_ALIGN_MS = 20.0  # a reference stamped when it is heard (the direct player's, on the sound card's clock) is
# read this long before the microphone chunk's capture. The echo then trails what AEC3 is handed by the room's delay
# minus this (plus the microphone's stamps' own lateness, ~20 ms in bench echo's room): more, and a short room's echo
# comes before its reference (60 ms: a 40 ms room's echo trailed the read by only ~3 ms, AEC3 let it through now
# and then and 5 of 6 replies stopped by themselves; 20 ms: none of 8); less, and the read reaches past what the
# player has handed over (the device asks ~30 ms ahead; the resampler hands its output out in bursts of ~20 ms)
REFERENCE_WAIT_MS = 30.0  # the unbroken read of the player's sound may reach a few ms past what the player has
# handed over (its blocks come in bursts): the microphone thread waits up to this long for them rather than jump
# the read back to what is there. Each such jump (18 ms back, a few times an hour) cost AEC3 and the linear canceller
# seconds of re-convergence: in bench echo's 40 ms / -3 dB room one reply then stopped by itself 2.5 s into it, and
# a question 3 s after one was not heard at all. A longer shortfall is a stall: the read jumps as before.
HEARD_FIT_BLOCKS = 300  # the player's blocks (10 ms each) whose reported times fit its sample clock: 3 s ...
HEARD_FIT_MIN_BLOCKS = 20  # ... and at least this many before a gap is looked for
HEARD_GAP_MS = 20.0  # a block heard this much later than the fitted clock says came after silence the device played
HEARD_GAP_MAX_S = 0.5  # filled in steps of at most this (a longer one takes a few blocks)
INSTALL_HINT = "install it with: .venv/bin/pip install pywebrtc-audio"


@dataclass(frozen=True)
class EchoSettings:
    sample_rate_hz: int = AEC_RATE_HZ
    delay_ms: float = 250.0  # the stream's playback delay (stream clock -> heard), from `assistant bench live`
    residual_margin_db: float = 12.0  # while the avatar speaks, a voiced frame must be this close to the raw level
    floor_dbfs: float = -55.0  # and louder than this
    vad_aggressiveness: int = 3
    speech_threshold: float = 0.5  # and Silero VAD's speech probability on AEC3's output at least this (0: no
    # Silero, webrtcvad alone), or ...
    asr_speech_threshold: float = 0.7  # ... on the recogniser's signal at least this (not 0.5: a cough over residual
    # echo read 0.55-0.75 there; the questions' onsets read 0.8-1.0)

    @property
    def align_ms(self) -> float:
        return max(MIN_ALIGN_MS, self.delay_ms - ALIGN_MARGIN_MS)


class EchoUnavailable(Exception):
    """No echo canceller can run here; the message says why and what to do."""


def _import_aec() -> Any:
    try:
        from pywebrtc_audio import EchoCanceller as Aec3
    except ImportError as e:
        raise EchoUnavailable(f"the pywebrtc-audio package is not installed ({e}); {INSTALL_HINT}") from e
    return Aec3


class EchoReference:
    """A `FrameSink` of the live stream: keeps the last seconds of its audio at 16 kHz, on time.monotonic().

    Each write is anchored at the time it arrives (the stream's clock releases one frame's audio per tick and
    plays it in real time from there), so sample positions map to times through the nearest earlier anchor."""

    def __init__(
        self, rate_hz: int = AEC_RATE_HZ, clock: Callable[[], float] = time.monotonic, stream_rate_hz: int = STREAM_RATE_HZ
    ) -> None:
        self.rate_hz = rate_hz
        self._clock = clock
        self._resampler = soxr.ResampleStream(stream_rate_hz, rate_hz, 1, dtype="float32")
        self._lock = threading.Lock()
        keep = int(REFERENCE_KEEP_S * rate_hz)
        self._buf = np.zeros(keep, np.float32)  # a ring: sample p lives at p % keep
        self._written = 0  # samples written since the start
        self._anchors: deque[tuple[float, int]] = deque(maxlen=50)  # (time.monotonic(), first sample): 2 s
        self._heard_offsets: deque[float] = deque(maxlen=HEARD_FIT_BLOCKS)  # first - heard_at * rate, per block
        self._stream_rate = stream_rate_hz
        self._taken = 0  # samples taken in, at the stream's rate
        self._queued: deque[tuple[np.ndarray, float]] = deque()  # the player's blocks not taken in yet
        self.gaps = 0  # silences the device played between the player's blocks, put into the reference
        self.stalled_at: float | None = None  # time.monotonic() of the last write that came STALL_MS late
        self.stalls = 0

    def write(self, yuv_i420: np.ndarray, audio_s16: np.ndarray) -> None:
        """A stream tick's audio, released now (the `FrameSink` side)."""
        self._append(audio_s16, self._clock())

    def played(self, audio_s16: np.ndarray, heard_at: float) -> None:
        """A block the player handed to the sound device, heard from `heard_at` on (an `AudioPlayout` listener).

        The blocks follow each other on the device's sample clock, fitted as the median of the last blocks' offsets
        (HEARD_FIT_BLOCKS; the reported times scatter a little both ways). A block heard later than that clock says
        comes after silence the device played itself (an underrun in the sound server, a loaded machine): that
        silence goes into the reference too, so it stays what the speaker played and the echo stays at the same lag
        behind it (AEC3 and the linear filter need no re-aim and no new convergence).

        Called on the device's callback thread, it only queues the block (a deque's append): the reader's thread
        takes the queued blocks in before each read, so the sound device's callback stays as short as it was."""
        self._queued.append((audio_s16, heard_at))

    def _take_in(self) -> None:
        """The player's queued blocks into the reference (the reader's thread)."""
        while self._queued:
            self._take_block(*self._queued.popleft())

    def _take_block(self, audio_s16: np.ndarray, heard_at: float) -> None:
        gap_s = self._gap_s(heard_at)
        if gap_s > 0.0:
            self.gaps += 1
            log.debug("the device played %.0f ms of silence of its own: into the reference", gap_s * 1000)
            self._append(np.zeros(int(round(gap_s * self._stream_rate)), np.int16), heard_at - gap_s, False)
        with self._lock:  # on the player's samples (the resampler hands out its output in uneven bursts)
            self._heard_offsets.append(self._taken * self.rate_hz / self._stream_rate - heard_at * self.rate_hz)
        self._append(audio_s16, heard_at, False)

    def _gap_s(self, heard_at: float) -> float:
        """How much silence the device played before a block heard at `heard_at` (0: none, or too few blocks yet)."""
        with self._lock:
            if len(self._heard_offsets) < HEARD_FIT_MIN_BLOCKS:
                return 0.0
            due = (self._taken * self.rate_hz / self._stream_rate - float(np.median(self._heard_offsets))) / self.rate_hz
        late = heard_at - due
        return min(late, HEARD_GAP_MAX_S) if late > HEARD_GAP_MS / 1000.0 else 0.0

    def _append(self, audio_s16: np.ndarray, at: float, check_stall: bool = True) -> None:
        x = self._resampler.resample_chunk(audio_s16.astype(np.float32) / 32768.0)  # (n,) float32 at rate_hz
        with self._lock:
            self._taken += len(audio_s16)
            if check_stall and self._anchors:  # when this write was due on the clock fitted so far
                due = (self._written - self._offset()) / self.rate_hz
                if at - due > STALL_MS / 1000.0:
                    self.stalled_at = at
                    self.stalls += 1
            self._anchors.append((at, self._written))
            keep = len(self._buf)
            for i in range(0, len(x), keep):
                part = x[i : i + keep]
                start = (self._written + i) % keep
                end = start + len(part)
                if end <= keep:
                    self._buf[start:end] = part
                else:
                    self._buf[start:] = part[: keep - start]
                    self._buf[: end - keep] = part[keep - start :]
            self._written += len(x)

    def close(self) -> None:
        pass

    @property
    def written(self) -> int:
        """Samples written since the start."""
        self._take_in()
        with self._lock:
            return self._written

    def position_at(self, t: float) -> int | None:
        """The sample position released (the stream's writes) or heard (the player's blocks) at time.monotonic()
        `t`; None before the first write.

        A stream's write arrives when the clock thread gets to it, never before its audio is due, so the earliest of
        the recent anchors (largest `first - rate * at`) is the best estimate of the stream's sample clock; the
        player's blocks are fitted by their median (`played`)."""
        self._take_in()
        with self._lock:
            if not self._anchors:
                return None
            offset = self._offset()
        return int(round(offset + t * self.rate_hz))

    def _offset(self) -> float:
        """Sample position minus time * rate (lock held): the player's fitted clock, or the stream's earliest write."""
        if self._heard_offsets:
            return float(np.median(self._heard_offsets))
        return max(first - at * self.rate_hz for at, first in self._anchors)

    def samples(self, start: int, n: int) -> np.ndarray:
        """Samples [start, start + n): zeros for what is not (or no longer, or not yet) there."""
        self._take_in()
        out = np.zeros(n, np.float32)
        with self._lock:
            keep = len(self._buf)
            lo, hi = max(start, self._written - keep, 0), min(start + n, self._written)
            if hi > lo:
                idx = np.arange(lo, hi) % keep
                out[lo - start : hi - start] = self._buf[idx]
        return out


class EchoCanceller:
    """AEC3 between the microphone and the VAD. `process` on the microphone thread; `reference` on the stream."""

    def __init__(self, settings: EchoSettings | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = s = settings or EchoSettings()
        if s.sample_rate_hz not in (16000, 32000, 48000):
            raise EchoUnavailable(f"AEC3 runs at 16, 32 or 48 kHz, not {s.sample_rate_hz} Hz")
        Aec3 = _import_aec()
        # At the microphone's own rate; stream delay 0: the reference is pre-aligned and AEC3 finds the rest.
        self._aec = Aec3(s.sample_rate_hz, 1, 0)
        self.reference = EchoReference(s.sample_rate_hz, clock)
        self._vad = webrtcvad.Vad(s.vad_aggressiveness)
        # Silero on the recogniser's signal and on AEC3's output (see the docstring)
        self._silero: SileroSpeech | None = load_silero(s.sample_rate_hz) if s.speech_threshold > 0 else None
        self._silero_aec: SileroSpeech | None = load_silero(s.sample_rate_hz) if self._silero is not None else None
        self._echo_speech: deque[float] = deque(maxlen=ECHO_SPEECH_FRAMES)  # the first's verdicts on the echo alone
        self._linear: LinearEchoCanceller | None = load_linear_canceller(s.sample_rate_hz)
        # AEC3's output trails its input (128 samples at 16 kHz); the linear output is held back as much, so the
        # recogniser's signal stays one unbroken signal when it changes from one canceller to the other
        self._linear_hold = np.zeros(_output_lag(Aec3, s.sample_rate_hz) if self._linear else 0, np.int16)
        self.for_asr = np.zeros(0, np.int16)  # the last chunk as the recogniser should hear it (see the docstring)
        self.asr_dbfs = SILENCE_DBFS  # its level
        self.speech_probability = 0.0  # Silero's, on the recogniser's signal (1.0 without Silero) ...
        self.aec_speech_probability = 0.0  # ... and on AEC3's output
        self.linear_dbfs = SILENCE_DBFS
        self._linear_in = 0.0  # decayed echo-only power before and after the linear canceller (LINEAR_ERLE_DECAY)
        self._linear_out = 0.0
        self._linear_frames = 0  # echo-only frames measured since the linear canceller started or was reset
        self._linear_pos: int | None = None  # the next reference sample to hand to it (LINEAR_REAIM_MS)
        self.linear_reaims = 0
        self._source: Any = None  # the stream or the player whose sound is the reference
        self._heard_time = False  # the reference is stamped when it is heard (a player), not when released
        self._on_played = self.reference.played  # one bound method: the player's listener list finds it again
        self._read_pos: int | None = None  # the next reference sample to hand to AEC3
        self._mic_samples = 0  # microphone samples processed
        self._mic_bounds: deque[tuple[float, float]] = deque()  # (stamp, latest capture time of sample 0)
        # What the last processed chunk was like, for the guard (the listener pushes one chunk = one VAD frame).
        self.far_active = False
        self.far_dbfs = SILENCE_DBFS
        self.last_far = np.zeros(0, np.float32)
        self.reference_late_chunks = 0  # chunks whose aligned reference was not written yet (read earlier)
        self.reaims = 0  # re-aims for clock drift between replies (each with a fresh AEC3)
        self._quiet_samples = 0  # microphone samples since the far-end window was last active
        self._hold_samples = 0  # microphone samples left in a hold after a stall (no user speech while it lasts)
        self._seen_stall: float | None = None  # the reference's last stall already turned into a hold
        self.stall_holds = 0
        self.raw_dbfs = SILENCE_DBFS
        self.out_dbfs = SILENCE_DBFS
        # Totals while the avatar spoke and the guard heard no user: echo power in and out (ERLE).
        self.echo_in_energy = 0.0
        self.echo_out_energy = 0.0

    # ---- the avatar's side ----
    def attach(self, stream: Any, player: Any = None) -> None:
        """Tap what the avatar plays (again after the window rebuilt its stream): with `player` (the direct player's
        `AudioPlayout`) its sound as the device plays it, stamped when it is heard; else `stream`'s audio as its clock
        releases it, heard `settings.delay_ms` later (VLC)."""
        source = stream if player is None else player
        if source is self._source:
            return
        if self._source is not None:
            self._detach(self._source)
        self._source, self._heard_time = source, player is not None
        if player is not None:
            player.add_listener(self._on_played)
        elif stream is not None:
            stream.add_sink(self.reference)

    def _detach(self, source: Any) -> None:
        if self._heard_time:
            source.remove_listener(self._on_played)
        else:
            source.remove_sink(self.reference)

    @property
    def align_ms(self) -> float:
        """How long before a chunk's capture the reference is read (see HEARD_ALIGN_MS and EchoSettings.align_ms)."""
        return HEARD_ALIGN_MS if self._heard_time else self.settings.align_ms

    # ---- the microphone side ----
    def process(self, chunk: np.ndarray, captured_at: float) -> np.ndarray:
        """Cancel the echo in int16 mono `chunk` at `settings.sample_rate_hz`, captured by `captured_at`."""
        rate = self.settings.sample_rate_hz
        x = chunk.astype(np.float32) / 32768.0
        n = len(x)
        if n == 0:
            return chunk
        mic_t = self._mic_time(n, captured_at)
        self._note_stall(captured_at - mic_t, n)
        target = self.reference.position_at(mic_t - n / rate - self.align_ms / 1000.0)
        pos, written = self._read_position(target, n)
        self.last_read = (target, pos, written)  # where it was read, for tests
        far = np.zeros(n, np.float32) if pos is None else self.reference.samples(pos, n)
        self._judge_far(pos, n)
        self.last_far = far  # the aligned reference handed to AEC3 with this chunk (float32 in [-1, 1])
        y = self._aec.process(x, far)
        self.raw_dbfs = rms_dbfs(chunk)
        out = (np.clip(y, -1.0, 1.0) * 32767.0).round().astype(np.int16)
        self.out_dbfs = rms_dbfs(out)
        self.for_asr = out
        if self._linear is not None:
            self._cancel_linearly(chunk, far, pos, written)
        self._hear(out, self.for_asr)
        return out

    def _note_stall(self, late_s: float, n: int) -> None:
        """A microphone chunk `late_s` late, or a new stall of the stream, starts a hold (STALL_MS, STALL_HOLD_S)."""
        stream_stall = self.reference.stalled_at
        if late_s > STALL_MS / 1000.0 or (stream_stall is not None and stream_stall != self._seen_stall):
            if self._hold_samples == 0:
                log.debug("barge-in held %.1f s: microphone chunk %.0f ms late, stream stall %s", STALL_HOLD_S,
                          late_s * 1000, stream_stall != self._seen_stall)  # fmt: skip
            self._seen_stall = stream_stall
            self._hold_samples = int(STALL_HOLD_S * self.settings.sample_rate_hz)
            self.stall_holds += 1
        else:
            self._hold_samples = max(0, self._hold_samples - n)

    def _read_position(self, target: int | None, n: int) -> tuple[int | None, int]:
        """Where this chunk's reference is read (None: nothing written yet) and how much is written.

        The reference is read as one unbroken signal (AEC3 re-converges after every jump); it jumps to `target`
        only when the clocks put it far off (RESYNC_MS) or the reference is not written that far, and follows a
        drift of the clocks between replies (REAIM_MS)."""
        rate = self.settings.sample_rate_hz
        written = 0
        if target is not None:
            # Never past what the stream has written (a tick later than MIN_ALIGN_MS): an earlier reference is
            # only a longer lead, which AEC3 finds; a missing one is echo it cannot cancel.
            written = self._written_for(n)
            if target + n > written:
                target = written - n
                self.reference_late_chunks += 1
        read = self._read_pos
        if target is None:
            pos = None
        elif read is None or abs(target - read) > RESYNC_MS * rate / 1000 or read + n > written:
            if read is not None:
                log.debug("echo reference read jumped by %.0f ms", (target - read) / rate * 1000)
            pos = target
        elif abs(target - read) > REAIM_MS * rate / 1000 and self._quiet_samples >= REAIM_QUIET_S * rate:
            pos = target  # the clocks drifted apart: follow them while the avatar is silent, with a fresh AEC3
            self._aec.reset()
            self.reaims += 1
            log.info("echo reference re-aimed by %.0f ms between replies (clock drift)", (target - read) / rate * 1000)
        else:
            pos = read
        self._read_pos = None if pos is None else pos + n
        return pos, written

    def _judge_far(self, pos: int | None, n: int) -> None:
        """Whether the avatar's echo may be in this chunk: the reference read around `pos` (FAR_BACK_S, FAR_AHEAD_S)."""
        rate = self.settings.sample_rate_hz
        back = int(FAR_BACK_S * rate)
        around = (
            np.zeros(1, np.float32) if pos is None else self.reference.samples(pos - back, back + int(FAR_AHEAD_S * rate))
        )
        self.far_dbfs = rms_dbfs((around * 32767).astype(np.int16))
        self.far_active = self.far_dbfs > FAR_ACTIVE_DBFS
        self._quiet_samples = 0 if self.far_active else self._quiet_samples + n

    def _cancel_linearly(self, chunk: np.ndarray, far: np.ndarray, pos: int | None, written: int) -> None:
        """The linear canceller on the same chunk; the recogniser hears it while it cancels (LINEAR_MIN_ERLE_DB)."""
        assert self._linear is not None
        n = len(chunk)
        lin_far = far if pos is None else self._linear_reference(pos, n, written, far)
        lin = self._linear.process(chunk, (np.clip(lin_far, -1.0, 1.0) * 32767.0).round().astype(np.int16))
        self.linear_dbfs = rms_dbfs(lin)  # level of this very chunk (the ERLE compares it with the raw one)
        if len(self._linear_hold):
            held = np.concatenate([self._linear_hold, lin])
            lin, self._linear_hold = held[:n], held[n:]
        erle = self.linear_erle_db
        if erle is not None and erle >= LINEAR_MIN_ERLE_DB:
            self.for_asr = lin

    def _hear(self, out: np.ndarray, for_asr: np.ndarray) -> None:
        """What the guard needs of the recogniser's signal (its level) and Silero's verdicts on it and on AEC3's
        output (Silero hears every chunk in order, its state follows the stream; it only judges while the avatar
        speaks)."""
        self.asr_dbfs = rms_dbfs(for_asr)
        if self._silero is None or self._silero_aec is None:
            self.speech_probability = self.aec_speech_probability = 1.0
            return
        self.speech_probability = self._silero.push(for_asr)
        self.aec_speech_probability = self._silero_aec.push(out)

    def _written_for(self, n: int) -> int:
        """The reference written so far; with the player's, first wait (REFERENCE_WAIT_MS at most) for the next
        `n` samples of the unbroken read when the player is just short of them (see REFERENCE_WAIT_MS)."""
        written = self.reference.written
        if not self._heard_time or self._read_pos is None:
            return written
        short = self._read_pos + n - written
        if short <= 0 or short > REFERENCE_WAIT_MS * self.settings.sample_rate_hz / 1000:
            return written
        deadline = time.monotonic() + REFERENCE_WAIT_MS / 1000.0
        while written < self._read_pos + n and time.monotonic() < deadline:
            time.sleep(0.002)
            written = self.reference.written
        return written

    def _linear_reference(self, pos: int, n: int, written: int, far: np.ndarray) -> np.ndarray:
        """The reference for the linear canceller: read on from where it was, unless it must follow AEC3's `pos`
        (see LINEAR_REAIM_MS); then it starts afresh."""
        rate = self.settings.sample_rate_hz
        lin = self._linear_pos
        apart = None if lin is None else abs(lin - pos)
        if lin is not None and (
            apart <= LINEAR_REAIM_MS * rate / 1000
            or (apart <= RESYNC_MS * rate / 1000 and self._quiet_samples < REAIM_QUIET_S * rate)
        ) and lin + n <= written:
            self._linear_pos = lin + n
            return far if lin == pos else self.reference.samples(lin, n)
        if lin is not None:
            assert self._linear is not None
            self._linear.reset()
            self._linear_in = self._linear_out = 0.0
            self._linear_frames = 0
            self.linear_reaims += 1
            log.info("linear echo canceller re-aimed by %.0f ms", (pos - lin) / rate * 1000)
        self._linear_pos = pos + n
        return far

    def _mic_time(self, n: int, captured_at: float) -> float:
        """When the chunk that ends now was really captured, on time.monotonic().

        A stamp is never early but is late when the microphone thread was held up (a loaded machine: it then
        catches up with several chunks stamped at once); sample k was captured no later than `stamp - (samples
        after it) / rate`, so the earliest such bound of the last seconds, plus k / rate, is the capture time.
        Following every late stamp instead made the reference jump back and forth, and AEC3 re-adapt each time
        (a false barge-in in bench echo after a 130 ms stall)."""
        rate = self.settings.sample_rate_hz
        self._mic_samples += n
        bound = captured_at - self._mic_samples / rate  # the capture time of sample 0, at the latest
        bounds = self._mic_bounds
        if bounds and bound - min(b for _, b in bounds) > MIC_GAP_S:
            bounds.clear()  # chunks between were not handed to us (muted): the count no longer maps
        bounds.append((captured_at, bound))
        while captured_at - bounds[0][0] > MIC_CLOCK_WINDOW_S:
            bounds.popleft()
        return min(b for _, b in bounds) + self._mic_samples / rate

    def is_speech(self, frame: np.ndarray) -> bool:
        """The VAD's frame classifier on the cancelled signal, with the residual-echo guard (see the docstring)."""
        rate = self.settings.sample_rate_hz
        voiced = self._vad.is_speech(frame.tobytes(), rate)
        if not self.far_active:
            return voiced
        level = rms_dbfs(frame)
        if self._hold_samples > 0:  # just after a stall: AEC3 may be finding the echo again (STALL_HOLD_S)
            return False
        s = self.settings
        heard = max(level, self.asr_dbfs)  # the louder of AEC3's output and the recogniser's signal
        user = voiced and self._silero_says_speech() and heard >= s.floor_dbfs
        user = user and heard >= self.raw_dbfs - s.residual_margin_db
        if not voiced:  # echo only, as far as the guard can tell: count it for ERLE
            self._echo_speech.append(self.speech_probability)
            self.echo_in_energy += 10 ** (self.raw_dbfs / 10)
            self.echo_out_energy += 10 ** (level / 10)
            self._linear_in = LINEAR_ERLE_DECAY * self._linear_in + 10 ** (self.raw_dbfs / 10)
            self._linear_out = LINEAR_ERLE_DECAY * self._linear_out + 10 ** (self.linear_dbfs / 10)
            self._linear_frames += 1
        return user

    def _silero_says_speech(self) -> bool:
        """Silero on the recogniser's signal, unless the echo alone sounded like speech there of late (see the
        docstring); then Silero on AEC3's output."""
        s = self.settings
        if max(self._echo_speech, default=0.0) < s.speech_threshold:
            return self.speech_probability >= s.asr_speech_threshold
        return self.aec_speech_probability >= s.speech_threshold

    @property
    def linear_erle_db(self) -> float | None:
        """The linear canceller's echo reduction over the last seconds' echo-only frames; None: too few measured
        yet (LINEAR_MIN_FRAMES), or no linear canceller."""
        if self._linear is None or self._linear_frames < LINEAR_MIN_FRAMES or self._linear_out <= 0:
            return None
        return 10.0 * float(np.log10(self._linear_in / self._linear_out))

    @property
    def erle_db(self) -> float | None:
        """Echo return loss enhancement over this session's echo-only frames."""
        if self.echo_out_energy <= 0 or self.echo_in_energy <= 0:
            return None
        return 10.0 * float(np.log10(self.echo_in_energy / self.echo_out_energy))


def _output_lag(aec3_class: Any, rate_hz: int) -> int:
    """How many samples AEC3's output trails its input (a filter bank's delay), measured on a throwaway instance:
    half a second of noise with a silent far end, the lag of the best match."""
    probe = np.random.default_rng(0).normal(0.0, 0.1, rate_hz // 2).astype(np.float32)
    aec, step = aec3_class(rate_hz, 1, 0), rate_hz // 100
    silent = np.zeros(step, np.float32)
    y = np.concatenate([aec.process(probe[i : i + step], silent) for i in range(0, len(probe) - step + 1, step)])
    span = len(y) // 2
    scores = [float(np.dot(y[lag : lag + span], probe[:span])) for lag in range(len(y) - span)]
    return int(np.argmax(scores))


def load_echo_canceller(
    settings: EchoSettings | None = None, clock: Callable[[], float] = time.monotonic
) -> tuple[EchoCanceller | None, str | None]:
    """An echo canceller, or None and a notice saying why there is none (never raises)."""
    try:
        return EchoCanceller(settings, clock), None
    except EchoUnavailable as e:
        return None, f"No echo cancellation: {e}. Hands-free stays half-duplex (the microphone pauses while the avatar speaks)"
    except Exception as e:  # noqa: BLE001 - a broken native module must not take the app down
        log.exception("the echo canceller failed to start")
        return None, f"No echo cancellation: the canceller failed to start ({e!r}). Hands-free stays half-duplex"


@dataclass(frozen=True)
class BargeInSetup:
    """What the app runs for hands-free barge-in: the canceller (None: none), whether barge-in is on, and a
    notice for the user when it was asked for and cannot run."""

    echo: EchoCanceller | None
    enabled: bool
    notice: str | None


def barge_in_setup(audio: Any, clock: Callable[[], float] = time.monotonic) -> BargeInSetup:
    """From the config's `audio` section (assistant.config.AudioSettings): barge-in when it is on and a
    canceller runs here; otherwise half-duplex, with a notice when barge-in was wanted. Never raises."""
    if not audio.barge_in:
        return BargeInSetup(None, False, None)
    echo, notice = load_echo_canceller(EchoSettings(audio.sample_rate_hz, float(audio.echo_delay_ms)), clock)
    return BargeInSetup(echo, echo is not None, notice)
