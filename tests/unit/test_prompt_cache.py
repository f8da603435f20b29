"""The context shift at a history trim, against a fake llama that keeps a KV cache the way llama.cpp does: the dropped
turns leave the cache, what follows moves down, and the next reply evaluates only the new exchange instead of the
whole kept history. When the cache does not hold what the template renders, nothing is touched.

The fake uses llama-cpp-python's own Jinja chat formatter (no model is loaded) and one token per byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from assistant.dialogue import DialogueManager
from assistant.prompt_cache import PromptCache

pytest.importorskip("llama_cpp")
from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # noqa: E402

# SmolLM2's template (the bundled model), ChatML with a default system prompt when none is given.
TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def reply_to(question: str) -> str:
    """A different reply for each question (a repeated one would be kept out of the history)."""
    words = [hashlib.sha1(f"{question}{k}".encode()).hexdigest()[:8] for k in range(4)]
    return " ".join(words) + "."


class FakeContext:
    """llama.cpp's KV cache for one sequence: the token at each cell's position."""

    def __init__(self) -> None:
        self.cells: dict[int, int] = {}  # position -> token

    def kv_cache_seq_rm(self, seq_id: int, p0: int, p1: int) -> bool:
        end = p1 if p1 >= 0 else 1 << 30
        self.cells = {p: t for p, t in self.cells.items() if not p0 <= p < end}
        return True

    def kv_cache_seq_shift(self, seq_id: int, p0: int, p1: int, shift: int) -> None:
        end = p1 if p1 >= 0 else 1 << 30
        self.cells = {(p + shift if p0 <= p < end else p): t for p, t in self.cells.items()}

    def sequence(self) -> list[int]:
        assert sorted(self.cells) == list(range(len(self.cells))), "positions must stay contiguous"
        return [self.cells[p] for p in range(len(self.cells))]


class FakeModel:
    def token_get_text(self, token: int) -> str:
        return {1: "<|im_start|>", 2: "<|im_end|>"}[token]


class FakeLlama:
    """What PromptCache and DialogueManager use of llama_cpp.Llama, with its prefix reuse (Llama.generate)."""

    chat_format = "chat_template.default"
    chat_handler = None
    metadata = {"tokenizer.chat_template": TEMPLATE}

    def __init__(self, n_ctx: int = 4096) -> None:
        self._model = FakeModel()
        self._ctx = FakeContext()
        self.input_ids = np.zeros(n_ctx, dtype=np.intc)
        self.n_tokens = 0
        self._requires_eval = False
        self.evaluated: list[int] = []  # prompt tokens evaluated per reply
        self._formatter = Jinja2ChatFormatter(TEMPLATE, "<|im_end|>", "<|im_start|>", add_generation_prompt=True)

    def token_eos(self) -> int:
        return 2

    def token_bos(self) -> int:
        return 1

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return list(text)  # one token per byte: every byte of the prompt counts

    def create_chat_completion(self, messages: list[dict[str, str]], **kwargs: Any) -> Iterator[dict]:
        prompt = self.tokenize(self._formatter(messages=messages).prompt.encode("utf-8"))
        cached = [int(t) for t in self.input_ids[: self.n_tokens]]
        assert self._ctx.sequence() == cached, "the KV cache and input_ids disagree"
        reused = 0
        while reused < min(len(cached), len(prompt)) and cached[reused] == prompt[reused]:
            reused += 1
        reused = min(reused, len(prompt) - 1)
        self._ctx.kv_cache_seq_rm(-1, reused, -1)
        self.evaluated.append(len(prompt) - reused)
        reply = reply_to(messages[-1]["content"])
        generated = prompt + list(reply.encode())
        for pos in range(reused, len(generated)):
            self._ctx.cells[pos] = generated[pos]
        self.input_ids[: len(generated)] = generated
        self.n_tokens = len(generated)
        return iter(
            [{"choices": [{"delta": {"content": w}, "finish_reason": None}]} for w in _pieces(reply)]
            + [{"choices": [{"delta": {}, "finish_reason": "stop"}]}]
        )


def _pieces(text: str) -> list[str]:
    """Streamed chunks with their leading spaces, as a BPE model streams words."""
    words = text.split(" ")
    return [words[0]] + [" " + w for w in words[1:]]


@pytest.fixture
def shifting(monkeypatch):
    monkeypatch.setattr(PromptCache, "_can_shift", lambda self: True)


def _manager(llm: FakeLlama, system: str = "Be brief.") -> DialogueManager:
    # Budget in model tokens (bytes here): room for ~8 exchanges of ~40 bytes each.
    return DialogueManager("unused.gguf", system, n_ctx=4096, max_tokens=64, history_budget_tokens=400, llm=llm)


@pytest.mark.parametrize("system", ["Be brief.", ""])  # "": the template adds its own system prompt
def test_a_trim_shifts_the_dropped_turns_out_and_only_the_new_exchange_is_evaluated(shifting, system) -> None:
    llm = FakeLlama()
    dm = _manager(llm, system)
    shifted_at = []
    for i in range(30):
        dm.reply(f"Question number {i:02d}?")
        if dm.last_cache_shift_tokens:
            shifted_at.append(i)
        assert dm.last_prompt_eval_tokens == llm.evaluated[-1]  # what the dialogue reports is what was evaluated
    assert len(shifted_at) >= 2  # the budget filled and was trimmed more than once
    # One exchange: the end of the cached reply, the next question, the reply's opening (the reply itself is cached).
    exchange = len("<|im_end|>\n<|im_start|>user\nQuestion number 00?<|im_end|>\n<|im_start|>assistant\n")
    assert len(dm.history) >= 2  # a trim keeps several turns: re-evaluating them would cost several exchanges
    # Every reply after the first evaluated about one exchange, trims included; without the shift a trim
    # re-evaluated every kept turn (over 200 tokens here).
    assert max(llm.evaluated[1:]) <= exchange, llm.evaluated


def test_without_a_shift_a_trim_re_evaluates_the_kept_history(monkeypatch) -> None:
    """The control: the same conversation on a model that cannot shift."""
    monkeypatch.setattr(PromptCache, "_can_shift", lambda self: False)
    llm = FakeLlama()
    dm = _manager(llm)
    for i in range(30):
        dm.reply(f"Question number {i:02d}?")
    assert max(llm.evaluated[1:]) > 150


def test_a_cache_that_does_not_hold_the_rendered_turns_is_left_alone(shifting) -> None:
    llm = FakeLlama()
    cache = PromptCache(llm)
    head = [{"role": "system", "content": "Be brief."}]
    dropped = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    kept = [{"role": "user", "content": "Bye?"}]
    other = cache.tokens([*head, {"role": "user", "content": "Something else"}, *kept])
    assert other is not None
    llm.input_ids[: len(other)] = other
    llm.n_tokens = len(other)
    llm._ctx.cells = dict(enumerate(other))
    assert cache.drop(head, dropped, kept) is False
    assert llm.n_tokens == len(other) and llm._ctx.sequence() == other  # untouched


def test_a_model_without_a_known_chat_template_is_never_shifted() -> None:
    class Plain:
        chat_format = "llama-2"

    cache = PromptCache(Plain())
    assert not cache.available
    assert cache.drop([], [{"role": "user", "content": "x"}], []) is False
    assert cache.evaluated_tokens([{"role": "user", "content": "x"}]) is None
