"""The Whisper twin shape table against the published parameter counts, the forcing arithmetic against
CTranslate2's decode-length rule, and the errors for bad input (no model is built or loaded here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from assistant.errors import ModelError
from assistant.twins.whisper import (
    N_TIMESTAMP_TOKENS,
    SHAPES,
    build_whisper_twin,
    forced_decode_options,
    read_stored_whisper,
    shape_of,
)

PUBLISHED_M = {  # the Whisper paper's table 1 and distil-whisper's model card, in millions
    "whisper-tiny.en": 39,
    "whisper-base.en": 74,
    "whisper-small.en": 244,
    "distil-small.en": 166,
    "whisper-small": 244,
    "whisper-medium": 769,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_M))
def test_shape_has_the_published_parameter_count(name: str) -> None:
    shape = shape_of(name)
    # The paper rounds; tiny's 39 M is the largest gap (3 %): within 4 % for every model
    assert shape.parameter_count == pytest.approx(PUBLISHED_M[name] * 1e6, rel=0.04)
    assert shape.stored_bytes == 2 * shape.parameter_count  # float16, as Systran's model.bin files


def test_english_only_models_have_the_english_vocabulary() -> None:
    english = {name for name, shape in SHAPES.items() if shape.english_only}
    assert english == {"whisper-tiny.en", "whisper-base.en", "whisper-small.en", "distil-small.en"}
    assert {SHAPES[n].vocab_size for n in SHAPES if n not in english} == {51865}
    # distil-small.en is small.en's encoder with 4 of its 12 decoder layers
    distil, small = SHAPES["distil-small.en"], SHAPES["whisper-small.en"]
    assert (distil.d_model, distil.encoder_layers, distil.decoder_layers) == (small.d_model, 12, 4)


def test_unknown_name_says_which_twins_exist(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no twin shape for 'whisper-huge': twins exist for whisper-tiny\.en, "):
        build_whisper_twin("whisper-huge", tmp_path / "twins" / "whisper-huge")
    assert not (tmp_path / "twins" / "whisper-huge").exists()


@pytest.mark.parametrize("content", [b"", b"\x06\x00\x00\x00", b"not a model at all, just text"])
def test_a_file_that_is_not_a_ctranslate2_whisper_is_a_model_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="model.bin"):
        read_stored_whisper(path)


@dataclass(frozen=True)
class Tokens:
    """The token ids forced_decode_options reads from faster-whisper's Tokenizer (English-only tiny.en's)."""

    sot_sequence: tuple[int, ...] = (50257,)
    eot: int = 50256
    timestamp_begin: int = 50363


def decoded_tokens(prompt: int, max_new_tokens: int) -> int:
    """Tokens CTranslate2 decodes (whisper.cc: the prompt but its last token is the decoder's start state, then
    min(max_length / 2, max_length - start_step)); faster-whisper asks for max_length = prompt + max_new_tokens."""
    max_length = prompt + max_new_tokens
    return min(max_length // 2, max_length - (prompt - 1))


@pytest.mark.parametrize("sot_sequence", [(50257,), (50258, 50259, 50360)], ids=["english", "multilingual"])
@pytest.mark.parametrize("text_tokens", [0, 1, 2, 7, 40, 200])
def test_forcing_decodes_the_real_models_steps(sot_sequence: tuple[int, ...], text_tokens: int) -> None:
    tokens = Tokens(sot_sequence=sot_sequence)
    options = forced_decode_options(tokens, text_tokens)
    prompt = len(sot_sequence) + 1  # and <|notimestamps|>
    # the real model's steps: one per text token and the one that yields end-of-text
    assert decoded_tokens(prompt, options["max_new_tokens"]) == text_tokens + 1
    suppressed = set(options["suppress_tokens"])
    assert {-1, tokens.eot} <= suppressed
    assert set(range(tokens.timestamp_begin, tokens.timestamp_begin + N_TIMESTAMP_TOKENS)) <= suppressed
    assert options["temperature"] == 0.0  # one temperature: no fallback
    assert options["compression_ratio_threshold"] is None and options["log_prob_threshold"] is None

