"""Speed twins of the dialogue models: GGUFs with a real model's architecture and quantisation, random weights.

Needs the `gguf` package (writes the f16 file), llama-cpp-python (llama.cpp's quantiser) and the bundled
SmolLM2-135M GGUF (its tokenizer).

llama.cpp's speed depends on the shapes and types of the tensors, not on their values, so a twin runs a model that
cannot be downloaded here at that model's speed.

- Exact: every tensor's name and shape (layers, widths, heads, kv heads, head size, ff size, vocabulary size, tied
  embeddings, qkv biases, Llama 3's rope-scaling factors), the architecture's hyperparameters (rope base, norm
  epsilon, sliding window) and the quantisation: llama.cpp's own quantiser picks each tensor's type from the same
  ftype (Q4_K_M for the downloadable models, Q4_1 for the bundled SmolLM2-135M), as it did for the real files.
- Approximate: the tokenizer is SmolLM2's BPE padded to the vocabulary size (assistant.twins.vocab), so a text's
  token count is close to, not equal to, the real model's; the replies are noise (benchmarks teacher-force a real
  model's replies, assistant.forced_reply). No importance matrix: a quantised twin's file size can differ from a
  real file quantised with one by a few kB of metadata, not in tensor types.
- Built as: random normal f16 weights (std 0.02, seeded), written one tensor at a time, quantised, f16 deleted.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assistant.twins.vocab import GEMMA3, LLAMA3, QWEN2, SMOLLM2, ChatVocab, Vocab, twin_vocab

Q4_1 = 3  # llama_ftype LLAMA_FTYPE_MOSTLY_Q4_1
Q4_K_M = 15  # llama_ftype LLAMA_FTYPE_MOSTLY_Q4_K_M
WEIGHT_STD = 0.02
CHUNK_VALUES = 1 << 24  # random values drawn at once: 64 MB of float32


@dataclass(frozen=True)
class LlmShape:
    """One dialogue model's architecture, from its published config.json (names as in config.json)."""

    arch: str  # llama.cpp architecture: "llama", "qwen2" or "gemma3"
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    rope_theta: float
    rms_norm_eps: float
    max_position_embeddings: int
    ftype: int  # llama_ftype of the real GGUF
    file_name: str  # the twin's file
    published_params: int  # the model card's parameter count (tied embeddings counted once)
    chat: ChatVocab
    qkv_bias: bool = False  # Qwen2: biases on q, k, v
    llama3_rope: bool = False  # Llama 3.1+: rope_freqs from rope_scaling {factor 32, low 1, high 4, original 8192}
    sliding_window: int | None = None  # Gemma 3: local attention span of 5 layers in 6
    real_size_bytes: int | None = None  # the real quantised file, where known

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self.head_dim

    @property
    def param_count(self) -> int:
        return sum(math.prod(shape) for name, shape in tensor_plan(self) if name != "rope_freqs.weight")


TWIN_SHAPES: dict[str, LlmShape] = {
    # HuggingFaceTB/SmolLM2-135M-Instruct; matches the bundled GGUF's metadata and tensors.
    "smollm2-135m": LlmShape(
        "llama", 30, 576, 9, 3, 64, 1536, 49152, 100000.0, 1e-5, 8192, Q4_1,
        "SmolLM2-135M-Instruct-twin.Q4_1.gguf", 134_515_008, SMOLLM2, real_size_bytes=98_362_432,
    ),
    # meta-llama/Llama-3.2-1B-Instruct: 1.24 B parameters, tied embeddings.
    "llama-3.2-1b": LlmShape(
        "llama", 16, 2048, 32, 8, 64, 8192, 128256, 500000.0, 1e-5, 131072, Q4_K_M,
        "Llama-3.2-1B-Instruct-twin.Q4_K_M.gguf", 1_235_814_400, LLAMA3, llama3_rope=True,
        real_size_bytes=807_694_464,
    ),
    # meta-llama/Llama-3.2-3B-Instruct: 3.21 B parameters, tied embeddings.
    "llama-3.2-3b": LlmShape(
        "llama", 28, 3072, 24, 8, 128, 8192, 128256, 500000.0, 1e-5, 131072, Q4_K_M,
        "Llama-3.2-3B-Instruct-twin.Q4_K_M.gguf", 3_212_749_824, LLAMA3, llama3_rope=True,
        real_size_bytes=2_019_377_696,
    ),
    # Qwen/Qwen2.5-1.5B-Instruct: 1.54 B parameters, tied embeddings, qkv biases.
    "qwen2.5-1.5b": LlmShape(
        "qwen2", 28, 1536, 12, 2, 128, 8960, 151936, 1000000.0, 1e-6, 32768, Q4_K_M,
        "Qwen2.5-1.5B-Instruct-twin.Q4_K_M.gguf", 1_543_714_304, QWEN2, qkv_bias=True,
    ),
    # HuggingFaceTB/SmolLM2-1.7B-Instruct: 1.71 B parameters, tied embeddings, no GQA.
    "smollm2-1.7b": LlmShape(
        "llama", 24, 2048, 32, 32, 64, 8192, 49152, 130000.0, 1e-5, 8192, Q4_K_M,
        "SmolLM2-1.7B-Instruct-twin.Q4_K_M.gguf", 1_711_376_384, SMOLLM2,
    ),
    # google/gemma-3-1b-it: 1.0 B parameters, tied embeddings, q/k norms, sliding window 512.
    "gemma-3-1b": LlmShape(
        "gemma3", 26, 1152, 4, 1, 256, 6912, 262144, 1000000.0, 1e-6, 32768, Q4_K_M,
        "gemma-3-1b-it-twin.Q4_K_M.gguf", 999_885_952, GEMMA3, sliding_window=512,
    ),
}  # fmt: skip


def tensor_plan(shape: LlmShape) -> list[tuple[str, tuple[int, ...]]]:
    """(GGUF name, numpy shape) of every tensor, in the order llama.cpp's converter writes them.

    Numpy shapes are (out, in); GGUF stores them reversed. Tied embeddings: no output.weight."""
    d, q, kv, ff = shape.hidden_size, shape.q_dim, shape.kv_dim, shape.intermediate_size
    plan: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (shape.vocab_size, d))]
    if shape.llama3_rope:
        plan.append(("rope_freqs.weight", (shape.head_dim // 2,)))
    for i in range(shape.num_hidden_layers):
        b = f"blk.{i}."
        plan += [(b + "attn_norm.weight", (d,)), (b + "attn_q.weight", (q, d)), (b + "attn_k.weight", (kv, d)),
                 (b + "attn_v.weight", (kv, d)), (b + "attn_output.weight", (d, q))]  # fmt: skip
        if shape.qkv_bias:
            plan += [(b + "attn_q.bias", (q,)), (b + "attn_k.bias", (kv,)), (b + "attn_v.bias", (kv,))]
        if shape.arch == "gemma3":
            plan += [(b + "attn_q_norm.weight", (shape.head_dim,)), (b + "attn_k_norm.weight", (shape.head_dim,)),
                     (b + "post_attention_norm.weight", (d,)), (b + "post_ffw_norm.weight", (d,))]  # fmt: skip
        plan += [(b + "ffn_norm.weight", (d,)), (b + "ffn_gate.weight", (ff, d)), (b + "ffn_up.weight", (ff, d)),
                 (b + "ffn_down.weight", (d, ff))]  # fmt: skip
    plan.append(("output_norm.weight", (d,)))
    return plan


def f16_bytes(shape: LlmShape) -> int:
    """Size of the unquantised twin: matrices in f16, vectors in f32 (as llama.cpp's converter writes them)."""
    return sum(math.prod(s) * (2 if len(s) == 2 else 4) for _, s in tensor_plan(shape))


def quantised_bytes_bound(shape: LlmShape) -> int:
    """An upper bound of the quantised file: Q4_K_M and Q4_1 average under 5.5 bits a weight; Q6_K/Q8_0 for the
    embeddings is 8.5 at most (bounded at half the f16 size plus 5 %)."""
    return int(f16_bytes(shape) * 0.55)


def _llama3_rope_factors(shape: LlmShape) -> np.ndarray:
    """Llama 3.1's rope-scaling factors, as llama.cpp's converter derives them from rope_scaling."""
    factor, low, high, original = 32.0, 1.0, 4.0, 8192
    dims = np.arange(0, shape.head_dim, 2, dtype=np.float32) / shape.head_dim
    factors = []
    for freq in 1.0 / (shape.rope_theta**dims):
        wavelen = 2 * math.pi / freq
        if wavelen < original / high:
            factors.append(1.0)
        elif wavelen > original / low:
            factors.append(factor)
        else:
            smooth = (original / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)  # (head_dim / 2,)


def _tensor(shape: LlmShape, name: str, dims: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if name == "rope_freqs.weight":
        return _llama3_rope_factors(shape)
    if name.endswith("norm.weight"):
        return np.ones(dims, dtype=np.float32)
    if len(dims) == 1:  # a bias
        return (rng.standard_normal(dims, dtype=np.float32) * WEIGHT_STD).astype(np.float32)
    out = np.empty(dims, dtype=np.float16)
    flat = out.reshape(-1)
    for start in range(0, flat.size, CHUNK_VALUES):  # bounded float32 scratch, whatever the tensor's size
        n = min(CHUNK_VALUES, flat.size - start)
        flat[start : start + n] = rng.standard_normal(n, dtype=np.float32) * WEIGHT_STD
    return out


def _metadata(writer: Any, name: str, shape: LlmShape, vocab: Vocab) -> None:
    a = shape.arch
    writer.add_name(f"speed twin of {name} (random weights)")
    writer.add_uint32("general.file_type", 1)  # mostly f16
    counts = {
        "block_count": shape.num_hidden_layers,
        "context_length": shape.max_position_embeddings,
        "embedding_length": shape.hidden_size,
        "feed_forward_length": shape.intermediate_size,
        "attention.head_count": shape.num_attention_heads,
        "attention.head_count_kv": shape.num_key_value_heads,
        "attention.key_length": shape.head_dim,
        "attention.value_length": shape.head_dim,
        "rope.dimension_count": shape.head_dim,
        "vocab_size": shape.vocab_size,
    }
    if shape.sliding_window:
        counts["attention.sliding_window"] = shape.sliding_window
    for key, value in counts.items():
        writer.add_uint32(f"{a}.{key}", value)
    writer.add_float32(f"{a}.rope.freq_base", shape.rope_theta)
    writer.add_float32(f"{a}.attention.layer_norm_rms_epsilon", shape.rms_norm_eps)
    writer.add_string("tokenizer.ggml.model", "gpt2")
    writer.add_string("tokenizer.ggml.pre", vocab.pre)
    writer.add_array("tokenizer.ggml.tokens", vocab.tokens)
    writer.add_array("tokenizer.ggml.token_type", vocab.token_types)
    writer.add_array("tokenizer.ggml.merges", vocab.merges)
    writer.add_uint32("tokenizer.ggml.bos_token_id", vocab.bos_id)
    writer.add_uint32("tokenizer.ggml.eos_token_id", vocab.eos_id)
    writer.add_uint32("tokenizer.ggml.eot_token_id", vocab.eos_id)
    writer.add_bool("tokenizer.ggml.add_bos_token", False)  # the chat templates write BOS themselves
    writer.add_string("tokenizer.chat_template", vocab.chat_template)


def write_f16(name: str, shape: LlmShape, source: Vocab, path: Path, seed: int = 0) -> None:
    """The unquantised twin at `path`, one tensor in memory at a time."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), shape.arch)
    _metadata(writer, name, shape, twin_vocab(source, shape.vocab_size, shape.chat))
    plan = tensor_plan(shape)
    for tensor_name, dims in plan:
        dtype = np.float16 if len(dims) == 2 else np.float32
        writer.add_tensor_info(tensor_name, dims, np.dtype(dtype), math.prod(dims) * np.dtype(dtype).itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for i, tensor in enumerate(_tensors(shape, plan, seed)):
        writer.write_tensor_data(tensor)
        del tensor
        if i % 50 == 0:
            writer.flush()
    writer.close()


def _tensors(shape: LlmShape, plan: list[tuple[str, tuple[int, ...]]], seed: int) -> Iterator[np.ndarray]:
    for i, (tensor_name, dims) in enumerate(plan):
        yield _tensor(shape, tensor_name, dims, np.random.default_rng([seed, i]))


def quantise(src: Path, dst: Path, ftype: int) -> None:
    """llama.cpp's quantiser (as `llama-quantize` runs it): each tensor's type chosen for `ftype`.

    Its log (a line per tensor) is held back while it runs; its warnings and errors go into the error raised."""
    import ctypes

    import llama_cpp
    import llama_cpp._logger

    said: list[str] = []

    @llama_cpp.llama_log_callback
    def keep(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if level in (3, 4):  # ggml's GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_ERROR (DEBUG is 1, INFO 2)
            said.append(text.decode("utf-8", "replace").strip())

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 0  # all cores
    llama_cpp.llama_log_set(keep, ctypes.c_void_p(0))
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    finally:
        llama_cpp.llama_log_set(llama_cpp._logger.llama_log_callback, ctypes.c_void_p(0))
    if rc != 0:
        raise RuntimeError(f"llama.cpp's quantiser failed on {src} (return code {rc}): {' '.join(said[-3:])}")
