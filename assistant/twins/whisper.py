"""Speed twins of Whisper recognisers: a CTranslate2 Whisper model with a published model's exact shape and stored
precision but random weights, so its speed on this machine can be measured without downloading the real one.

A twin is built from the published Hugging Face config (the `WhisperShape` table below, keyed by registry name):
transformers' `WhisperForConditionalGeneration` is initialised at random (fixed seed) and converted by
CTranslate2's `TransformersConverter` with float16 storage, as Systran's faster-whisper conversions are stored (the
app runs them at compute_type int8 on CPU, float16 on CUDA). Only the config is written to the scratch folder:
the converter is handed the model in memory, so a 769 M-parameter medium costs no 3 GB of float32 on disk. The
model is written into a scratch folder beside `folder` and renamed at the end, so a half-written twin is never
taken for a finished one.

Tokenizer (assistant.twins.whisper_tokens): the English-only models (tiny.en, base.en, small.en, distil-small.en)
share tiny.en's GPT-2 tokenizer, so their twins get the bundled tiny.en's tokenizer.json, vocabulary.txt and
config.json token lists. The multilingual tokenizer (whisper-small, whisper-medium) is nowhere on this machine
(it ships with the real models, and with openai-whisper as a tiktoken file): their twins get a surrogate, GPT-2's
BPE with the special tokens at the multilingual ids, which spells its (random) text with the wrong BPE. (The
CTranslate2 4.8.5 here reports is_multilingual False for these twins, so faster-whisper prompts them with the
2-token English prompt instead of the multilingual 4: two tokens fewer in the one prompt step.) Alignment heads (used only for word timestamps, which
the app does not ask for) are the converter's default, the last half of the decoder's heads.

A twin's model.bin has the size of the published one to the byte (distil-small.en: 332,308,257), or 75 bytes
more where Systran converted with an older CTranslate2 that stored two fewer flags (whisper-small: 483,546,977
against 483,546,902); tiny.en's twin has every variable of the bundled tiny.en with the same shape and dtype
(tests/integration/test_whisper_twin.py).

Teacher forcing: a random model decodes garbage of random length, and faster-whisper's temperature fallback would
decode it again up to five times. `forced_decode_options()` gives the `transcribe` options that make a decode run
exactly as many decoder steps as the real model's on the same utterance: the real transcript's token count (its
tokenizer's count) plus the step that yields end-of-text, end-of-text and timestamps suppressed until then, one
temperature and no fallback: pass them to the app's own `WhisperASR.transcribe(utterance, overrides=...)`.

Needs torch and transformers (only to build a twin), ctranslate2 and faster-whisper.
"""

from __future__ import annotations

import logging
import re
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.asr import max_new_tokens_for
from assistant.errors import ModelError
from assistant.twins.whisper_tokens import write_tokenizer

log = logging.getLogger(__name__)

SEED = 0  # the same random weights on every build
STORED_BYTES_PER_PARAM = 2  # float16, as Systran's conversions store them
DISK_MARGIN = 1.1  # model.bin's header, vocabulary and tokenizer, and slack
DISK_EXTRA_BYTES = 16 * 2**20
N_TIMESTAMP_TOKENS = 1501  # <|0.00|> .. <|30.00|> in 20 ms steps, after <|notimestamps|>


@dataclass(frozen=True)
class WhisperShape:
    """A published Whisper checkpoint's config.json, the fields that set its size and speed. Every published
    Whisper has as many heads and as wide a feed-forward layer in its encoder as in its decoder."""

    source: str  # the Hugging Face checkpoint whose config.json this copies
    d_model: int
    encoder_layers: int
    decoder_layers: int
    attention_heads: int
    ffn_dim: int
    vocab_size: int  # 51864 English-only, 51865 multilingual
    published_params_m: int  # the model card's / paper's count, in millions
    num_mel_bins: int = 80
    max_source_positions: int = 1500  # 30 s of 10 ms frames, halved by the encoder's stride-2 convolution
    max_target_positions: int = 448

    @property
    def english_only(self) -> bool:
        return self.vocab_size == 51864

    @property
    def parameter_count(self) -> int:
        """Parameters of the Hugging Face model (output projection tied to the token embedding)."""
        d, ff = self.d_model, self.ffn_dim
        attention = 4 * d * d + 3 * d  # q, k, v, out projections; k has no bias
        ffn = 2 * d * ff + ff + d
        encoder_layer = attention + ffn + 2 * 2 * d  # two layer norms
        decoder_layer = 2 * attention + ffn + 3 * 2 * d  # self- and cross-attention, three layer norms
        convs = (self.num_mel_bins * d * 3 + d) + (d * d * 3 + d)  # kernel 3
        positions = (self.max_source_positions + self.max_target_positions) * d
        return (convs + self.encoder_layers * encoder_layer + self.decoder_layers * decoder_layer
                + self.vocab_size * d + positions + 2 * 2 * d)  # fmt: skip

    @property
    def stored_bytes(self) -> int:
        return self.parameter_count * STORED_BYTES_PER_PARAM


SHAPES: dict[str, WhisperShape] = {
    "whisper-tiny.en": WhisperShape("openai/whisper-tiny.en", 384, 4, 4, 6, 1536, 51864, 39),
    "whisper-base.en": WhisperShape("openai/whisper-base.en", 512, 6, 6, 8, 2048, 51864, 74),
    "whisper-small.en": WhisperShape("openai/whisper-small.en", 768, 12, 12, 12, 3072, 51864, 244),
    "distil-small.en": WhisperShape("distil-whisper/distil-small.en", 768, 12, 4, 12, 3072, 51864, 166),
    "whisper-small": WhisperShape("openai/whisper-small", 768, 12, 12, 12, 3072, 51865, 244),
    "whisper-medium": WhisperShape("openai/whisper-medium", 1024, 24, 24, 16, 4096, 51865, 769),
}


def shape_of(name: str) -> WhisperShape:
    try:
        return SHAPES[name]
    except KeyError:
        raise ModelError(f"no twin shape for {name!r}: twins exist for {', '.join(SHAPES)}") from None


# ---- building ------------------------------------------------------------------------------------------------


def build_whisper_twin(name: str, folder: Path) -> Path:
    """Build the speed twin of registry model `name` in `folder` (<models_dir>/twins/<name>), replacing one built
    before; returns the model folder. Raises ModelError for an unknown name, too little disk or a failed build."""
    shape = shape_of(name)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _check_disk(folder.parent, shape, name)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f".{folder.name}.", dir=folder.parent) as scratch:
        model_dir = Path(scratch) / "model"
        _convert(shape, Path(scratch) / "hf", model_dir)
        write_tokenizer(model_dir, shape.vocab_size)
        if folder.exists():
            shutil.rmtree(folder)
        model_dir.rename(folder)  # same file system: the finished twin appears at once
    log.info("built the twin of %s in %s (%.0f s)", name, folder, time.monotonic() - started)
    return folder


def _check_disk(where: Path, shape: WhisperShape, name: str) -> None:
    needed = int(shape.stored_bytes * DISK_MARGIN) + DISK_EXTRA_BYTES
    free = shutil.disk_usage(where).free
    if free < needed:
        raise ModelError(
            f"not enough free disk space in {where} for the twin of {name}: it needs about "
            f"{needed / 2**20:.0f} MiB, {free / 2**20:.0f} MiB are free"
        )


def _convert(shape: WhisperShape, hf_dir: Path, model_dir: Path) -> None:
    """Random weights of `shape` -> CTranslate2 model in `model_dir` (float16 storage)."""
    try:
        import torch
        from ctranslate2.converters import TransformersConverter
        from transformers import WhisperConfig, WhisperForConditionalGeneration
    except ImportError as e:
        raise ModelError(f"building a twin needs torch, transformers and ctranslate2: pip install {e.name}") from e

    config = WhisperConfig(
        vocab_size=shape.vocab_size, num_mel_bins=shape.num_mel_bins, d_model=shape.d_model,
        encoder_layers=shape.encoder_layers, decoder_layers=shape.decoder_layers,
        encoder_attention_heads=shape.attention_heads, decoder_attention_heads=shape.attention_heads,
        encoder_ffn_dim=shape.ffn_dim, decoder_ffn_dim=shape.ffn_dim,
        max_source_positions=shape.max_source_positions, max_target_positions=shape.max_target_positions,
    )  # fmt: skip
    config.save_pretrained(hf_dir)  # the converter reads the config from disk, the model from load_model
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(SEED)
        model = WhisperForConditionalGeneration(config).eval()
        for vector in (p for p in model.parameters() if p.dim() == 1):
            # Freshly initialised biases (0) and layer norms (1, 0) are equal tensors, which the converter would
            # store once as aliases: a smaller file than the published one. Noise keeps each one its own.
            vector.add_(torch.randn_like(vector), alpha=0.02)

    class InMemory(TransformersConverter):
        def load_model(self, model_class: Any, path: str, **kwargs: Any) -> Any:
            return model

        def load_tokenizer(self, tokenizer_class: Any, path: str, **kwargs: Any) -> Any:
            return _Vocabulary(shape.vocab_size)  # replaced by write_tokenizer

    try:
        InMemory(str(hf_dir)).convert(str(model_dir), quantization="float16")
    except (RuntimeError, ValueError, OSError) as e:
        raise ModelError(f"converting the random {shape.source} to CTranslate2 failed: {e}") from e


class _Vocabulary:
    """What the converter asks of a tokenizer: token -> id. Placeholder names: write_tokenizer replaces the
    vocabulary the converter writes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.additional_special_tokens: list[str] = []

    def get_vocab(self) -> dict[str, int]:
        return {f"<|token{i}|>": i for i in range(self.size)}


# ---- reading a CTranslate2 Whisper's shape ---------------------------------------------------------------------


@dataclass(frozen=True)
class StoredWhisper:
    """What a CTranslate2 Whisper model.bin holds, read from its variable table (no weights loaded)."""

    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int
    ffn_dim: int
    vocab_size: int
    num_mel_bins: int
    max_source_positions: int
    max_target_positions: int
    weight_dtypes: frozenset[str]  # of the 2-D weights: {"float16"} for Systran's conversions
    parameter_count: int  # stored elements of float tensors (CTranslate2 fuses q, k, v; k gains a zero bias)


_CT2_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}


def read_stored_whisper(model_bin: Path) -> StoredWhisper:
    """The dimensions of a CTranslate2 Whisper model.bin (format: ctranslate2/specs/model_spec.py `_serialize`)."""
    shapes, scalars, dtypes = _read_variables(Path(model_bin))
    layers = {part: len({m[1] for n in shapes if (m := re.match(rf"{part}/layer_(\d+)/", n))})
              for part in ("encoder", "decoder")}  # fmt: skip
    vocab, d_model = shapes["decoder/embeddings/weight"]
    floats = [s for n, s in shapes.items() if dtypes[n] in ("float32", "float16", "bfloat16")]
    count = 0
    for s in floats:
        elements = 1
        for dim in s:
            elements *= dim
        count += elements
    return StoredWhisper(
        d_model=d_model, encoder_layers=layers["encoder"], decoder_layers=layers["decoder"],
        encoder_heads=scalars["encoder/num_heads"], decoder_heads=scalars["decoder/num_heads"],
        ffn_dim=shapes["encoder/layer_0/ffn/linear_0/weight"][0], vocab_size=vocab,
        num_mel_bins=shapes["encoder/conv1/weight"][1],
        max_source_positions=shapes["encoder/position_encodings/encodings"][0],
        max_target_positions=shapes["decoder/position_encodings/encodings"][0],
        weight_dtypes=frozenset(dtypes[n] for n, s in shapes.items() if len(s) == 2 and "weight" in n),
        parameter_count=count,
    )  # fmt: skip


def _read_variables(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, int], dict[str, str]]:
    shapes: dict[str, tuple[int, ...]] = {}
    scalars: dict[str, int] = {}
    dtypes: dict[str, str] = {}
    try:
        with path.open("rb") as f:

            def unpack(fmt: str) -> int:
                return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

            def string() -> str:
                return f.read(unpack("H"))[:-1].decode()  # length includes the trailing NUL

            unpack("I")  # binary version
            if string() != "WhisperSpec":
                raise ModelError(f"{path} is not a CTranslate2 Whisper model")
            unpack("I")  # spec revision
            for _ in range(unpack("I")):
                name = string()
                shape = tuple(unpack("I") for _ in range(unpack("B")))
                dtypes[name] = _CT2_DTYPES.get(unpack("B"), "other")
                size = unpack("I")
                if not shape and size <= 4:
                    scalars[name] = int.from_bytes(f.read(size), "little", signed=True)
                else:
                    f.seek(size, 1)
                shapes[name] = shape
    except (OSError, struct.error, UnicodeDecodeError) as e:
        raise ModelError(f"cannot read the CTranslate2 model {path}: {e}") from e
    return shapes, scalars, dtypes


# ---- teacher forcing -----------------------------------------------------------------------------------------


def count_tokens(tokenizer: Any, text: str) -> int:
    """Text tokens the model decoded for `text` (a Transcript's text, segments stripped and joined): Whisper
    writes the first word with its leading space. `tokenizer`: faster-whisper's Tokenizer."""
    return len(tokenizer.encode(" " + text.strip())) if text.strip() else 0


def forced_decode_options(tokenizer: Any, text_tokens: int) -> dict[str, Any]:
    """faster-whisper `transcribe` options for a decode of `text_tokens` + 1 decoder steps, the real model's count
    on a transcript of `text_tokens` tokens: its last step is the one that yields end-of-text. End-of-text and
    timestamps are suppressed (a timestamp pair would split the window into a second decode), one temperature,
    and no threshold can ask for a fallback or skip the segment."""
    timestamps = range(tokenizer.timestamp_begin, tokenizer.timestamp_begin + N_TIMESTAMP_TOKENS)
    steps = text_tokens + 1
    # The prompt: the start-of-transcript sequence and <|notimestamps|> (the app decodes without timestamps and
    # without previous text); assistant.asr.max_new_tokens_for says how CTranslate2 bounds the decode.
    prompt = len(tokenizer.sot_sequence) + 1
    return {
        "max_new_tokens": max_new_tokens_for(steps, prompt),
        "suppress_tokens": [-1, tokenizer.eot, *timestamps],  # -1: Whisper's non-speech tokens, as by default
        "temperature": 0.0,
        "compression_ratio_threshold": None,
        "log_prob_threshold": None,
        "no_speech_threshold": None,
    }

