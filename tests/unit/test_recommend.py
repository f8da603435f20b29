"""What the app recommends to a CPU machine: the tier it sustains, what of it is missing, how big, what it costs."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.capability import MachineSpeed, WorkloadTime
from assistant.models import REGISTRY, install_dir
from assistant.recommend import (
    IN_APP_SLOWDOWN,
    REFERENCE_ASR_S,
    REFERENCE_LLM_S,
    REFERENCE_MACHINE_S,
    TIER_BY_PROFILE,
    best_present,
    recommend,
    sustained_tier,
)


def speed(factor: float) -> MachineSpeed:
    return MachineSpeed(WorkloadTime(REFERENCE_MACHINE_S * factor, 0.0), 2, "test")


def put(name: str, models_dir: Path) -> None:
    """A registry model's files at their published sizes, with content (not zeros), as a download leaves them."""
    spec = REGISTRY[name]
    for f in spec.files:
        path = install_dir(spec, models_dir) / f.rel_path
        path.parent.mkdir(parents=True, exist_ok=True)
        size = f.size_bytes or 64
        head = {".json": b'{"x": 1}', ".txt": b"word\n"}.get(path.suffix, b"GGUF")
        with open(path, "wb") as out:  # a text file padded with spaces, a binary one sparse (zeros after its head)
            out.write(head + (b" " * (size - len(head)) if path.suffix in (".json", ".txt") else b""))
            out.truncate(size)


def test_the_reference_machine_is_offered_the_medium_set_with_its_size_and_cost(tmp_path):
    rec = recommend(speed(1.0), tmp_path, "smollm2-135m", "whisper-tiny.en")
    medium = TIER_BY_PROFILE["medium"]
    assert rec.tier == medium and rec.offer and rec.demo_in_use
    assert [s.name for s in rec.to_download] == [medium.dialogue_model, medium.asr_model]
    assert rec.download_bytes == sum(REGISTRY[n].size_bytes for n in (medium.dialogue_model, medium.asr_model))
    predicted = (REFERENCE_LLM_S[medium.dialogue_model] + REFERENCE_ASR_S[medium.asr_model]) - (
        REFERENCE_LLM_S["smollm2-135m"] + REFERENCE_ASR_S["whisper-tiny.en"]
    )
    assert rec.extra_first_word_s == pytest.approx(IN_APP_SLOWDOWN * predicted)
    assert all(": " in line for line in rec.licences()) and len(rec.licences()) == 2


def test_a_slow_machine_is_offered_nothing(tmp_path):
    rec = recommend(speed(10.0), tmp_path, "smollm2-135m", "whisper-tiny.en")
    assert rec.tier.profile == "low" and not rec.offer and rec.download_bytes == 0


def test_a_fast_machine_costs_scale_down_and_it_sustains_the_high_tier(tmp_path):
    assert sustained_tier(speed(0.3)).profile == "high"
    rec = recommend(speed(0.3), tmp_path, "smollm2-135m", "whisper-tiny.en")
    assert rec.cost.llm_s == pytest.approx(0.3 * REFERENCE_LLM_S[rec.tier.dialogue_model])


def test_downloaded_models_are_used_and_no_longer_offered(tmp_path):
    medium = TIER_BY_PROFILE["medium"]
    put(medium.dialogue_model, tmp_path)
    assert best_present(medium, "llm", tmp_path) == medium.dialogue_model
    assert best_present(medium, "asr", tmp_path) == "whisper-tiny.en"  # falls back a tier
    rec = recommend(speed(1.0), tmp_path, medium.dialogue_model, "whisper-tiny.en")
    assert [s.name for s in rec.to_download] == [medium.asr_model] and rec.demo_in_use
    put(medium.asr_model, tmp_path)
    rec = recommend(speed(1.0), tmp_path, medium.dialogue_model, medium.asr_model)
    assert not rec.offer and not rec.demo_in_use
