"""VadSegmenter: onset, pre-roll, end on silence, max length, flush, validation; the file path through it."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from assistant.audio.sources import feed_samples
from assistant.audio.vad import (
    SpeechDiscarded,
    SpeechPaused,
    SpeechStarted,
    TimedUtterance,
    VadConfigError,
    VadSegmenter,
    VadSettings,
    to_int16,
)
from assistant.errors import ConfigError
from assistant.events import Utterance

RATE = 16000
FRAME = 480  # 30 ms at 16 kHz
VOICE = 6000  # amplitude of a "voiced" frame for the fake classifier


def loud(frame: np.ndarray) -> bool:
    """A deterministic stand-in for webrtcvad: a frame is speech when it is loud."""
    return bool(np.abs(frame.astype(np.int32)).mean() > 1000)


def pattern(spec: str) -> np.ndarray:
    """int16 audio from a frame pattern: 'v' = one voiced 30 ms frame, '.' = one silent frame."""
    frames = [np.full(FRAME, VOICE if c == "v" else 0, dtype=np.int16) for c in spec]
    return np.concatenate(frames)


def segmenter(**kwargs) -> VadSegmenter:
    return VadSegmenter(**kwargs, is_speech=loud)


def run(seg: VadSegmenter, audio: np.ndarray, flush: bool = True) -> list:
    events = seg.push(audio)
    return events + (seg.flush() if flush else [])


def utterances(events: list) -> list[Utterance]:
    return [e for e in events if isinstance(e, Utterance)]


def test_silence_gives_no_events():
    assert run(segmenter(), pattern("." * 100)) == []


def test_one_utterance_keeps_preroll_and_tail():
    events = run(segmenter(), pattern("." * 20 + "v" * 30 + "." * 30))
    assert [type(e) for e in events] == [SpeechStarted, Utterance]
    started, utt = events
    # Onset confirmed after 3 voiced frames (90 ms); the utterance starts 300 ms (10 frames) before the first.
    assert started.detected_s == pytest.approx(23 * 0.03)
    assert started.start_s == pytest.approx(10 * 0.03)
    assert utt.start_s == pytest.approx(10 * 0.03)
    # Last voiced frame ends at 50 frames; 200 ms of tail rounds to 7 frames.
    assert utt.end_s == pytest.approx(57 * 0.03)
    assert utt.duration_s == pytest.approx(utt.end_s - utt.start_s)
    assert utt.samples.dtype == np.float32 and utt.sample_rate_hz == RATE and not utt.cut_at_max
    assert utt.source == "microphone"
    # The first voiced sample sits exactly after the pre-roll: the first syllable is intact.
    first_voiced = int(np.argmax(np.abs(utt.samples) > 0.1))
    assert first_voiced == 10 * FRAME
    assert utt.samples[first_voiced] == pytest.approx(VOICE / 32768)


def test_preroll_is_clipped_at_stream_start():
    (utt,) = utterances(run(segmenter(), pattern("." * 3 + "v" * 20 + "." * 30)))
    assert utt.start_s == 0.0


def test_short_blip_is_discarded_not_emitted():
    events = run(segmenter(min_speech_ms=250), pattern("." * 10 + "vvvv" + "." * 40))
    assert [type(e) for e in events] == [SpeechStarted, SpeechDiscarded]
    assert events[1].voiced_ms == 120 and "too little" in events[1].reason


def test_pause_shorter_than_silence_ms_does_not_split():
    events = run(segmenter(silence_ms=500), pattern("v" * 20 + "." * 10 + "v" * 20 + "." * 30))
    assert len(utterances(events)) == 1


def test_pause_of_silence_ms_splits_in_two():
    events = run(segmenter(silence_ms=300), pattern("v" * 20 + "." * 15 + "v" * 20 + "." * 30))
    first, second = utterances(events)
    assert first.end_s <= second.start_s
    assert sum(isinstance(e, SpeechStarted) for e in events) == 2


def test_one_misclassified_frame_does_not_delay_onset():
    events = run(segmenter(), pattern("." * 20 + "vv.v" + "v" * 20 + "." * 30))
    started = events[0]
    assert isinstance(started, SpeechStarted)
    assert started.detected_s == pytest.approx(24 * 0.03)  # 3 voiced among the last 4 frames


def test_long_speech_is_cut_at_max_and_segmentation_continues():
    events = run(segmenter(max_utterance_s=1.0), pattern("v" * 80 + "." * 30))
    utts = utterances(events)
    # 2.4 s of speech: two cut pieces of 33 frames (0.99 s), then the rest ends on silence.
    assert len(utts) == 3
    assert [u.cut_at_max for u in utts] == [True, True, False]
    assert utts[0].duration_s == pytest.approx(1.0, abs=0.03)
    for a, b in itertools.pairwise(utts):
        assert b.start_s == pytest.approx(a.end_s)  # nothing lost at a cut
    continued = [e for e in events if isinstance(e, SpeechStarted) and e.continued]
    assert len(continued) == 2


def test_flush_emits_an_utterance_still_open_at_end():
    seg = segmenter()
    audio = pattern("." * 10 + "v" * 30)
    assert utterances(seg.push(audio)) == []
    (utt,) = utterances(seg.flush())
    assert utt.end_s == pytest.approx(len(audio) / RATE)


def test_flush_keeps_a_partial_last_frame():
    seg = segmenter()
    audio = np.concatenate([pattern("." * 10 + "v" * 30), np.full(100, VOICE, np.int16)])
    (utt,) = utterances(run(seg, audio))
    assert utt.end_s == pytest.approx(len(audio) / RATE)


def test_chunk_size_does_not_change_the_result():
    audio = pattern("." * 15 + "v" * 25 + "." * 20 + "v" * 12 + "." * 25)
    whole = utterances(run(segmenter(), audio))
    seg = segmenter()
    rng = np.random.default_rng(1)
    events, i = [], 0
    while i < len(audio):
        n = int(rng.integers(1, 2000))
        events += seg.push(audio[i : i + n])
        i += n
    chunked = utterances(events + seg.flush())
    assert len(whole) == len(chunked) == 2
    for a, b in zip(whole, chunked):
        assert (a.start_s, a.end_s) == (b.start_s, b.end_s)
        np.testing.assert_array_equal(a.samples, b.samples)


def test_float_input_is_accepted():
    audio = pattern("." * 10 + "v" * 20 + "." * 30)
    (utt,) = utterances(run(segmenter(), audio.astype(np.float32) / 32768))
    assert utt.duration_s > 0.5


def test_reset_discards_the_open_utterance_and_skip_moves_the_clock():
    seg = segmenter()
    seg.push(pattern("v" * 20))
    assert seg.in_speech
    (discarded,) = seg.reset("muted")
    assert isinstance(discarded, SpeechDiscarded) and discarded.reason == "muted"
    assert not seg.in_speech
    seg.skip(RATE)  # one muted second
    (utt,) = utterances(run(seg, pattern("v" * 20 + "." * 30)))
    assert utt.start_s == pytest.approx(20 * 0.03 + 1.0)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"frame_ms": 25}, "frame_ms"),
        ({"sample_rate_hz": 44100}, "sample_rate_hz"),
        ({"aggressiveness": 4}, "aggressiveness"),
        ({"aggressiveness": -1}, "aggressiveness"),
        ({"silence_ms": 0}, "silence_ms"),
        ({"preroll_ms": -10}, "preroll_ms"),
        ({"max_utterance_s": 0.5}, "max_utterance_s"),
    ],
)
def test_bad_settings_are_rejected_naming_the_key(kwargs, key):
    with pytest.raises(VadConfigError) as info:
        VadSegmenter(**kwargs)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)
    assert key in str(info.value) and str(next(iter(kwargs.values()))) in str(info.value)


@pytest.mark.parametrize("rate", [8000, 16000, 32000, 48000])
@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_every_webrtcvad_rate_and_frame_is_accepted(rate, frame_ms):
    seg = VadSegmenter(sample_rate_hz=rate, frame_ms=frame_ms)
    assert seg.push(np.zeros(rate // 10, np.int16)) == []  # the real webrtcvad takes the frame
    assert seg.settings.frame_samples == rate * frame_ms // 1000


def test_push_frame_rejects_a_wrong_size():
    with pytest.raises(ValueError, match="480"):
        segmenter().push_frame(np.zeros(100, np.int16))


def test_to_int16_rejects_stereo():
    with pytest.raises(ValueError, match="mono"):
        to_int16(np.zeros((10, 2), np.float32))


def vowel(seconds: float) -> np.ndarray:
    """A buzz with harmonics of 130 Hz: close enough to a sung vowel for webrtcvad."""
    t = np.arange(int(seconds * RATE)) / RATE
    wave = sum(np.sin(2 * np.pi * 130 * k * t) / k for k in range(1, 25))
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def test_real_webrtcvad_finds_a_vowel_between_silences():
    silence = np.zeros(RATE, np.float32)
    audio = np.concatenate([silence, vowel(1.0), silence])
    events = list(feed_samples(VadSegmenter(source="test"), audio))
    (utt,) = utterances(events)
    assert 0.6 <= utt.start_s <= 1.0 and 2.0 <= utt.end_s <= 2.4
    assert utt.source == "test"


def test_real_webrtcvad_ignores_digital_silence():
    assert list(feed_samples(VadSegmenter(), np.zeros(3 * RATE, np.float32))) == []


def test_settings_round_trip_through_from_settings():
    settings = VadSettings(frame_ms=20, silence_ms=400, preroll_ms=200)
    seg = VadSegmenter.from_settings(settings, is_speech=loud)
    assert seg.settings == settings


def test_settings_from_the_app_config():
    from assistant.config import AudioSettings

    audio = AudioSettings(frame_ms=20, vad_aggressiveness=3, end_silence_ms=700, min_speech_ms=150)
    settings = VadSettings.from_config(audio)
    assert (settings.frame_ms, settings.aggressiveness, settings.silence_ms, settings.min_speech_ms) == (
        20,
        3,
        700,
        150,
    )


# ---- early start: SpeechPaused at a pause, SpeechResumed if the speaker goes on ----


def test_pause_announces_exactly_the_utterance_that_follows():
    from assistant.audio.vad import SpeechPaused

    events = run(segmenter(early_start_ms=240), pattern("." * 10 + "v" * 30 + "." * 30))
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["SpeechStarted", "SpeechPaused", "Utterance"]
    paused, final = events[1], events[2]
    assert isinstance(paused, SpeechPaused)
    assert np.array_equal(paused.utterance.samples, final.samples)
    assert (paused.utterance.start_s, paused.utterance.end_s) == (final.start_s, final.end_s)
    assert paused.paused_s < final.end_s + 0.5  # announced well before the end of speech is confirmed


def test_speech_after_the_pause_voids_it():
    events = run(segmenter(early_start_ms=240), pattern("." * 10 + "v" * 20 + "." * 10 + "v" * 20 + "." * 30))
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["SpeechStarted", "SpeechPaused", "SpeechResumed", "SpeechPaused", "Utterance"]
    assert len(utterances(events)) == 1


def test_early_start_off_by_default_and_validated():
    kinds = {type(e).__name__ for e in run(segmenter(), pattern("." * 10 + "v" * 30 + "." * 30))}
    assert "SpeechPaused" not in kinds
    with pytest.raises(ValueError, match="early_start_ms"):
        segmenter(early_start_ms=600, silence_ms=500)


# ---- the end of speech: the last voiced frame, on the capture clock ----

T0 = 1000.0  # a capture clock (time.monotonic() stand-in): frame k (0-based) is captured by T0 + (k + 1) * 30 ms


def test_pause_and_utterance_say_when_speech_ended_not_when_it_was_sure():
    seg = segmenter(early_start_ms=240, silence_ms=500)
    audio = pattern("." * 20 + "v" * 30 + "." * 30)
    events = []
    for k in range(len(audio) // FRAME):
        events += seg.push_frame(audio[k * FRAME : (k + 1) * FRAME], at=T0 + (k + 1) * 0.03)
    paused = next(e for e in events if isinstance(e, SpeechPaused))
    (utt,) = utterances(events)
    # The last voiced frame is frame 49: speech ended 1.5 s into the stream, captured by T0 + 1.5 s. The pause is
    # detected 8 frames (240 ms) later and the end confirmed 17 frames (510 ms) later: neither is the end.
    assert paused.voice_end_s == pytest.approx(1.5) and paused.voice_ended_at == pytest.approx(T0 + 1.5)
    assert paused.paused_s == pytest.approx(1.5 + 0.24)
    assert isinstance(utt, TimedUtterance) and isinstance(paused.utterance, TimedUtterance)
    assert utt.voice_end_s == pytest.approx(1.5) and utt.voice_ended_at == pytest.approx(T0 + 1.5)
    assert utt.end_s == pytest.approx(1.5 + 0.21)  # the kept tail (7 frames) is not speech


def test_the_end_of_speech_leaves_out_the_fading_tail_the_classifier_still_calls_speech():
    # webrtcvad keeps calling a fading tail speech for ~100 ms; the user stopped where the sound fell away.
    seg = VadSegmenter(early_start_ms=240, silence_ms=500, is_speech=lambda f: bool(np.abs(f).max() > 0))
    tail = np.full(4 * FRAME, VOICE // 100, np.int16)  # 120 ms at -40 dB from the speech: "voiced", not sound
    audio = np.concatenate([pattern("." * 20 + "v" * 30), tail, pattern("." * 30)])
    events = []
    for k in range(len(audio) // FRAME):
        events += seg.push_frame(audio[k * FRAME : (k + 1) * FRAME], at=T0 + (k + 1) * 0.03)
    paused = next(e for e in events if isinstance(e, SpeechPaused))
    (utt,) = utterances(events)
    assert utt.voice_end_s == pytest.approx(1.62)  # the classifier's last voiced frame ends the tail
    assert utt.voice_ended_at == pytest.approx(T0 + 1.5, abs=0.011)  # the sound ended 1.5 s in
    assert paused.voice_ended_at == pytest.approx(T0 + 1.5, abs=0.011)
    # The early start counts its 240 ms of silence from where the sound fell away (1.5 s), at the classifier's first
    # silent frame or later: 1.74 s, not 1.62 + 0.24.
    assert paused.paused_s == pytest.approx(1.74, abs=0.031)


def test_a_chunk_stamped_at_its_end_times_each_frame_inside_it():
    audio = pattern("." * 20 + "v" * 30 + "." * 30)
    events = segmenter(early_start_ms=240).push(audio, at=T0 + 80 * 0.03)  # captured by the end of frame 79
    paused = next(e for e in events if isinstance(e, SpeechPaused))
    assert paused.voice_ended_at == pytest.approx(T0 + 1.5)
    assert utterances(events)[0].voice_ended_at == pytest.approx(T0 + 1.5)


def test_without_a_capture_clock_events_are_plain():
    events = run(segmenter(early_start_ms=240), pattern("." * 20 + "v" * 30 + "." * 30))
    paused = next(e for e in events if isinstance(e, SpeechPaused))
    assert paused.voice_end_s == pytest.approx(1.5) and paused.voice_ended_at is None
    assert [type(e) for e in utterances(events)] == [Utterance]  # a file's utterances stay plain


def test_live_capture_stamps_the_last_voiced_frame_with_its_capture_time():
    from assistant.audio.capture import LiveListener
    from tests.unit.test_capture_errors import MIC, FakeBackend, wait_until

    captured = [0]

    def clock() -> float:  # read once per block in the audio callback: block k is captured by T0 + (k+1) * 30 ms
        captured[0] += 1
        return T0 + captured[0] * 0.03

    backend = FakeBackend([MIC])
    paused: list[SpeechPaused] = []
    ended: list[Utterance] = []
    listener = LiveListener(
        MIC.name, VadSettings(early_start_ms=240), on_utterance=ended.append, on_speech_paused=paused.append,
        backend=backend, is_speech=loud, clock=clock,
    )  # fmt: skip
    listener.start()
    try:
        wait_until(lambda: backend.streams, "the stream to open")
        backend.streams[0].feed(pattern("." * 20 + "v" * 30 + "." * 30))
        wait_until(lambda: ended, "the utterance")
    finally:
        listener.stop()
    assert paused[0].voice_ended_at == pytest.approx(T0 + 1.5)
    assert ended[0].voice_ended_at == pytest.approx(T0 + 1.5)


def test_utterances_carry_the_recognisers_signal_where_the_vad_heard_speech():
    """push(..., for_asr=): speech is found in one signal (AEC3's output, for the guard) and the utterance is cut
    from the other (the linear canceller's), in chunks of any size, pre-roll and a partial last frame included."""
    heard = np.concatenate([pattern("." * 15 + "v" * 25), np.full(100, VOICE, np.int16)])  # still open at the end
    for_asr = np.arange(len(heard), dtype=np.int64).astype(np.int16)  # a different signal, every sample its own
    whole = utterances(run(segmenter(), heard))
    seg, rng, events, i = segmenter(), np.random.default_rng(2), [], 0
    while i < len(heard):
        n = int(rng.integers(1, 2000))
        events += seg.push(heard[i : i + n], for_asr=for_asr[i : i + n])
        i += n
    (utt,) = utterances(events + seg.flush())
    (plain,) = whole
    assert (utt.start_s, utt.end_s) == (plain.start_s, plain.end_s)  # the same stretch, found in `heard`
    assert utt.end_s == pytest.approx(len(heard) / RATE)  # the partial last frame too
    start, end = round(utt.start_s * RATE), round(utt.end_s * RATE)
    np.testing.assert_array_equal(utt.samples, for_asr[start:end].astype(np.float32) / 32768)


def test_for_asr_must_cover_the_same_samples():
    with pytest.raises(ValueError, match="for_asr has 400 samples, the chunk 480"):
        segmenter().push(np.zeros(480, np.int16), for_asr=np.zeros(400, np.int16))
