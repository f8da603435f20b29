"""The ledger of what the avatar really said: a cut reply's history is settled once every queued segment reported."""

from assistant.live.spoken import SpokenLedger, said_part


def test_a_reply_said_in_full_needs_no_verdict():
    ledger = SpokenLedger()
    ledger.queued(1, 0, "One two.")
    assert ledger.finished(1, 0, "One two.", 1.0, 1.0, False) is None


def test_cut_mid_segment_keeps_the_full_segments_and_the_played_words():
    ledger = SpokenLedger()
    ledger.queued(1, 0, "Paris is the capital.")
    ledger.queued(1, 1, "It lies on the Seine river.")
    ledger.queued(1, 2, "Many people visit it.")
    assert ledger.finished(1, 0, "Paris is the capital.", 1.5, 1.5, False) is None
    assert ledger.finished(1, 2, "Many people visit it.", 0.0, 1.2, True) is None  # dropped unsaid, reported first
    verdict = ledger.finished(1, 1, "It lies on the Seine river.", 1.0, 2.0, True)  # the fade ends it half-way
    assert verdict is not None and verdict.turn_id == 1
    assert verdict.spoken_text == "Paris is the capital. It lies on"
    assert verdict.played_s == 2.5
    assert ledger.finished(1, 1, "x", 0.0, 1.0, True) is None  # settled once


def test_cut_between_segments_waits_for_the_turn_to_end():
    ledger = SpokenLedger()
    ledger.queued(4, 0, "First sentence.")
    assert ledger.finished(4, 0, "First sentence.", 1.0, 1.0, False) is None
    verdict = ledger.turn_cut(4)  # the turn was cancelled before its next sentence was queued
    assert verdict is not None and verdict.spoken_text == "First sentence."


def test_a_cancelled_turn_settles_only_after_the_fading_segment_reports():
    ledger = SpokenLedger()
    ledger.queued(2, 0, "Alpha beta gamma delta.")
    assert ledger.turn_cut(2) is None  # the fade has not ended yet
    verdict = ledger.finished(2, 0, "Alpha beta gamma delta.", 0.5, 1.0, True)
    assert verdict is not None and verdict.spoken_text == "Alpha beta"


def test_nothing_said_gives_an_empty_reply():
    ledger = SpokenLedger()
    verdict = ledger.turn_cut(7)
    assert verdict is not None and verdict.spoken_text == "" and verdict.played_s == 0.0


def test_said_part_in_proportion():
    assert said_part("a b c d", 0.5, 1.0) == "a b"
    assert said_part("a b c d", 2.0, 1.0) == "a b c d"
    assert said_part("a b c d", 0.0, 1.0) == ""
