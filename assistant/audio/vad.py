"""Cut a stream of audio into utterances with webrtcvad: onset detection, pre-roll, end on silence, max length.

The segmenter is fed the same way from a live microphone (capture.py) and from a file (sources.py): push int16
(or float) samples of any chunk size, get back events: `SpeechStarted` as soon as speech onset is confirmed (so
the pipeline can cancel a reply in flight), then an `assistant.events.Utterance` when the speaker stops, or a
`SpeechDiscarded` when what started was too short to be speech (a click, a cough).

The end of speech is the end of the last voiced frame (`voice_end_s`), not the moment the segmenter is sure of it
(`early_start_ms` or `silence_ms` later). A live source says when its samples were captured (`push(..., at=)`,
time.monotonic()); the segmenter then stamps the end of the sound on the same clock (`voice_ended_at`: the last
voiced frame's end moved back over the fading tail webrtcvad still calls speech), so a turn's stage times, and
the app's first-sound figure, count from when the user stopped speaking. An utterance from such a source is a `TimedUtterance`.

A learned end of turn (`end_of_turn`, a callable such as `assistant.audio.smart_turn.SmartTurn`: the turn's int16
audio so far in, the probability that the speaker has finished out) is asked once per pause, at the early-start
point: at or above `end_of_turn_threshold` the utterance ends right there (the SpeechPaused is followed at once by
the very same utterance); below it, it is asked again after `silence_ms` (where silence alone would have ended the
turn), and if still "not yet" the utterance ends after `incomplete_silence_ms` unless speech resumes. Without one
(or without an early start) silence alone decides.

Needs webrtcvad (from the webrtcvad-wheels package). No threads, no I/O: one segmenter per stream, one thread
pushing into it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import webrtcvad

from assistant.errors import ConfigError
from assistant.events import Utterance

if TYPE_CHECKING:
    from assistant.config import AudioSettings

VALID_SAMPLE_RATES_HZ = (8000, 16000, 32000, 48000)  # the rates webrtcvad accepts
VALID_FRAME_MS = (10, 20, 30)  # the frame lengths webrtcvad accepts
INT16_FULL_SCALE = 32768.0
TAIL_DROP_DB = 30.0  # a 10 ms window this far below the utterance's loudest is the fading tail, not speech
TAIL_SEARCH_MS = 200  # how far before the last voiced frame's end the sound's end is looked for

# A frame classifier: one frame of int16 samples in, True when it holds speech.
FrameClassifier = Callable[[np.ndarray], bool]
# A learned end of turn: the utterance so far as (n,) int16 in, the probability (0..1) that the speaker finished.
EndOfTurn = Callable[[np.ndarray], float]
END_OF_TURN_MODES = ("smart_turn", "silence")


class VadConfigError(ConfigError, ValueError):
    """A voice-activity setting is out of range (a ConfigError for the app, a ValueError for callers)."""


@dataclass(frozen=True)
class VadSettings:
    """How speech is told apart and cut into utterances. Validated on construction."""

    sample_rate_hz: int = 16000  # one of 8000, 16000, 32000, 48000
    frame_ms: int = 30  # one of 10, 20, 30
    aggressiveness: int = 2  # webrtcvad mode 0 (keeps most) .. 3 (filters most non-speech)
    preroll_ms: int = 300  # audio kept before the first voiced frame, so the first syllable is not cut
    silence_ms: int = 500  # this much non-speech ends an utterance
    max_utterance_s: float = 30.0  # an utterance this long is cut and emitted; segmentation continues
    min_speech_ms: int = 200  # utterances with fewer voiced ms than this are discarded
    onset_ms: int = 90  # this many voiced ms within a short window start an utterance
    tail_ms: int = 200  # non-speech kept after the last voiced frame
    # After this much non-speech (less than silence_ms) a SpeechPaused event carries the utterance so far, so a
    # reply can be prepared while the end of speech is still being confirmed; 0 = off.
    early_start_ms: int = 0
    # What ends a turn: "silence" (silence_ms of it), or "smart_turn" (the Smart Turn model, asked at the early-start
    # pause; whoever builds the segmenter loads it: assistant.audio.smart_turn.end_of_turn_for).
    end_of_turn: str = "silence"
    end_of_turn_threshold: float = 0.5  # the model's probability at or above which the turn ends at the pause
    incomplete_silence_ms: int = 1000  # the silence that ends an utterance the model called unfinished

    def __post_init__(self) -> None:
        def bad(key: str, allowed: str) -> VadConfigError:
            return VadConfigError(f"vad.{key} = {getattr(self, key)!r} is not allowed: use {allowed}")

        if self.sample_rate_hz not in VALID_SAMPLE_RATES_HZ:
            raise bad("sample_rate_hz", "one of 8000, 16000, 32000, 48000 (the rates webrtcvad accepts)")
        if self.frame_ms not in VALID_FRAME_MS:
            raise bad("frame_ms", "10, 20 or 30 (the frame lengths webrtcvad accepts)")
        if self.aggressiveness not in (0, 1, 2, 3):
            raise bad("aggressiveness", "an integer 0 (least aggressive) to 3 (most aggressive)")
        for key in ("preroll_ms", "min_speech_ms", "tail_ms"):
            if not 0 <= getattr(self, key) <= 10_000:
                raise bad(key, "milliseconds between 0 and 10000")
        for key in ("silence_ms", "onset_ms"):
            if not self.frame_ms <= getattr(self, key) <= 10_000:
                raise bad(key, f"milliseconds between frame_ms ({self.frame_ms}) and 10000")
        if not 1.0 <= self.max_utterance_s <= 600.0:
            raise bad("max_utterance_s", "seconds between 1 and 600")
        if self.early_start_ms and not self.frame_ms <= self.early_start_ms < self.silence_ms:
            raise bad("early_start_ms", f"0 (off) or milliseconds from frame_ms to below silence_ms ({self.silence_ms})")
        if self.end_of_turn not in END_OF_TURN_MODES:
            raise bad("end_of_turn", " or ".join(END_OF_TURN_MODES))
        if not 0.0 <= self.end_of_turn_threshold <= 1.0:
            raise bad("end_of_turn_threshold", "a probability between 0 and 1")
        if not self.frame_ms <= self.incomplete_silence_ms <= 10_000:
            raise bad("incomplete_silence_ms", f"milliseconds between frame_ms ({self.frame_ms}) and 10000")

    @classmethod
    def from_config(cls, audio: AudioSettings) -> VadSettings:
        """From the `audio` section of the app config (assistant.config.AudioSettings)."""
        return cls(
            sample_rate_hz=audio.sample_rate_hz,
            frame_ms=audio.frame_ms,
            aggressiveness=audio.vad_aggressiveness,
            preroll_ms=audio.preroll_ms,
            silence_ms=audio.end_silence_ms,
            max_utterance_s=audio.max_utterance_s,
            min_speech_ms=audio.min_speech_ms,
            # An early start only makes sense before the end of speech is confirmed.
            early_start_ms=audio.early_start_ms if audio.early_start_ms < audio.end_silence_ms else 0,
            end_of_turn=audio.end_of_turn,
            end_of_turn_threshold=audio.end_of_turn_threshold,
            incomplete_silence_ms=audio.incomplete_silence_ms,
        )

    @property
    def frame_samples(self) -> int:
        return self.sample_rate_hz * self.frame_ms // 1000  # 480 for 30 ms at 16 kHz

    def frames(self, ms: float) -> int:
        """How many whole frames cover `ms` milliseconds (at least 1 for a positive duration)."""
        return max(1, round(ms / self.frame_ms)) if ms > 0 else 0


@dataclass(frozen=True)
class SpeechStarted:
    """Speech onset confirmed; an `Utterance` (or a `SpeechDiscarded`) follows for the same stretch."""

    start_s: float  # where the utterance begins, pre-roll included, from the start of the stream
    detected_s: float  # stream time at which the onset was confirmed
    source: str
    continued: bool = False  # True when it continues an utterance just cut at max_utterance_s


@dataclass(frozen=True)
class SpeechDiscarded:
    """An utterance that started but was dropped: too little voiced audio, or the stream was reset (mute)."""

    start_s: float
    end_s: float
    voiced_ms: int
    source: str
    reason: str


@dataclass(frozen=True)
class TimedUtterance(Utterance):
    """An Utterance from a live source, which also says when its speech ended (see the module docstring)."""

    voice_end_s: float | None = None  # stream time at the end of the last voiced frame (end_s adds the tail)
    voice_ended_at: float | None = None  # the same moment on time.monotonic()


@dataclass(frozen=True)
class SpeechPaused:
    """`early_start_ms` of non-speech inside an utterance: `utterance` is what it would be if the speaker stopped
    here. It is exactly the Utterance that follows unless speech resumes (then a SpeechResumed comes first)."""

    utterance: Utterance
    paused_s: float  # stream time of the pause's detection
    voice_end_s: float | None = None  # stream time at the end of the last voiced frame: where speech stopped
    voice_ended_at: float | None = None  # the same moment on time.monotonic(), from a live source


@dataclass(frozen=True)
class SpeechResumed:
    """Speech came back after a SpeechPaused: the provisional utterance is void."""

    resumed_s: float
    source: str


SegmenterEvent = SpeechStarted | Utterance | SpeechDiscarded | SpeechPaused | SpeechResumed


class VadSegmenter:
    """Turns pushed audio into `SpeechStarted` / `Utterance` / `SpeechDiscarded` events.

    Onset: `onset_ms` of voiced frames among the last `onset_ms * 1.5` (so one misclassified frame does not
    delay it). The utterance then starts `preroll_ms` before the first voiced frame of the onset, and ends
    once `silence_ms` of non-speech follow, keeping `tail_ms` of it. Times are counted in pushed samples.
    """

    def __init__(
        self,
        sample_rate_hz: int = 16000,
        frame_ms: int = 30,
        aggressiveness: int = 2,
        preroll_ms: int = 300,
        silence_ms: int = 500,
        max_utterance_s: float = 30.0,
        min_speech_ms: int = 200,
        onset_ms: int = 90,
        tail_ms: int = 200,
        early_start_ms: int = 0,
        end_of_turn: str = "silence",
        end_of_turn_threshold: float = 0.5,
        incomplete_silence_ms: int = 1000,
        *,
        source: str = "microphone",
        is_speech: FrameClassifier | None = None,
        end_of_turn_model: EndOfTurn | None = None,
    ) -> None:
        # end_of_turn_model: asked at the early-start pause whether the speaker has finished (module docstring);
        # the `end_of_turn` setting only tells a builder whether to load one.
        self.settings = VadSettings(
            sample_rate_hz=sample_rate_hz,
            frame_ms=frame_ms,
            aggressiveness=aggressiveness,
            preroll_ms=preroll_ms,
            silence_ms=silence_ms,
            max_utterance_s=max_utterance_s,
            min_speech_ms=min_speech_ms,
            onset_ms=onset_ms,
            tail_ms=tail_ms,
            early_start_ms=early_start_ms,
            end_of_turn=end_of_turn,
            end_of_turn_threshold=end_of_turn_threshold,
            incomplete_silence_ms=incomplete_silence_ms,
        )
        self.source = source
        self._end_of_turn = end_of_turn_model
        s = self.settings
        if is_speech is None:
            vad = webrtcvad.Vad(s.aggressiveness)

            def is_speech(frame: np.ndarray) -> bool:
                return vad.is_speech(frame.tobytes(), s.sample_rate_hz)

        self._is_speech = is_speech
        self._n = s.frame_samples
        self._onset_frames = s.frames(s.onset_ms)
        self._onset_window = self._onset_frames + self._onset_frames // 2
        self._preroll_frames = s.frames(s.preroll_ms)
        self._silence_frames = s.frames(s.silence_ms)
        # An unfinished turn waits at least as long as a plain one.
        self._incomplete_frames = max(self._silence_frames, s.frames(s.incomplete_silence_ms))
        self._end_frames = self._silence_frames  # the silence that ends the open utterance
        self._tail_frames = s.frames(s.tail_ms)
        self._pause_frames = s.frames(s.early_start_ms)
        self._paused = False  # a SpeechPaused was sent for the current stretch of non-speech
        self._max_frames = max(1, round(s.max_utterance_s * 1000 / s.frame_ms))
        self._clock = 0  # samples seen since the stream started
        self._pending = np.zeros(0, dtype=np.int16)  # a partial frame waiting for more samples
        self._pending_asr = self._pending  # the same samples as the recogniser hears them (push's for_asr)
        # While idle: recent (frame, voiced) pairs, enough for the pre-roll plus the onset window.
        self._history: deque[tuple[np.ndarray, bool]] = deque(
            maxlen=self._preroll_frames + self._onset_window
        )
        self._frames: list[np.ndarray] | None = None  # the open utterance's frames; None while idle
        self._start = 0  # sample index where the open utterance starts
        self._voiced = 0  # voiced frames in the open utterance
        self._trailing = 0  # consecutive non-speech frames at its end
        self._voice_end = 0  # sample index at the end of the open utterance's last voiced frame
        self._peak_level = 0.0  # the open utterance's loudest 10 ms window of voiced audio (int16 RMS)
        self._frame_at: float | None = None  # time.monotonic() at the end of the frame being pushed, if known

    @classmethod
    def from_settings(
        cls,
        settings: VadSettings,
        *,
        source: str = "microphone",
        is_speech: FrameClassifier | None = None,
        end_of_turn_model: EndOfTurn | None = None,
    ) -> VadSegmenter:
        return cls(**vars(settings), source=source, is_speech=is_speech, end_of_turn_model=end_of_turn_model)

    @property
    def in_speech(self) -> bool:
        return self._frames is not None

    def set_onset_ms(self, onset_ms: int) -> None:
        """Change how much voiced audio starts an utterance (barge-in asks for more while the avatar speaks).
        The pre-roll is unchanged: an utterance still starts `preroll_ms` before its first voiced frame."""
        frames = self.settings.frames(max(onset_ms, self.settings.frame_ms))
        if frames == self._onset_frames:
            return
        self._onset_frames = frames
        self._onset_window = frames + frames // 2
        self._history = deque(self._history, maxlen=self._preroll_frames + self._onset_window)

    @property
    def position_s(self) -> float:
        """Stream time of the next sample to be pushed."""
        return (self._clock + len(self._pending)) / self.settings.sample_rate_hz

    def push(
        self, samples: np.ndarray, at: float | None = None, for_asr: np.ndarray | None = None
    ) -> list[SegmenterEvent]:
        """Feed any number of mono samples (int16, or float in [-1, 1]); returns the events they completed.

        `at`: time.monotonic() when the last of these samples was captured (a live source); the events then say
        when speech ended on that clock. `for_asr`: the same stretch of audio as the recogniser should hear it,
        when that is not what the VAD hears (the echo canceller's linear output: `assistant.audio.speex`);
        utterances are cut from it where `samples` says speech is."""
        chunk = to_int16(samples)
        keep = chunk if for_asr is None else to_int16(for_asr)
        if len(keep) != len(chunk):
            raise ValueError(f"for_asr has {len(keep)} samples, the chunk {len(chunk)}: they must cover the same audio")
        if len(self._pending):
            chunk = np.concatenate([self._pending, chunk])
            keep = np.concatenate([self._pending_asr, keep])
        whole = len(chunk) - len(chunk) % self._n
        events: list[SegmenterEvent] = []
        rate = self.settings.sample_rate_hz
        for i in range(0, whole, self._n):
            frame_at = None if at is None else at - (len(chunk) - i - self._n) / rate
            events.extend(self.push_frame(chunk[i : i + self._n], frame_at, keep[i : i + self._n]))
        self._pending = chunk[whole:].copy()
        self._pending_asr = keep[whole:].copy()
        return events

    def push_frame(
        self, frame: np.ndarray, at: float | None = None, for_asr: np.ndarray | None = None
    ) -> list[SegmenterEvent]:
        """Feed exactly one frame of `frame_samples` int16 samples; `at` and `for_asr` as for push()."""
        self._frame_at = at
        try:
            return self._push_frame(frame, frame if for_asr is None else for_asr)
        finally:
            self._frame_at = None

    def _push_frame(self, frame: np.ndarray, keep: np.ndarray) -> list[SegmenterEvent]:
        if frame.dtype != np.int16 or frame.shape != (self._n,) or keep.dtype != np.int16 or keep.shape != (self._n,):
            raise ValueError(
                f"push_frame needs ({self._n},) int16 samples ({self.settings.frame_ms} ms at "
                f"{self.settings.sample_rate_hz} Hz), got {frame.shape} {frame.dtype}"
                f"{'' if keep is frame else f' (for_asr: {keep.shape} {keep.dtype})'}; use push() for other sizes"
            )
        voiced = bool(self._is_speech(frame))
        self._clock += self._n
        if self._frames is None:
            return self._idle_frame(keep, voiced)
        self._frames.append(keep)
        events: list[SegmenterEvent] = []
        if voiced:
            self._voiced += 1
            self._trailing = 0
            self._voice_end = self._clock
            self._peak_level = max(self._peak_level, _loudest_window(keep, self.settings.sample_rate_hz // 100))
            self._end_frames = self._silence_frames  # a verdict on the pause no longer holds
            if self._paused:
                self._paused = False
                events.append(SpeechResumed(self._clock / self.settings.sample_rate_hz, self.source))
        else:
            self._trailing += 1
        if self._trailing >= self._end_frames:
            return events + self._finish(cut=False, reason="too little voiced audio")
        if self._trailing == self._silence_frames < self._end_frames and self._finished():
            # "not yet" at the pause, asked again where silence alone would have ended the turn
            return events + self._finish(cut=False, reason="too little voiced audio")
        if (
            self._pause_frames
            and not self._paused
            and self._trailing >= 1
            and self._clock - self._sound_end(self._frames) >= self._pause_frames * self._n
            and self._voiced * self.settings.frame_ms >= self.settings.min_speech_ms
        ):  # early_start_ms of silence counted from where the sound fell away, at webrtcvad's first silent frame
            self._paused = True
            provisional = self._utterance(self._frames[: self._kept_frames()], cut=False)
            rate = self.settings.sample_rate_hz
            ended_at = self._voice_ended_at(self._frames)
            events.append(SpeechPaused(provisional, self._clock / rate, self._voice_end / rate, ended_at))
            if self._end_of_turn is not None:
                if self._finished():
                    return events + self._finish(cut=False, reason="", utterance=provisional)
                self._end_frames = self._incomplete_frames
        if len(self._frames) >= self._max_frames:
            if self._paused:  # the cut utterance is not the provisional one
                self._paused = False
                events.append(SpeechResumed(self._clock / self.settings.sample_rate_hz, self.source))
            events += self._finish(cut=True, reason="")
            self._open([], self._clock)
            now_s = self._clock / self.settings.sample_rate_hz
            events.append(SpeechStarted(now_s, now_s, self.source, continued=True))
        return events

    def flush(self) -> list[SegmenterEvent]:
        """End of stream: an utterance still open is emitted (or discarded when too short)."""
        events: list[SegmenterEvent] = []
        if self._frames is not None:
            if len(self._pending):
                self._frames.append(self._pending_asr)
                self._clock += len(self._pending)
                self._trailing += 1  # the unclassified remainder counts as non-speech for the trim
            events = self._finish(cut=False, reason="too little voiced audio")
        else:
            self._clock += len(self._pending)
        self._pending = self._pending_asr = np.zeros(0, dtype=np.int16)
        self._history.clear()
        return events

    def reset(self, reason: str = "reset") -> list[SegmenterEvent]:
        """Drop any open utterance and buffered audio (mute, device change); the clock keeps running."""
        events: list[SegmenterEvent] = []
        if self._frames is not None:
            rate = self.settings.sample_rate_hz
            events.append(
                SpeechDiscarded(
                    self._start / rate,
                    self._clock / rate,
                    self._voiced * self.settings.frame_ms,
                    self.source,
                    reason,
                )
            )
        self._clock += len(self._pending)
        self._pending = self._pending_asr = np.zeros(0, dtype=np.int16)
        self._history.clear()
        self._frames = None
        return events

    def skip(self, n_samples: int) -> None:
        """Advance the clock over audio that was not pushed (muted), so later times stay on the capture clock."""
        self._clock += n_samples

    # ---- internals ----

    def _idle_frame(self, frame: np.ndarray, voiced: bool) -> list[SegmenterEvent]:
        self._history.append((frame, voiced))
        flags = [v for _, v in self._history]
        window = flags[-self._onset_window :]
        if sum(window) < self._onset_frames:
            return []
        first_voiced = len(flags) - len(window) + window.index(True)
        begin = max(0, first_voiced - self._preroll_frames)
        kept = list(self._history)[begin:]
        self._history.clear()
        self._open([f for f, _ in kept], self._clock - len(kept) * self._n)
        for i, (_, v) in enumerate(kept):
            self._voiced += v
            self._trailing = 0 if v else self._trailing + 1
            if v:
                self._voice_end = self._start + (i + 1) * self._n
                self._peak_level = max(self._peak_level, _loudest_window(kept[i][0], self.settings.sample_rate_hz // 100))
        rate = self.settings.sample_rate_hz
        return [SpeechStarted(self._start / rate, self._clock / rate, self.source)]

    def _open(self, frames: list[np.ndarray], start_sample: int) -> None:
        self._paused = False
        self._end_frames = self._silence_frames
        self._frames = frames
        self._start = start_sample
        self._voiced = 0
        self._trailing = 0
        self._voice_end = start_sample
        self._peak_level = 0.0  # the loudest 10 ms window of its voiced frames (int16 RMS)

    def _voice_ended_at(self, frames: list[np.ndarray]) -> float | None:
        """When the speaker's sound really ended, on time.monotonic(), when the frame being pushed came with a time:
        the end of the last voiced frame, moved back over the fading tail that webrtcvad still calls speech."""
        if self._frame_at is None:
            return None
        return self._frame_at - (self._clock - self._sound_end(frames)) / self.settings.sample_rate_hz

    def _sound_end(self, frames: list[np.ndarray]) -> int:
        """Sample index where the open utterance's sound ends: the last 10 ms window, at most TAIL_SEARCH_MS before
        the last voiced frame's end, within TAIL_DROP_DB of the utterance's loudest window (webrtcvad's hangover
        calls ~100 ms of fading tail speech: `assistant bench live` found the app's figure short by 120-130 ms)."""
        rate = self.settings.sample_rate_hz
        win = rate // 100
        search = max(1, round(TAIL_SEARCH_MS / 10.0))
        levels = _window_levels(frames, self._voice_end - self._start, win, search)
        if len(levels) < 2:
            return self._voice_end
        loud = levels >= self._peak_level * 10 ** (-TAIL_DROP_DB / 20.0)
        tail = loud[-search:]
        if not tail.any():
            return self._voice_end - len(tail) * win
        return self._voice_end - (len(tail) - 1 - int(np.flatnonzero(tail)[-1])) * win

    def _finished(self) -> bool:
        """The learned end of turn's verdict on the utterance as it would end now."""
        assert self._end_of_turn is not None and self._frames is not None
        pcm = np.concatenate(self._frames[: self._kept_frames()])  # (n,) int16: what the utterance would hold
        return self._end_of_turn(pcm) >= self.settings.end_of_turn_threshold

    def _kept_frames(self) -> int:
        """Frames of the open utterance that an end of speech now would keep (trailing non-speech cut to the tail)."""
        assert self._frames is not None
        return len(self._frames) - self._trailing + min(self._trailing, self._tail_frames)

    def _utterance(self, kept: list[np.ndarray], cut: bool) -> Utterance:
        rate = self.settings.sample_rate_hz
        pcm = np.concatenate(kept) if kept else np.zeros(0, np.int16)
        samples = pcm.astype(np.float32) / INT16_FULL_SCALE  # (n,) float32 in [-1, 1)
        fields = dict(
            samples=samples,
            sample_rate_hz=rate,
            start_s=self._start / rate,
            end_s=(self._start + len(pcm)) / rate,
            cut_at_max=cut,
            source=self.source,
        )
        if self._frame_at is None:  # a file, or the end of a stream: no capture clock
            return Utterance(**fields)
        return TimedUtterance(**fields, voice_end_s=self._voice_end / rate, voice_ended_at=self._voice_ended_at(kept))

    def _finish(self, cut: bool, reason: str, utterance: Utterance | None = None) -> list[SegmenterEvent]:
        """Close the open utterance; `utterance`: the provisional one just sent with a SpeechPaused, which is
        what the frames kept now make (emitted as the same object, so a listener can tell it is the same)."""
        assert self._frames is not None
        keep = len(self._frames) if cut else self._kept_frames()
        frames, self._frames = self._frames, None
        self._paused = False
        rate = self.settings.sample_rate_hz
        # The non-speech cut from the tail is the freshest audio: it serves as pre-roll for what comes next.
        for f in frames[keep:]:
            if len(f) == self._n:
                self._history.append((f, False))
        voiced_ms = self._voiced * self.settings.frame_ms
        kept = frames[:keep]
        end_sample = self._start + sum(len(f) for f in kept)
        if not cut and voiced_ms < self.settings.min_speech_ms:
            return [SpeechDiscarded(self._start / rate, end_sample / rate, voiced_ms, self.source, reason)]
        return [utterance if utterance is not None else self._utterance(kept, cut)]


def _window_rms(x: np.ndarray, win: int) -> np.ndarray:
    """The RMS of each whole `win`-sample window of `x`, counted back from its end."""
    n = len(x) // win
    if n == 0:
        return np.zeros(0, np.float32)
    return np.sqrt(np.mean(np.square(x[len(x) - n * win :].astype(np.float32).reshape(n, win)), axis=1))


def _loudest_window(frame: np.ndarray, win: int) -> float:
    """The RMS of the loudest `win`-sample window of an int16 frame."""
    return float(_window_rms(frame, win).max(initial=0.0))


def _window_levels(frames: list[np.ndarray], length: int, win: int, last: int) -> np.ndarray:
    """RMS levels (+1e-3) of the last `last` whole `win`-sample windows ending at sample `length` of the joined
    `frames` (only the frames that hold them are joined)."""
    want_from = max(0, length - (last + 1) * win)
    start = sum(len(f) for f in frames)
    picked: list[np.ndarray] = []
    for frame in reversed(frames):
        if start <= want_from:
            break
        picked.append(frame)
        start -= len(frame)
    if not picked:
        return np.zeros(0, np.float32)
    return _window_rms(np.concatenate(picked[::-1])[want_from - start : length - start], win) + 1e-3


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Mono int16 from int16 or float samples in [-1, 1]; a (n, 1) column is flattened."""
    samples = np.asarray(samples)
    if samples.ndim == 2 and samples.shape[1] == 1:
        samples = samples[:, 0]
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples shaped (n,) or (n, 1), got {samples.shape}; mix down first")
    if samples.dtype == np.int16:
        return samples
    if np.issubdtype(samples.dtype, np.floating):
        return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)
    raise ValueError(f"expected int16 or float samples, got {samples.dtype}")
