"""The speed twin of the bundled SmolLM2-135M: the same tensors as the real GGUF, the same speed when both are made to
say the same reply through the app's DialogueManager, and an interrupted build is rebuilt."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
import yaml
from gguf import GGUFReader

from assistant.bench.teacher import TEACHER_FILE
from assistant.config import DialogueSettings
from assistant.dialogue import DialogueManager
from assistant.models import locate
from assistant.twins import TWIN_SHAPES, build_twin

pytestmark = pytest.mark.integration

NAME = "smollm2-135m"
QUESTION = "How do I boil an egg?"  # the longest teacher reply: ~80 forced tokens
ROUNDS = 7
ATTEMPTS = 3
ARCH_KEYS = (
    "block_count", "context_length", "embedding_length", "feed_forward_length", "attention.head_count",
    "attention.head_count_kv", "rope.freq_base", "attention.layer_norm_rms_epsilon", "vocab_size",
)  # fmt: skip


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    result = build_twin(NAME, tmp_path_factory.mktemp("models"))
    assert result.built and result.path.is_file()
    return result.path


def _tensors(path: Path) -> dict[str, tuple[list[int], str]]:
    return {t.name: (t.shape.tolist(), t.tensor_type.name) for t in GGUFReader(str(path)).tensors}


def _arch(path: Path) -> dict[str, object]:
    fields = GGUFReader(str(path)).fields
    return {key: fields[f"llama.{key}"].contents() for key in ARCH_KEYS}


def test_the_twin_has_the_real_tensors_and_hyperparameters(twin):
    real = locate(NAME, Path("models"))
    assert _tensors(twin) == _tensors(real)  # names, shapes and quantisation types, tensor for tensor
    assert _arch(twin) == _arch(real)
    assert abs(twin.stat().st_size - real.stat().st_size) < 64 * 1024  # metadata only


def _manager(path: Path, replies: dict[str, str]) -> DialogueManager:
    cfg = DialogueSettings()
    # One thread: llama.cpp's spinning threads make timings erratic on a busy 2-core machine.
    manager = DialogueManager(
        path, cfg.system_prompt, n_ctx=cfg.context_tokens, max_tokens=cfg.max_tokens, temperature=cfg.temperature,
        history_budget_tokens=cfg.history_budget_tokens, seed=0, forced_replies=replies, n_threads=1,
    )  # fmt: skip
    manager.load()
    return manager


def test_the_twin_says_the_forced_reply_at_the_real_models_speed(twin):
    replies = yaml.safe_load(TEACHER_FILE.read_text())
    real = _manager(locate(NAME, Path("models")), replies)
    copy = _manager(twin, replies)
    ratios = []
    for _ in range(ATTEMPTS):  # a busy shared machine can tilt one attempt; a twin that is off fails every one
        ratios.append(_interleaved_ratio(real, copy, replies))
        if abs(ratios[-1] - 1.0) < 0.05:
            break
    assert real.last_completion_tokens == copy.last_completion_tokens > 60
    assert abs(ratios[-1] - 1.0) < 0.05, ratios


def _interleaved_ratio(real: DialogueManager, copy: DialogueManager, replies: dict[str, str]) -> float:
    """The twin's median time over the real model's, in rounds that alternate which goes first."""
    times: dict[str, list[float]] = {"real": [], "twin": []}
    for i in range(ROUNDS):  # interleaved, so a change of machine load hits both alike
        for label, manager in (("real", real), ("twin", copy))[:: 1 if i % 2 else -1]:
            manager.reset()
            started = time.perf_counter()
            reply = manager.reply("how do I boil an egg")
            times[label].append(time.perf_counter() - started)
            assert reply.text == replies[QUESTION].strip()  # forced token by token, whatever the weights
    return statistics.median(times["twin"]) / statistics.median(times["real"])


def test_a_half_written_twin_is_rebuilt(tmp_path):
    folder = tmp_path / "twins" / NAME
    folder.mkdir(parents=True)
    file_name = TWIN_SHAPES[NAME].file_name
    (folder / (file_name + ".partial")).write_bytes(b"GGUF" + b"\0" * 100)  # a quantisation cut short
    (folder / (file_name + ".f16.partial")).write_bytes(b"GGUF")
    result = build_twin(NAME, tmp_path)
    assert result.built and result.path == folder / file_name
    assert sorted(p.name for p in folder.iterdir()) == [file_name]
    assert len(GGUFReader(str(result.path)).tensors) == 272
    again = build_twin(NAME, tmp_path)
    assert not again.built and again.size_bytes == result.size_bytes
