"""Teacher forcing for benchmarks: make the dialogue model say a given reply, token by token.

Needs llama-cpp-python (its `logits_processor` hook) and, for `load_forced_replies`, PyYAML.

A speed twin (assistant.twins) answers noise; forced, it says what a real model said, so the sentences, the speech
and the video after it are the real ones. The model still runs every decode step and the sampler still samples:
the processor only leaves one logit finite, so each token costs what it costs without forcing (plus one pass over
the logits in numpy, the same for every model). Benchmarks only: a forced assistant ignores what it is asked.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import ConfigError


def best_question(user_text: str, replies: Mapping[str, str]) -> str | None:
    """The question in `replies` most like `user_text` (difflib ratio, case-insensitive); None when empty."""
    said = user_text.strip().lower()
    return max(
        replies, key=lambda q: difflib.SequenceMatcher(None, said, q.strip().lower()).ratio(), default=None
    )


class ForcedTokens:
    """A llama-cpp-python logits processor that makes the sampler pick `tokens` in order, then end-of-generation.

    One instance per reply: it counts its calls (one per sampled token)."""

    def __init__(self, tokens: list[int], eog_token: int) -> None:
        self.tokens = [*tokens, eog_token]
        self.eog_token = eog_token
        self.step = 0

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:  # scores: (n_vocab,) float32
        token = self.tokens[self.step] if self.step < len(self.tokens) else self.eog_token
        self.step += 1
        forced = np.full_like(scores, -np.inf)
        forced[token] = 0.0
        return forced


def forcing_kwargs(llm: Any, user_text: str, replies: Mapping[str, str] | None) -> dict[str, Any]:
    """`create_chat_completion` keyword arguments that force the reply to the best-matching question; {} when
    nothing is to be forced. The reply is tokenised with the model's own tokenizer."""
    if not replies:
        return {}
    from llama_cpp import LogitsProcessorList

    question = best_question(user_text, replies)
    assert question is not None
    tokens = llm.tokenize(replies[question].encode("utf-8"), add_bos=False, special=False)
    return {"logits_processor": LogitsProcessorList([ForcedTokens(tokens, llm.token_eos())])}


def load_forced_replies(path: str | Path) -> dict[str, str]:
    """{question: reply} from a YAML file (dialogue.forced_replies); ConfigError naming the file when it is not."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"dialogue.forced_replies: cannot read {path}: {e}") from e
    if not isinstance(data, dict) or not data or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ConfigError(
            f"dialogue.forced_replies: {path} must be a YAML mapping of question text to reply text"
        )
    return data
