"""FirstSound: the app's end-of-speech -> first-sound figure, whichever half comes first."""

from __future__ import annotations

import pytest

from assistant.perceived import FirstSound


def test_turn_done_before_its_sound_starts():
    clock = FirstSound()
    assert clock.end_of_speech(1, 100.0) is None
    figure = clock.first_sound(1, 100.7, 0.1)
    assert figure is not None and figure.turn_id == 1
    assert figure.seconds == pytest.approx(0.8) and figure.player_delay_known
    assert figure.label() == "first sound 0.8 s"


def test_sound_starts_before_the_turn_is_done_and_later_segments_do_not_count():
    clock = FirstSound()
    assert clock.first_sound(2, 50.5, 0.12) is None
    assert clock.first_sound(2, 52.0, 0.12) is None  # a later start of the same turn changes nothing
    figure = clock.end_of_speech(2, 50.0)
    assert figure is not None and figure.seconds == pytest.approx(0.62)


def test_a_player_that_cannot_say_its_delay_is_named_in_the_label():
    clock = FirstSound()
    clock.end_of_speech(3, 10.0)
    figure = clock.first_sound(3, 11.0, None)
    assert figure is not None and not figure.player_delay_known
    assert figure.label() == "first sound 1.0 s + player delay"


def test_typed_turns_have_no_figure_and_old_halves_are_forgotten():
    clock = FirstSound()
    assert clock.end_of_speech(4, None) is None
    assert clock.first_sound(4, 10.0, 0.1) is None
    for turn in range(10, 60):
        clock.end_of_speech(turn, float(turn))
    assert len(clock._ends) <= FirstSound.KEEP
