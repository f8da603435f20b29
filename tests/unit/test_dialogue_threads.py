"""How many llama.cpp threads the app's dialogue gets when dialogue.threads is null."""

from __future__ import annotations

from assistant.config import usable_cores
from assistant.dialogue import SMALL_MODEL_BYTES, conversation_threads


def test_a_small_model_gets_half_the_cores_and_a_bigger_one_all(tmp_path):
    small, big = tmp_path / "small.gguf", tmp_path / "big.gguf"
    with small.open("wb") as f:
        f.truncate(SMALL_MODEL_BYTES - 1)  # sparse: no disk used
    with big.open("wb") as f:
        f.truncate(SMALL_MODEL_BYTES + 1)
    assert conversation_threads(small) == max(1, usable_cores() // 2)
    assert conversation_threads(big) == usable_cores()
    assert conversation_threads(tmp_path / "absent.gguf") == usable_cores()
