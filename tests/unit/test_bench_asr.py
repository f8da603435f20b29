"""`assistant bench asr`, its pure parts: text normalisation, word errors, the question set, pause insertion, and the
counting of cut-offs and early starts on synthetic segmenter events and on synthetic audio through the real
`VadSegmenter` (no models)."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.audio.vad import SpeechDiscarded, SpeechPaused, SpeechResumed, SpeechStarted, VadSettings
from assistant.bench.asr import (
    QUESTIONS,
    Question,
    join_with_pause,
    normalise,
    number_words,
    segment,
    tally,
    voiced_span,
    word_errors,
)
from assistant.events import Utterance

RATE = 16000


def test_normalise_lower_cases_drops_punctuation_and_expands_contractions() -> None:
    assert normalise("What's the weather like, in Berlin today?") == "what is the weather like in berlin today"
    assert normalise("Call Sarah and tell her I\u2019ll be late.") == "call sarah and tell her i will be late"
    assert normalise("  Play   some MUSIC!  ") == "play some music"
    assert normalise("my mother's phone") == "my mothers phone"  # apostrophes dropped the same on both sides


def test_normalise_writes_numbers_as_words() -> None:
    assert normalise("What is the square root of 81?") == "what is the square root of eighty one"
    assert normalise("Set a timer for 10 minutes.") == "set a timer for ten minutes"
    assert normalise("Wake me up at 7:00 in the morning") == "wake me up at seven in the morning"
    assert normalise("7:30") == "seven thirty"
    assert normalise("1,250 people") == "one thousand two hundred fifty people"
    assert normalise("the 21st and the 3rd") == "the twenty first and the third"
    assert normalise("2 + 2 is 4") == "two plus two is four"
    assert normalise("3.5%") == "three point five percent"
    assert normalise("twenty-one") == "twenty one"  # the hyphenated form matches the digits' words


@pytest.mark.parametrize(
    ("n", "words"),
    [(0, "zero"), (13, "thirteen"), (40, "forty"), (99, "ninety nine"), (100, "one hundred"),
     (305, "three hundred five"), (2026, "two thousand twenty six"), (1_000_001, "one million one")],
)  # fmt: skip
def test_number_words(n: int, words: str) -> None:
    assert number_words(n) == words


def test_word_errors_count_substitutions_deletions_and_insertions_over_all_words() -> None:
    e = word_errors(["What is the capital of France?"], ["what is the capitol of France"])
    assert (e.reference_words, e.substitutions, e.deletions, e.insertions) == (6, 1, 0, 0)
    assert e.wer == pytest.approx(1 / 6)
    e = word_errors(["Set a timer for ten minutes", "Tell me a joke"], ["Set a timer for 10 minutes.", ""])
    assert (e.reference_words, e.substitutions, e.deletions, e.insertions) == (10, 0, 4, 0)
    assert e.wer == pytest.approx(0.4)  # the missed question's 4 words over all 10
    e = word_errors(["Turn off the lights"], ["turn turn off the the lights please"])
    assert (e.insertions, e.wer) == (3, pytest.approx(0.75))
    with pytest.raises(ValueError):
        word_errors([""], ["anything"])


def test_the_question_set_is_fixed_and_fits_the_brief() -> None:
    assert len(QUESTIONS) >= 20
    assert all(4 <= len(q.reference.split()) <= 12 for q in QUESTIONS)
    paused = [q for q in QUESTIONS if q.pause_ms]
    assert len(paused) >= 6
    assert all(300 <= q.pause_ms <= 450 and len(q.parts) == 2 and all(q.parts) for q in paused)
    assert all(len(q.parts) == 1 for q in QUESTIONS if not q.pause_ms)
    assert len({q.reference for q in QUESTIONS}) == len(QUESTIONS)
    assert Question("What is the weather like | in Berlin today?", 400).reference == (
        "What is the weather like in Berlin today?"
    )


def _tone(seconds: float, amplitude: float = 0.3) -> np.ndarray:
    """A 150 Hz sawtooth: harmonics enough for webrtcvad to call every frame of it speech."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * ((t * 150) % 1 * 2 - 1)).astype(np.float32)


def test_join_with_pause_trims_the_halves_and_puts_exactly_the_pause_between_them() -> None:
    silence = np.zeros(RATE // 5, np.float32)  # 200 ms a TTS engine leaves around its speech
    first = np.concatenate([silence, _tone(0.5), silence])
    second = np.concatenate([silence, _tone(0.7), silence])
    joined = join_with_pause([first, second], RATE, 350)
    half, pause = int(0.5 * RATE), int(0.35 * RATE)
    assert len(joined) == half + pause + int(0.7 * RATE)
    assert voiced_span(joined, RATE) == (0, len(joined))
    np.testing.assert_array_equal(joined[:half], _tone(0.5))
    assert not joined[half : half + pause].any()
    np.testing.assert_array_equal(joined[half + pause :], _tone(0.7))


def _utterance(start_s: float, end_s: float) -> Utterance:
    return Utterance(np.zeros(int((end_s - start_s) * RATE), np.float32), RATE, start_s, end_s)


def test_tally_counts_cutoffs_and_wasted_early_starts_from_events() -> None:
    u = _utterance(0.2, 2.5)
    paused = SpeechPaused(u, 2.4)
    one_turn = [SpeechStarted(0.2, 0.3, "mic"), paused, SpeechResumed(1.5, "mic"), paused, u]
    seg = tally(one_turn)
    assert (len(seg.utterances), seg.early_starts, seg.early_starts_wasted, seg.false_cutoff) == (1, 2, 1, False)

    cut = tally([SpeechStarted(0.2, 0.3, "mic"), paused, _utterance(0.2, 1.4), SpeechStarted(1.9, 2.0, "mic"),
                 paused, _utterance(1.7, 2.6)])  # fmt: skip
    assert (len(cut.utterances), cut.early_starts, cut.early_starts_wasted, cut.false_cutoff) == (2, 2, 0, True)

    # The end declared inside the question and the rest dropped as too short: still a cut-off.
    rest_dropped = tally([u, SpeechDiscarded(2.9, 3.1, 90, "mic", "too little voiced audio")])
    assert rest_dropped.false_cutoff and rest_dropped.discarded == 1 and rest_dropped.discarded_after_end == 1
    # A click dropped before the question is not.
    click_first = tally([SpeechDiscarded(0.0, 0.2, 60, "mic", "too little voiced audio"), u])
    assert not click_first.false_cutoff and click_first.discarded == 1


def _loud(frame: np.ndarray) -> bool:
    """An exact stand-in for webrtcvad: a frame is speech when it is not silent (no hangover)."""
    return bool(np.abs(frame).max() > 100)


def _burst_gap_burst(gap_ms: int) -> np.ndarray:
    return np.concatenate([_tone(1.0), np.zeros(RATE * gap_ms // 1000, np.float32), _tone(1.0)])


@pytest.mark.parametrize(("gap_ms", "cut", "wasted"), [(600, True, 0), (300, False, 1), (200, False, 0)])
def test_a_gap_longer_than_the_end_silence_is_a_cutoff(gap_ms: int, cut: bool, wasted: int) -> None:
    vad = VadSettings(sample_rate_hz=RATE, frame_ms=30, silence_ms=500, early_start_ms=240)
    seg = segment(_burst_gap_burst(gap_ms), vad, is_speech=_loud)
    assert seg.false_cutoff is cut
    assert len(seg.utterances) == (2 if cut else 1)
    # One early start at the end of each utterance, plus one wasted in a gap of 240..500 ms.
    assert seg.early_starts_wasted == wasted
    assert seg.early_starts == len(seg.utterances) + wasted


def test_early_starts_off_fire_none() -> None:
    vad = VadSettings(sample_rate_hz=RATE, frame_ms=30, silence_ms=500, early_start_ms=0)
    seg = segment(_burst_gap_burst(300), vad, is_speech=_loud)
    assert (seg.early_starts, seg.early_starts_wasted, seg.false_cutoff) == (0, 0, False)


def test_with_webrtcvad_its_hangover_lengthens_the_pause_that_ends_a_turn() -> None:
    """The app's webrtcvad keeps calling ~120 ms after speech "speech" (its hangover): a 600 ms gap is only
    ~480 ms of non-speech frames, under end_silence 500, while 800 ms cuts. What `bench asr` reports is this real
    behaviour, not the stand-in's."""
    vad = VadSettings(sample_rate_hz=RATE, frame_ms=30, aggressiveness=2, silence_ms=500, early_start_ms=240)
    assert segment(_tone(1.0), vad).utterances  # the sawtooth is speech to webrtcvad
    assert not segment(_burst_gap_burst(600), vad).false_cutoff
    assert segment(_burst_gap_burst(800), vad).false_cutoff


def test_segmenting_reads_no_clock_so_feeding_fast_is_feeding_live() -> None:
    """The segmenter counts samples: one big push gives the events frame-by-frame pushes give."""
    from assistant.audio.vad import VadSegmenter

    vad = VadSettings(sample_rate_hz=RATE, frame_ms=30, silence_ms=500, early_start_ms=240)
    audio = np.concatenate([np.zeros(RATE // 2, np.float32), _burst_gap_burst(600), np.zeros(RATE, np.float32)])
    framed = segment(audio[RATE // 2 : -RATE], vad, is_speech=_loud)  # adds its own 0.5 s lead silence
    whole = tally(VadSegmenter.from_settings(vad, is_speech=_loud).push(audio))
    assert [(u.start_s, u.end_s) for u in whole.utterances] == [(u.start_s, u.end_s) for u in framed.utterances]
    assert (whole.early_starts, whole.early_starts_wasted) == (framed.early_starts, framed.early_starts_wasted)
