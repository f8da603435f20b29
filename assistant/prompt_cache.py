"""Keep llama.cpp's evaluated prompt when the oldest turns leave the conversation history (a context shift).

llama-cpp-python reuses its KV cache only up to the first token where a new prompt differs from the cached one.
Dropping the oldest turns changes the prompt right after the system prompt, so without help every later token,
the whole kept history, is evaluated again: seconds on a CPU at each trim. Instead, the dropped turns' tokens
are removed from the KV cache and the tokens after them are moved down by as many positions (llama.cpp re-rotates
their keys, RoPE), so the cache again holds a prefix of the next prompt and only the new exchange is evaluated.

The kept turns' cached keys and values were computed while the dropped turns were still in front of them: the
model keeps a faint trace of what it no longer sees. llama.cpp's own server trims its context the same way
("context shift"); for a voice assistant that trace is harmless, and a prompt re-evaluated from scratch (after
a reset, or when nothing matches) loses it. At temperature 0 the reply after a shift is a fresh evaluation's, token
for token, or parts from it only at a near tie of its first two choices (tests/integration/test_dialogue.py).

Where the tokens of the dropped turns are is found by rendering the messages with the chat template stored in the
GGUF (what llama-cpp-python itself uses for these models) and checking them token by token against the cache:
with another chat format, a model that cannot shift (recurrent ones) or any mismatch, nothing is touched and
llama.cpp re-evaluates as before (correct, only slower). Needs llama-cpp-python only when a real model is used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

Message = dict[str, str]

_TEMPLATE_FORMAT = "chat_template.default"  # llama-cpp-python renders the GGUF's own Jinja template


class PromptCache:
    """What the llama.cpp cache of one `llama_cpp.Llama` holds, in terms of chat messages.

    `tokens(messages)` renders and tokenizes a prompt exactly as `create_chat_completion` does;
    `evaluated_tokens(messages)` says how many of its tokens llama.cpp will have to evaluate (the rest is cached);
    `drop(head, dropped, kept)` removes the messages `dropped` (which follow `head` and precede `kept`) from the cache.
    Every method is a no-op (None / False) when the model is not a llama_cpp.Llama with a Jinja chat template.
    Not thread-safe: call it while holding the model (DialogueManager does, under its generation lock).
    """

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self._formatter: Any = None
        if getattr(llm, "chat_format", None) != _TEMPLATE_FORMAT or getattr(llm, "chat_handler", None) is not None:
            return
        template = (getattr(llm, "metadata", None) or {}).get("tokenizer.chat_template")
        if not template:
            return
        try:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            model = llm._model
            eos_id, bos_id = llm.token_eos(), llm.token_bos()
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
                bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
                add_generation_prompt=False,
            )
        except Exception as e:  # noqa: BLE001 - an unexpected llama-cpp-python: no shifting, nothing breaks
            log.debug("prompt cache: no chat formatter (%s); trims re-evaluate the history", e)

    @property
    def available(self) -> bool:
        return self._formatter is not None

    def tokens(self, messages: Sequence[Message], generation_prompt: bool = False) -> list[int] | None:
        """The prompt tokens of `messages` as llama-cpp-python builds them (None without a formatter)."""
        if self._formatter is None:
            return None
        self._formatter.add_generation_prompt = generation_prompt
        try:
            result = self._formatter(messages=list(messages))
        except Exception as e:  # noqa: BLE001 - a template that refuses these messages: treat as unknown
            log.debug("prompt cache: the chat template failed (%s)", e)
            return None
        return list(self._llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True))

    def _cached(self) -> list[int]:
        return [int(t) for t in self._llm.input_ids[: self._llm.n_tokens]]

    def evaluated_tokens(self, messages: Sequence[Message]) -> tuple[int, int] | None:
        """(prompt tokens, of which llama.cpp must evaluate) for the reply to `messages`; None when unknown.

        The same rule as `Llama.generate`: the longest common prefix with the cache is reused, less one token
        when the whole prompt is cached (its logits are needed again)."""
        prompt = self.tokens(messages, generation_prompt=True)
        if prompt is None:
            return None
        reused = _common_prefix(self._cached(), prompt)
        if reused == len(prompt):
            reused -= 1
        return len(prompt), len(prompt) - max(reused, 0)

    def drop(self, head: Sequence[Message], dropped: Sequence[Message], kept: Sequence[Message]) -> bool:
        """Remove the tokens of `dropped` from the cache, moving what follows them down. True if it was done.

        The cache must hold `head + dropped + kept` rendered, token for token (then anything); `kept` (what
        follows the dropped messages in the next prompt) only pins down where the dropped tokens end, for templates
        that render a message differently depending on what comes after it."""
        if self._formatter is None or not dropped:
            return False
        with_dropped = self.tokens([*head, *dropped, *kept])
        without = self.tokens([*head, *kept])
        if with_dropped is None or without is None:
            return False
        start = _common_prefix(with_dropped, without)
        length = len(with_dropped) - len(without)
        if length <= 0 or with_dropped[start + length :] != without[start:]:
            log.debug("prompt cache: the dropped turns are not one span of the rendered prompt; not shifting")
            return False
        cached = self._cached()
        end = start + length
        # Only the head and the dropped turns must be in the cache as rendered: what follows them is compared by
        # llama-cpp-python itself against the next prompt (the last reply is cached as generated, not re-rendered).
        if len(cached) < end or cached[:end] != with_dropped[:end]:
            log.debug("prompt cache: the cache does not hold the dropped turns as rendered; not shifting")
            return False
        if not self._can_shift():
            return False
        llm = self._llm
        ctx = llm._ctx
        if not ctx.kv_cache_seq_rm(0, start, end):
            return False
        ctx.kv_cache_seq_shift(0, end, -1, -length)  # positions [end, inf) -> [start, ...): keys re-rotated
        n = len(cached) - length
        llm.input_ids[start:n] = cached[end:]
        llm.n_tokens = n
        if hasattr(llm, "_requires_eval"):
            llm._requires_eval = True  # the logits of the last cached token are not current any more
        log.debug("prompt cache: dropped %d tokens at %d, %d cached tokens kept", length, start, n)
        return True

    def _can_shift(self) -> bool:
        try:
            import llama_cpp

            memory = llama_cpp.llama_get_memory(self._llm.ctx)
            return bool(memory) and bool(llama_cpp.llama_memory_can_shift(memory))
        except (ImportError, AttributeError) as e:
            log.debug("prompt cache: cannot ask llama.cpp whether it can shift (%s)", e)
            return False


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
