"""The streaming sentence splitter: where pieces end, what is cleaned away, that chunking does not matter."""

from __future__ import annotations

import random

import pytest

from assistant.sentences import SentenceSplitter, clean_for_speech, ends_sentence, split_sentences


def stream(text: str, chunk_sizes: list[int] | None = None) -> list[str]:
    """Feed `text` in chunks (1 char each by default) and collect every piece, flush included."""
    splitter = SentenceSplitter()
    out: list[str] = []
    pos = 0
    sizes = iter(chunk_sizes or [])
    while pos < len(text):
        size = next(sizes, 1)
        out += splitter.feed(text[pos : pos + size])
        pos += size
    return out + splitter.flush()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you? I am fine!", ["Hello there.", "How are you?", "I am fine!"]),
        ("Mr. Smith met Dr. Jones. They talked.", ["Mr. Smith met Dr. Jones.", "They talked."]),
        ("Use a fruit, e.g. an apple. Or i.e. a pear.", ["Use a fruit, e.g. an apple.", "Or i.e. a pear."]),
        ("Pi is about 3.14. That is all.", ["Pi is about 3.14.", "That is all."]),
        ("It costs 3.5 dollars.", ["It costs 3.5 dollars."]),
        ("See example.com for more. Bye.", ["See example.com for more.", "Bye."]),
        (
            "Apples, pears etc. and plums. Fruit etc. The end.",
            ["Apples, pears etc. and plums.", "Fruit etc.", "The end."],
        ),
        ("J. K. Rowling wrote it. Yes.", ["J. K. Rowling wrote it.", "Yes."]),
        ("Really?! Yes!!", ["Really?!", "Yes!!"]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("Well... maybe. Well... The end.", ["Well... maybe.", "Well...", "The end."]),
        ("No trailing punctuation", ["No trailing punctuation"]),
        ("Ends with space after the stop.  \n", ["Ends with space after the stop."]),
    ],
)
def test_sentence_ends(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_list_items_split_at_line_breaks_and_lose_their_markers() -> None:
    text = "Three cities:\n1. **Paris** is big.\n2. Rome\n- Berlin\n* Madrid"
    assert split_sentences(text) == ["Three cities:", "Paris is big.", "Rome", "Berlin", "Madrid"]


def test_long_first_clause_is_cut_at_a_comma_so_speech_starts_early() -> None:
    text = (
        "The capital of France is Paris, a city known for the Eiffel Tower, its museums and its food. "
        "It is lovely, warm, and busy in the summer months when tourists come from everywhere."
    )
    pieces = split_sentences(text)
    assert pieces[0] == "The capital of France is Paris,"
    assert pieces[1] == "a city known for the Eiffel Tower, its museums and its food."
    # Only the first piece is cut at a comma: later sentences stay whole.
    assert pieces[2].startswith("It is lovely, warm, and busy")
    assert len(pieces) == 3


def test_short_first_sentence_is_not_cut_at_its_comma() -> None:
    assert split_sentences("Yes, it is. Paris is the capital.") == ["Yes, it is.", "Paris is the capital."]


def test_comma_cut_never_leaves_a_tiny_first_piece() -> None:
    text = "Well, the answer depends on many things we have not talked about yet, so let me ask."
    pieces = split_sentences(text)
    assert pieces[0] == "Well, the answer depends on many things we have not talked about yet,"


def test_a_long_first_sentence_is_cut_where_a_new_clause_starts() -> None:
    # The voice starts on "One fun fact about cats is" instead of waiting for the whole sentence (17 tokens of a
    # 1B model on a laptop: over a second); the cut goes before the clause word, never after "and".
    text = "One fun fact about cats is that they can be trained to play tricks. They are curious."
    assert split_sentences(text) == [
        "One fun fact about cats is", "that they can be trained to play tricks.", "They are curious.",
    ]  # fmt: skip
    assert stream(text) == split_sentences(text)  # the same when streamed char by char
    assert split_sentences("Boiling an egg is a simple and effective way to cook it. Yes.")[0] == (
        "Boiling an egg is a simple and effective way to cook it."
    )
    # Too few words before the clause word: no cut there.
    assert split_sentences("The ocean is salty because it holds minerals. Yes.")[0] == (
        "The ocean is salty because it holds minerals."
    )


def test_a_piece_is_released_as_soon_as_the_next_word_starts() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Paris is the capital") == []
    assert splitter.feed(".") == []  # could still be "capital.com" or an abbreviation
    assert splitter.feed(" ") == []  # the next word decides ("etc. and" vs "etc. The")
    assert splitter.feed("It") == ["Paris is the capital."]
    assert splitter.pending == "It"
    assert splitter.flush() == ["It"]
    assert splitter.pending == ""


def test_abbreviation_waits_for_the_next_word() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Ask Mr. ") == []
    assert splitter.feed("Smith now. Then") == ["Ask Mr. Smith now."]


def test_last_piece_stays_buffered_until_flush() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("One. Two.") == ["One."]
    assert splitter.feed(" ") == []
    assert splitter.flush() == ["Two."]


def test_emoji_only_tail_does_not_release_the_previous_piece_early() -> None:
    # The caller marks the final piece as the last one; a trailing emoji must not be that piece.
    splitter = SentenceSplitter()
    assert splitter.feed("Have a nice day! 😊") == []
    assert splitter.flush() == ["Have a nice day!"]


def test_code_blocks_are_not_read_aloud() -> None:
    text = "Here it is:\n```python\nprint('hi')\nx = 1\n```\nThat prints hi."
    assert split_sentences(text) == ["Here it is:", "That prints hi."]


@pytest.mark.parametrize(
    "text",
    [
        "Mr. Smith went to Washington. He met Dr. Jones, e.g. the famous one, and they talked. Then? No!",
        "The capital of France is Paris, a city that is known for the Eiffel Tower and its museums. Bye.",
        "List:\n1. One.\n2. Two\n\n**Bold** and _it_ text... The end 🎉",
        'Pi is 3.14159, roughly; the U.S. uses it too. Really?! "Yes." (Indeed.) Done',
    ],
)
def test_chunking_does_not_change_the_result(text: str) -> None:
    whole = split_sentences(text)
    assert stream(text) == whole
    rng = random.Random(7)
    for _ in range(20):
        sizes = [rng.randint(1, 8) for _ in range(len(text))]
        assert stream(text, sizes) == whole


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("**Paris** is the *capital*.", "Paris is the capital."),
        ("### Answer", "Answer"),
        ("> quoted text", "quoted text"),
        ("Use `pip install x` now.", "Use pip install x now."),
        ("See [the docs](https://example.com/docs) today.", "See the docs today."),
        ("Great job 🎉👍🏽!", "Great job!"),
        ("Flags 🇫🇷 and hearts ❤️ go.", "Flags and hearts go."),
        ("keep snake_case and 2 * 3", "keep snake_case and 2 * 3"),
        ("~~old~~ new", "old new"),
        ("multiple   spaces\nand lines", "multiple spaces and lines"),
        ("😊", ""),
        ("---", ""),
        ("It is 25°C.", "It is 25°C."),
    ],
)
def test_clean_for_speech(raw: str, spoken: str) -> None:
    assert clean_for_speech(raw) == spoken


def test_pieces_with_nothing_to_say_are_dropped() -> None:
    assert split_sentences("😊\n---\n") == []
    assert split_sentences("") == []


def test_reset_starts_a_new_reply() -> None:
    splitter = SentenceSplitter()
    splitter.feed("The capital of France is Paris, a city known for the Eiffel Tower, art and food.")
    assert splitter.pieces_released == 1
    splitter.reset()
    assert splitter.pending == ""
    assert splitter.pieces_released == 0


@pytest.mark.parametrize(
    ("piece", "ends"),
    [
        ("Paris is the capital.", True),
        ("Really?", True),
        ('He said "yes!"', True),
        ("It is lovely (in spring.)", True),
        ("Wait…", True),
        ("It was built in", False),
        ("It was built in 18", False),
        ("Paris, the capital,", False),
        ("Version 3.5", False),
    ],
)
def test_ends_sentence(piece: str, ends: bool) -> None:
    assert ends_sentence(piece) is ends
