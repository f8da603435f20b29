"""DialogueManager with a fake llama: history budget and trimming, streaming, cancellation mid-reply, errors.

The llama.cpp model is outside the unit: FakeLLM counts one token per word and streams a scripted reply.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from assistant.cancel import CancelToken
from assistant.dialogue import (
    MESSAGE_OVERHEAD_TOKENS,
    REPLY_PRIMING_TOKENS,
    DialogueManager,
    DialogueTurn,
    copied_pattern,
    degenerate_reason,
)
from assistant.errors import ConfigError, DialogueError, ModelError

SYSTEM = "You are a helpful voice assistant."


class FakeLLM:
    """Streams `script` one chunk per token, like llama-cpp-python's create_chat_completion(stream=True)."""

    def __init__(self, script: list[str], fail_after: int | None = None) -> None:
        self.script = script
        self.fail_after = fail_after
        self.max_tokens: int | None = None  # from the last call; the stream ends there ("length")
        self.calls: list[list[dict[str, str]]] = []
        self.produced = 0  # tokens handed out by the current stream
        self.closed = False
        self.on_token: Any = None  # called with the count after each token (to cancel from "another thread")

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return list(range(len(text.decode("utf-8").split())))

    def create_chat_completion(self, messages: list[dict[str, str]], **kwargs: Any) -> Iterator[dict]:
        assert kwargs["stream"] is True
        self.calls.append([dict(m) for m in messages])
        self.max_tokens = kwargs.get("max_tokens")
        self.produced = 0
        self.closed = False
        return self._stream()

    def _stream(self) -> Iterator[dict]:
        try:
            yield {"choices": [{"delta": {"role": "assistant"}, "finish_reason": None}]}
            for token in self.script:
                if self.max_tokens is not None and self.produced >= self.max_tokens:
                    yield {"choices": [{"delta": {}, "finish_reason": "length"}]}  # as llama-cpp-python ends
                    return
                if self.fail_after is not None and self.produced >= self.fail_after:
                    raise RuntimeError("llama_decode returned -3")
                self.produced += 1
                if self.on_token:
                    self.on_token(self.produced)
                yield {"choices": [{"delta": {"content": token}, "finish_reason": None}]}
            yield {"choices": [{"delta": {}, "finish_reason": "stop"}]}
        finally:
            self.closed = True


def tokens_of(reply: str) -> list[str]:
    """Split a reply into word-ish tokens with their leading space, as a BPE model streams them."""
    words = reply.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


def manager(script: list[str], **kwargs: Any) -> tuple[DialogueManager, FakeLLM]:
    llm = FakeLLM(script)
    kwargs.setdefault("n_ctx", 2048)
    return DialogueManager("unused.gguf", SYSTEM, llm=llm, **kwargs), llm


def cost(text: str) -> int:
    return len(text.split()) + MESSAGE_OVERHEAD_TOKENS


def test_reply_streams_sentences_and_returns_the_reply() -> None:
    dm, llm = manager(tokens_of("Paris is the capital of France. It is lovely in spring! Anything else?"))
    gen = dm.stream_reply("What is the capital of France?", CancelToken())
    sentences = []
    while True:
        try:
            sentences.append(next(gen))
        except StopIteration as done:
            reply = done.value
            break
    assert [s.text for s in sentences] == [
        "Paris is the capital of France.",
        "It is lovely in spring!",
        "Anything else?",
    ]
    assert [s.index for s in sentences] == [0, 1, 2]
    assert [s.is_last for s in sentences] == [False, False, True]
    assert reply is dm.last_reply
    assert reply.text == "Paris is the capital of France. It is lovely in spring! Anything else?"
    assert reply.sentences == tuple(s.text for s in sentences)
    assert not reply.cancelled
    assert dm.last_completion_tokens == len(llm.script)
    assert llm.calls[0] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    assert [(t.user_text, t.reply_text, t.interrupted) for t in dm.history] == [
        ("What is the capital of France?", reply.text, False)
    ]


def test_first_sentence_is_released_before_generation_ends() -> None:
    script = tokens_of("Paris is the capital. " + "It has many old museums and parks to see. " * 5)
    dm, llm = manager(script)
    first = next(dm.stream_reply("Tell me about Paris", CancelToken()))
    assert first.text == "Paris is the capital."
    assert llm.produced < len(script) // 4  # released right after the next word began


def test_markdown_and_emoji_are_not_spoken_but_kept_in_the_reply_text() -> None:
    dm, _ = manager(tokens_of("**Paris** is the capital. 😊"))
    reply = dm.reply("Capital of France?")
    assert reply.sentences == ("Paris is the capital.",)
    assert reply.text == "**Paris** is the capital. 😊"


def test_history_is_sent_back_as_alternating_turns() -> None:
    dm, llm = manager(tokens_of("Sure."))
    dm.reply("first question")
    dm.reply("second question")
    assert llm.calls[1] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "Sure."},
        {"role": "user", "content": "second question"},
    ]


# Ten words each, all different: a repeated reply would be kept out of history (tested further down).
TEN_WORD_REPLIES = (
    "one two three four five six seven eight nine ten.",
    "Red apples grow on tall trees in the autumn sun.",
    "My favourite river runs quietly past old stone mills there.",
    "Bright stars shine above cold mountains during long winter nights.",
    "Fresh bread smells wonderful when you open the bakery door.",
    "Small boats sail across calm water toward the harbour lights.",
)


def test_oldest_turns_are_trimmed_to_stay_within_the_budget() -> None:
    turn_cost = cost("question number x") + cost(TEN_WORD_REPLIES[0])  # 8 + 15 = 23 tokens
    fixed = cost(SYSTEM) + cost("question number x") + REPLY_PRIMING_TOKENS  # 11 + 8 + 3 = 22 tokens
    budget = fixed + 3 * turn_cost + 5  # room for exactly three past turns
    dm, llm = manager([], history_budget_tokens=budget, max_tokens=100)
    for i in range(6):
        llm.script = tokens_of(TEN_WORD_REPLIES[i])
        dm.reply(f"question number {i}")
    sent = llm.calls[-1]
    assert sent[0] == {"role": "system", "content": SYSTEM}  # always kept
    users = [m["content"] for m in sent if m["role"] == "user"]
    # At question 4 four past turns overflowed: trimmed to half the room (37 tokens: one turn) in one step.
    assert users == ["question number 3", "question number 4", "question number 5"]
    total = sum(cost(m["content"]) for m in sent) + REPLY_PRIMING_TOKENS
    assert total <= budget
    # Dropped turns are gone from history too; the last reply was added after the prompt was built.
    assert [t.user_text for t in dm.history] == [f"question number {i}" for i in (3, 4, 5)]


def test_trimming_keeps_the_cached_prefix_for_several_turns() -> None:
    """Each prompt extends the one before (llama.cpp evaluates only the new tokens), except at a trim, which comes
    at most once every few turns; and no prompt exceeds the budget."""
    turn_cost = cost("question number x") + cost(TEN_WORD_REPLIES[0])
    fixed = cost(SYSTEM) + cost("question number x") + REPLY_PRIMING_TOKENS
    budget = fixed + 8 * turn_cost  # room for eight past turns
    dm, llm = manager([], history_budget_tokens=budget, max_tokens=100)
    syllables = [a + b for a in ("ba", "ke", "ti", "mo", "su", "ra", "lo", "ni") for b in ("dan", "per", "vix", "gol")]
    rng = random.Random(7)
    for i in range(60):  # ten-word replies that differ enough not to be kept out as repeats
        llm.script = tokens_of(" ".join(rng.sample(syllables, 10)).capitalize() + ".")
        dm.reply(f"question number {i}")
    assert len(dm.history) >= 4  # the replies were remembered (not kept out as repeats)
    prefix_changes = []
    for i in range(1, len(llm.calls)):
        before, now = llm.calls[i - 1][:-1], llm.calls[i]  # the previous prompt without its question
        if now[: len(before)] != before:
            prefix_changes.append(i)
        assert sum(cost(m["content"]) for m in now) + REPLY_PRIMING_TOKENS <= budget
    gaps = [b - a for a, b in zip(prefix_changes, prefix_changes[1:])]
    assert prefix_changes and min(gaps) >= 4, prefix_changes  # one-turn trimming changed it on every turn
    assert len(prefix_changes) <= 60 // 4


def test_system_prompt_and_question_are_kept_even_when_no_history_fits() -> None:
    dm, llm = manager(
        tokens_of("A fairly long answer that uses up the budget quickly."), history_budget_tokens=30
    )
    dm.reply("one")
    dm.reply("two")
    assert llm.calls[-1] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "two"}]


def test_message_longer_than_the_context_is_refused_with_advice() -> None:
    dm, _ = manager(["Ok."], n_ctx=64, max_tokens=16, history_budget_tokens=32)
    with pytest.raises(DialogueError, match="fewer words"):
        dm.reply("word " * 60)


def test_budget_plus_reply_must_fit_the_context() -> None:
    with pytest.raises(ConfigError, match="history_budget_tokens"):
        DialogueManager(
            "x.gguf", SYSTEM, n_ctx=1024, max_tokens=160, history_budget_tokens=1000, llm=FakeLLM([])
        )


def test_reset_forgets_the_conversation() -> None:
    dm, llm = manager(tokens_of("Fine."))
    dm.reply("hello")
    dm.reset()
    assert dm.history == ()
    dm.reply("again")
    assert llm.calls[-1] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "again"}]


def test_cancel_after_first_sentence_stops_generation_and_keeps_it_as_interrupted() -> None:
    script = tokens_of("Paris is the capital. " + "It has many old museums and parks to see. " * 10)
    dm, llm = manager(script)
    token = CancelToken()
    got = []
    for sentence in dm.stream_reply("Tell me about Paris", token):
        got.append(sentence.text)
        token.cancel("new user speech")
    assert got == ["Paris is the capital."]
    assert llm.closed  # llama's generator was closed: no more tokens computed
    assert llm.produced < 10
    reply = dm.last_reply
    assert reply is not None and reply.cancelled
    assert reply.sentences == ("Paris is the capital.",)
    assert [(t.reply_text, t.interrupted) for t in dm.history] == [("Paris is the capital.", True)]


def test_cancel_from_another_thread_before_any_sentence_drops_the_turn() -> None:
    dm, llm = manager(tokens_of("This sentence is long and will not finish before the cancel arrives here."))
    token = CancelToken()
    llm.on_token = lambda n: token.cancel() if n == 3 else None
    assert list(dm.stream_reply("question", token)) == []
    assert llm.closed and llm.produced == 3
    assert dm.last_reply is not None and dm.last_reply.cancelled
    assert dm.history == ()


def test_closing_the_generator_early_counts_as_cancelled_and_frees_the_model() -> None:
    dm, llm = manager(tokens_of("One. Two. Three. Four."))
    for _ in dm.stream_reply("count", CancelToken()):
        break  # the consumer walks away; the generator is closed when dropped
    assert llm.closed
    assert dm.last_reply is not None and dm.last_reply.cancelled
    assert dm.history[-1].interrupted
    # The model lock was released: a new turn runs.
    done = threading.Event()
    threading.Thread(target=lambda: (dm.reply("again"), done.set()), daemon=True).start()
    assert done.wait(10)
    assert dm.last_reply is not None and not dm.last_reply.cancelled


def test_generation_failure_becomes_dialogue_error_and_is_not_remembered() -> None:
    dm, llm = manager(tokens_of("Paris is the capital. It is big."))
    llm.fail_after = 6
    with pytest.raises(DialogueError, match="llama_decode"):
        list(dm.stream_reply("question", CancelToken()))
    assert dm.history == ()
    assert dm.last_reply is not None and dm.last_reply.cancelled
    llm.fail_after = None
    assert dm.reply("question").text == "Paris is the capital. It is big."


def test_empty_question_is_refused() -> None:
    dm, _ = manager(["Ok."])
    with pytest.raises(ValueError):
        list(dm.stream_reply("   ", CancelToken()))


def test_missing_model_names_the_path(tmp_path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelError, match="nope.gguf") as err:
        DialogueManager(missing, SYSTEM).load()
    assert "assistant models download" in str(err.value)


def test_file_that_is_not_gguf_is_refused_before_llama_sees_it(tmp_path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    with pytest.raises(ModelError, match="not a GGUF file"):
        DialogueManager(bad, SYSTEM).load()


# ---- replies cut off by max_tokens ----
def test_reply_cut_off_by_max_tokens_ends_at_its_last_complete_sentence() -> None:
    script = tokens_of(
        "Paris is the capital of France. It is lovely in spring! The Eiffel Tower was built in 1889."
    )
    dm, _ = manager(script, max_tokens=14)  # stops after "built": the third sentence is unfinished
    gen = dm.stream_reply("Tell me about Paris", CancelToken())
    sentences = []
    while True:
        try:
            sentences.append(next(gen))
        except StopIteration as done:
            reply = done.value
            break
    assert [s.text for s in sentences] == ["Paris is the capital of France.", "It is lovely in spring!"]
    assert reply.text == "Paris is the capital of France. It is lovely in spring!"
    assert not reply.cancelled
    assert [t.reply_text for t in dm.history] == [reply.text]  # the half sentence is not remembered either


def test_reply_cut_off_mid_word_in_its_first_sentence_keeps_the_whole_words() -> None:
    dm, _ = manager(["The", " Eiffel", " Tower", " was", " bui", "lt", " in", " 1889."], max_tokens=5)
    reply = dm.reply("Tell me about Paris")
    assert reply.sentences == ("The Eiffel Tower was",)  # "bui" may be half a word
    assert reply.text == "The Eiffel Tower was"


def test_reply_that_fits_max_tokens_is_untouched() -> None:
    dm, _ = manager(tokens_of("No full stop at the end"), max_tokens=100)
    assert dm.reply("Say something").sentences == ("No full stop at the end",)


# ---- degenerate replies stay out of history ----
FRENCH = "Paris est la capitale de la France. Elle est située sur la Seine et elle est très belle."


@pytest.mark.parametrize(
    ("reply", "earlier", "why"),
    [
        (FRENCH, [], "not English"),
        ("El cielo es azul porque la luz del sol se dispersa.", [], "not English"),
        ("東京は日本の首都です。とても大きな都市です。", [], "non-Latin"),
        ("Paris is the capital of France.", ["Paris is the capital of France."], "repeats"),
        ("paris is the capital of france!", ["Paris is the capital of France."], "repeats"),
        ("Paris is the capital city of France.", ["Paris is the capital of France."], "repeats"),
    ],
)
def test_degenerate_replies_are_recognised(reply: str, earlier: list[str], why: str) -> None:
    reason = degenerate_reason(reply, earlier, "en")
    assert reason is not None and why in reason


@pytest.mark.parametrize(
    ("reply", "earlier"),
    [
        ("Le Grand Paris is the capital of France.", []),  # wrong, but English
        ("Bonjour!", []),  # too short to judge a language
        ("I went to a café in Montréal with my friend.", []),
        ("Yes.", ["Yes."]),  # a short answer may honestly repeat
        ("Berlin is the capital of Germany.", ["Paris is the capital of France."]),
    ],
)
def test_ordinary_replies_are_not_degenerate(reply: str, earlier: list[str]) -> None:
    assert degenerate_reason(reply, earlier, "en") is None


def test_language_is_only_judged_for_english() -> None:
    assert degenerate_reason(FRENCH, [], "fr") is None


def test_a_reply_in_another_language_is_answered_but_not_remembered() -> None:
    dm, llm = manager(tokens_of(FRENCH))
    reply = dm.reply("What is the capital of France?")
    assert reply.text == FRENCH and len(reply.sentences) == 2  # the user still gets it, once
    assert dm.history == ()
    llm.script = tokens_of("Paris is the capital of France.")
    dm.reply("And what is it known for?")
    # The next question is not sent with the French paragraph, so the model cannot copy it.
    assert all(FRENCH not in m["content"] for m in llm.calls[-1])
    assert [t.user_text for t in dm.history] == ["And what is it known for?"]


def test_a_reply_repeating_an_earlier_one_is_not_remembered_again() -> None:
    dm, llm = manager(tokens_of("Paris is the capital of France and a lovely city."))
    dm.reply("What is the capital of France?")
    dm.reply("What is the capital of Germany?")  # the model answers the same paragraph again
    assert [t.user_text for t in dm.history] == ["What is the capital of France?"]
    llm.script = tokens_of("Berlin is the capital of Germany.")
    dm.reply("Are you sure?")
    assert [t.reply_text for t in dm.history] == [
        "Paris is the capital of France and a lovely city.",
        "Berlin is the capital of Germany.",
    ]


def test_an_interrupted_degenerate_reply_is_not_remembered_either() -> None:
    dm, _ = manager(tokens_of(FRENCH + " " + FRENCH))
    token = CancelToken()
    for _ in dm.stream_reply("What is the capital of France?", token):
        token.cancel("new user speech")
    assert dm.last_reply is not None and dm.last_reply.cancelled
    assert dm.history == ()


# ---- replies copying an earlier reply's pattern stay out of history, with the reply they copy ----
SPIDER = ("How many legs does a spider have?", "The answer is 1. The spider has one leg on each side.")
EVEREST = ("How tall is Mount Everest?", "The answer is 8,720.69 feet.")
CAPITAL_OF_FRANCE = ("What is the capital of France?", "Paris is the capital of France.")


def turns(*exchanges: tuple[str, str]) -> list[DialogueTurn]:
    return [DialogueTurn(question, reply, tokens=0) for question, reply in exchanges]


@pytest.mark.parametrize(
    ("question", "reply", "earlier", "copied"),
    [
        # The reported conversation: the frame of the first answer, filled in for unrelated questions.
        ("How tall is Mount Everest?", "The answer is 8,720.69 feet.", [SPIDER], [0]),
        ("How long is the Golden Gate?", "The answer is 1,920.67 inches (483.5 cm).", [SPIDER, EVEREST], [0, 1]),
        # Another opening with the same filler ahead of the number.
        ("How long is a bus?", "The answer is about 1,920.67 inches (483.5 cm).", [SPIDER], [0]),
        # The same template, numbers refilled, nothing of the question in it.
        (
            "How tall is the Eiffel Tower?",
            "That would be 2,150.3 inches (546.2 cm).",
            [("How long is a bus?", "That would be 1,920.67 inches (483.5 cm).")],
            [0],
        ),
    ],
)
def test_a_reply_copying_an_earlier_pattern_is_recognised(question, reply, earlier, copied) -> None:
    history = turns(*earlier)
    assert copied_pattern(question, reply, history) == [history[i] for i in copied]


@pytest.mark.parametrize(
    ("question", "reply", "earlier"),
    [
        # Short factual answers share a shape; the shared words were asked for, or are names and numbers.
        ("What is the capital of Japan?", "Tokyo is the capital of Japan.", CAPITAL_OF_FRANCE),
        ("Tell me about Tokyo.", "Tokyo is the capital of Japan.", ("Tell me about Paris.", CAPITAL_OF_FRANCE[1])),
        ("And Japan?", "The capital of Japan is Tokyo.", (CAPITAL_OF_FRANCE[0], "The capital of France is Paris.")),
        ("What is two plus two?", "The answer is 4.", ("What is the answer to 3 + 3?", "The answer is 6.")),
        ("How tall is the Eiffel Tower?", "It is 330 metres tall.", ("How tall is Big Ben?", "It is 96 metres tall.")),
        ("How tall is it?", "The Eiffel Tower is 330 metres tall.", ("A fact?", "The Eiffel Tower is in Paris.")),
        ("How far is it?", "About 384,400 kilometres away.", ("And the sun?", "About 150 million kilometres away.")),
        ("Tell me a poem.", "Sure! Here's a poem about the sea.", ("A joke?", "Sure! Here's a joke about cats.")),
        ("Why is the sky blue?", "Sunlight scatters off air, blue light the most.", CAPITAL_OF_FRANCE),
    ],
)
def test_answers_sharing_a_shape_are_not_copies(question: str, reply: str, earlier: tuple[str, str]) -> None:
    assert copied_pattern(question, reply, turns(earlier)) == []


def test_the_copied_pattern_leaves_the_history_with_the_reply_it_copied() -> None:
    dm, llm = manager(tokens_of(SPIDER[1]))
    dm.reply(SPIDER[0])
    assert [t.reply_text for t in dm.history] == [SPIDER[1]]
    llm.script = tokens_of(EVEREST[1])
    reply = dm.reply(EVEREST[0])
    assert reply.text == EVEREST[1]  # the user still gets it
    assert dm.history == ()  # neither it nor the answer it copied is sent again
    llm.script = tokens_of("The Golden Gate Bridge is about 2.7 kilometres long.")
    dm.reply("How long is the Golden Gate Bridge?")
    assert llm.calls[-1] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "How long is the Golden Gate Bridge?"},
    ]
    assert [t.user_text for t in dm.history] == ["How long is the Golden Gate Bridge?"]


def test_short_factual_answers_to_different_questions_are_all_remembered() -> None:
    dm, llm = manager([])
    exchanges = [
        CAPITAL_OF_FRANCE,
        ("What is the capital of Japan?", "Tokyo is the capital of Japan."),
        ("And of Italy?", "The capital of Italy is Rome."),
        ("How tall is the Eiffel Tower?", "The Eiffel Tower is 330 metres tall."),
    ]
    for question, answer in exchanges:
        llm.script = tokens_of(answer)
        dm.reply(question)
    assert [(t.user_text, t.reply_text) for t in dm.history] == exchanges
