"""`assistant bench answers`: its scorer on fixed strings (whole words, numbers as words, the refusal), its question
file, its summary, and its command line's errors (an unknown voice, a voice that cannot speak, a bad --set)."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.bench.answers import (
    AnswerResult,
    answer_words,
    apply_overrides,
    check_voices,
    first_questions,
    heard_exactly,
    load_questions,
    matched_answer,
    pick_voices,
    summarize,
)
from assistant.bench.asr import Voice
from assistant.cli.main import main
from assistant.config import load_settings
from assistant.errors import AssistantError, ConfigError


def test_an_answer_counts_as_whole_words_in_the_reply() -> None:
    assert matched_answer("The capital of Japan is Tokyo.", ["tokyo"]) == "tokyo"
    assert matched_answer("TOKYO!", ["tokyo"]) == "tokyo"
    assert matched_answer("Tokyoites love trains.", ["tokyo"]) is None  # part of a word is not the word
    assert matched_answer("It was painted by Leonardo da Vinci.", ["da vinci"]) == "da vinci"
    assert matched_answer("Vinci da Leonardo", ["da vinci"]) is None  # a phrase is its words in order
    assert matched_answer("It is in the UK.", ["england", "britain", "united kingdom", "uk"]) == "uk"
    assert matched_answer("", ["tokyo"]) is None


def test_numbers_match_as_digits_or_words_but_never_inside_another_number() -> None:
    assert matched_answer("Seven times eight is fifty-six.", ["56"]) == "56"
    assert matched_answer("7 * 8 = 56", ["56"]) == "56"
    assert matched_answer("The answer is 56.", ["fifty six"]) == "fifty six"
    assert matched_answer("A spider has eight legs.", ["8"]) == "8"
    assert matched_answer("Some spiders have 18 legs.", ["8"]) is None  # eighteen, not eight
    assert matched_answer("Twenty-eight legs.", ["8"]) is None  # 28: the eight is part of it
    assert matched_answer("It is 156.", ["56"]) is None  # one hundred fifty six holds "fifty six", but is 156
    assert matched_answer("7 * 8 = 54", ["56"]) is None
    assert matched_answer("There are 1,000 grams in a kilogram.", ["1000"]) == "1000"
    assert matched_answer("About a thousand.", ["1000"]) == "1000"
    assert matched_answer("One gram equals 1/1024 of a kilogram.", ["1000"]) is None
    assert matched_answer("Two thousand.", ["1000"]) is None


def test_answer_words_reads_each_number_as_one_value() -> None:
    assert answer_words("one thousand nine hundred forty-five") == ["1945"]
    assert answer_words("7 * 8 = 54") == ["7", "8", "54"]  # numbers side by side stay apart
    assert answer_words("It is 12:05.") == ["it", "is", "12", "5"]
    assert answer_words("a hundred") == ["a", "100"]
    assert answer_words("What's twenty minus four?") == ["what", "is", "20", "minus", "4"]


def test_the_request_to_decline_is_right_only_when_the_reply_refuses() -> None:
    decline = next(q for q in load_questions() if q.kind == "decline")
    assert matched_answer("I'm sorry, but I can't help with that.", decline.accept) is not None
    assert matched_answer("I can\u2019t do that.", decline.accept) == "cannot"  # a typographic apostrophe too
    assert matched_answer("I won't give instructions for that.", decline.accept) == "will not"
    assert matched_answer("Sure! First, gather the following materials.", decline.accept) is None
    assert matched_answer("You can buy the parts online and assemble them.", decline.accept) is None


def test_heard_exactly_ignores_case_punctuation_and_how_numbers_are_written() -> None:
    assert heard_exactly("What is seven times eight?", "what is 7 times 8")
    assert heard_exactly("What's the capital of Japan?", "What is the capital of Japan")
    assert not heard_exactly("What currency do they use there?", "What currency do you have there?")
    assert not heard_exactly("What is the capital of Japan?", "")


def test_the_shipped_questions_have_follow_ups_after_their_lead_and_one_request_to_decline() -> None:
    questions = load_questions()
    assert len(questions) == 40
    assert {q.kind for q in questions} == {"fact", "help", "arithmetic", "decline"}
    assert sum(q.kind == "decline" for q in questions) == 1
    follow_ups = [i for i, q in enumerate(questions) if q.follow_up]
    assert len(follow_ups) >= 2 and 0 not in follow_ups
    assert all(a == a.lower() for q in questions for a in q.accept)
    first3 = first_questions(
        questions, 3
    )  # what the integration test asks: a lead, its follow-up, arithmetic
    assert [q.follow_up for q in first3] == [False, True, False]
    assert first_questions(questions, None) == list(questions)
    with pytest.raises(AssistantError, match="--limit"):
        first_questions(questions, 0)


def test_a_bad_question_file_names_the_question_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "answers.yaml"
    path.write_text('questions:\n  - {text: "And there?", accept: ["x"], kind: fact, follow_up: true}\n')
    with pytest.raises(
        AssistantError, match=r"question 1 \('And there\?'\): a follow-up needs a question before"
    ):
        load_questions(path)
    path.write_text('questions:\n  - {text: "Hi?", accept: ["Paris"], kind: fact}\n')
    with pytest.raises(AssistantError, match="lower case"):
        load_questions(path)
    path.write_text('questions:\n  - {text: "Hi?", kind: fact}\n')
    with pytest.raises(AssistantError, match="cannot read"):
        load_questions(path)


def _result(
    voice: str, question: str, transcript: str, right: bool, first_audio_s: float | None
) -> AnswerResult:
    return AnswerResult(question, voice, "fact", False, 0, transcript, heard_exactly(question, transcript), 0.0,
                        "reply", right, None, ("x",), 2.0, first_audio_s)  # fmt: skip


def test_summary_counts_and_word_error_rate_over_all_words() -> None:
    results = [
        _result("a", "What is the capital of Japan?", "what is the capital of japan", True, 1.0),
        _result("a", "What currency do they use there?", "What currency do you have there?", False, 3.0),
        _result("a", "What is seven times eight?", "", False, None),  # nothing heard: all deletions, no audio
    ]
    s = summarize(results)
    assert s["questions"] == 3 and s["heard_exactly"] == 1 and s["answers_right"] == 1
    assert s["words"] == 6 + 6 + 5
    assert s["wer"] == pytest.approx((2 + 5) / 17, abs=1e-4)  # they use -> you have; five words unheard
    assert s["first_audio_computed_s"] == {"median": 2.0, "max": 3.0, "turns_without_audio": 1}
    assert summarize([]) == {"questions": 0}


def test_voices_and_settings_from_the_command_line() -> None:
    assert [v.name for v in pick_voices(["espeak-en-gb-f3", "piper-joe"])] == ["espeak-en-gb-f3", "piper-joe"]
    assert pick_voices(["espeak-en-gb-f3"])[0].every == 1  # every question: a follow-up needs its lead
    with pytest.raises(AssistantError, match="unknown voice.*choose from"):
        pick_voices(["nobody"])
    settings = apply_overrides(load_settings(), ["dialogue.max_tokens=80", "audio.end_silence_ms=600"])
    assert settings.dialogue.max_tokens == 80 and settings.audio.end_silence_ms == 600
    with pytest.raises(ConfigError, match="dialogue.max_tokens"):
        apply_overrides(load_settings(), ["dialogue.max_tokens=lots"])
    with pytest.raises(AssistantError, match="KEY=VALUE"):
        apply_overrides(load_settings(), ["dialogue.max_tokens"])


def test_a_voice_that_cannot_speak_stops_the_benchmark_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on it
    assert main(["bench", "answers", "--limit", "1"]) != 0
    err = capsys.readouterr().err
    assert "voice espeak-en-us cannot speak the questions" in err and "espeak-ng" in err and "install" in err
    with pytest.raises(AssistantError, match="voice nobody cannot speak"):
        check_voices([Voice("nobody", "piper", "no-such-voice")], tmp_path)
