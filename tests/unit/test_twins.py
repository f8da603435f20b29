"""Speed twins without a model: the shape table against the published parameter counts, the twin's tokenizer
layout, teacher forcing's logits processor, and the one-line errors of `assistant models twin`."""

from __future__ import annotations

import argparse
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from assistant.cli import models_cmd
from assistant.errors import ConfigError, ModelError
from assistant.forced_reply import ForcedTokens, best_question, load_forced_replies
from assistant.twins import TWIN_SHAPES, build_twin, twin_shape
from assistant.twins.llm import f16_bytes, tensor_plan
from assistant.twins.vocab import LLAMA3, QWEN2, TOKEN_CONTROL, TOKEN_UNUSED, Vocab, twin_vocab

# Model cards' totals (tied embeddings counted once).
PUBLISHED_PARAMS = {
    "smollm2-135m": 135e6,
    "llama-3.2-1b": 1.24e9,
    "llama-3.2-3b": 3.21e9,
    "qwen2.5-1.5b": 1.54e9,
    "smollm2-1.7b": 1.71e9,
    "gemma-3-1b": 1.0e9,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_each_shape_has_its_published_parameter_count(name):
    assert name in TWIN_SHAPES
    count = TWIN_SHAPES[name].param_count
    assert abs(count - PUBLISHED_PARAMS[name]) / PUBLISHED_PARAMS[name] < 0.02, (name, count)


def test_shapes_hold_what_the_architectures_need():
    llama_1b = dict(tensor_plan(TWIN_SHAPES["llama-3.2-1b"]))
    assert llama_1b["blk.15.attn_k.weight"] == (512, 2048)  # 8 kv heads of 64
    assert llama_1b["rope_freqs.weight"] == (32,)
    assert "output.weight" not in llama_1b  # tied embeddings
    qwen = dict(tensor_plan(TWIN_SHAPES["qwen2.5-1.5b"]))
    assert qwen["blk.0.attn_k.bias"] == (256,) and qwen["token_embd.weight"] == (151936, 1536)
    gemma = dict(tensor_plan(TWIN_SHAPES["gemma-3-1b"]))
    assert gemma["blk.0.attn_q.weight"] == (1024, 1152) and gemma["blk.25.attn_k_norm.weight"] == (256,)
    # The f16 file of the 3B model: ~6.4 GB, what the disk check asks for on top of the quantised file.
    assert 6.3e9 < f16_bytes(TWIN_SHAPES["llama-3.2-3b"]) < 6.5e9


def test_the_twin_vocabulary_keeps_every_source_token_and_puts_specials_at_the_real_ids():
    source = Vocab(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "a", "b", "ab"], [3, 3, 3, 1, 1, 1], ["a b"], 1, 2,
                   "smollm", "{{ x }}")  # fmt: skip
    llama = twin_vocab(source, 128256, LLAMA3)
    assert len(llama.tokens) == 128256 == len(set(llama.tokens))
    assert llama.tokens[:6] == source.tokens and llama.tokens[128009] == "<|eot_id|>"
    assert llama.token_types[128006] == TOKEN_CONTROL and llama.token_types[1000] == TOKEN_UNUSED
    assert (llama.bos_id, llama.eos_id) == (128000, 128009) and "<|start_header_id|>" in llama.chat_template
    qwen = twin_vocab(source, 151936, QWEN2)  # Qwen's specials share text with SmolLM2's: they move, not repeat
    assert qwen.tokens[151644] == "<|im_start|>" and qwen.tokens.count("<|im_start|>") == 1
    assert qwen.tokens[:3] == ["a", "b", "ab"] and qwen.eos_id == 151645


def test_forced_tokens_leave_one_logit_and_end_with_end_of_generation():
    forced = ForcedTokens([5, 7], eog_token=2)
    picked = []
    for _ in range(4):
        scores = forced(np.zeros(3), np.random.default_rng(0).standard_normal(10).astype(np.float32))
        assert np.isfinite(scores).sum() == 1
        picked.append(int(np.argmax(scores)))
    assert picked == [5, 7, 2, 2]


def test_the_closest_question_is_forced():
    replies = {"What is the capital of France?": "Paris.", "How far away is the moon?": "Far."}
    assert best_question("what's the capital of france", replies) == "What is the capital of France?"
    assert best_question("How far is the moon", replies) == "How far away is the moon?"
    assert best_question("anything", {}) is None


def test_a_bad_forced_replies_file_names_the_key_and_the_file(tmp_path):
    bad = tmp_path / "replies.yaml"
    bad.write_text("- just a list\n")
    with pytest.raises(ConfigError, match=r"dialogue.forced_replies: .*replies.yaml must be a YAML mapping"):
        load_forced_replies(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_forced_replies(tmp_path / "missing.yaml")


def test_an_unknown_name_and_a_model_without_a_twin_shape_are_one_line_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown model 'gpt-5'"):
        build_twin("gpt-5", tmp_path)
    with pytest.raises(ModelError, match=r"no twin shape for wav2lip: twins exist for smollm2-135m, llama-3.2-1b"):
        build_twin("wav2lip", tmp_path)
    with pytest.raises(ModelError, match="no twin shape for piper-joe"):
        twin_shape("piper-joe")
    assert not (tmp_path / "twins").exists()


def test_no_disk_space_names_the_folder_and_the_bytes_and_leaves_nothing(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 10**6, 10**6))
    with pytest.raises(ModelError) as caught:
        build_twin("llama-3.2-3b", tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "twins" / "llama-3.2-3b") in message and "1,000,000 are free" in message
    needed = int(message.split("needs ")[1].split(" bytes")[0].replace(",", ""))
    assert needed > f16_bytes(TWIN_SHAPES["llama-3.2-3b"])
    assert "\n" not in message and not (tmp_path / "twins").exists()


def test_the_cli_says_the_error_in_one_line_and_exits_1(tmp_path, capsys):
    args = argparse.Namespace(name="gemma-7b", models_dir=str(tmp_path), force=False, json=True)
    assert models_cmd._twin(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'gemma-7b'") and err.count("\n") == 1


def test_parameter_count_is_the_sum_of_the_tensors():
    shape = TWIN_SHAPES["smollm2-135m"]
    embed = shape.vocab_size * shape.hidden_size
    layer = (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536 + 2 * 576)
    assert shape.param_count == embed + 30 * layer + 576 == 134_515_008
    assert Path(shape.file_name).suffix == ".gguf"
