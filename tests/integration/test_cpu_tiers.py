"""A CPU machine runs the recommended dialogue model once it is on disk, without the user touching gpu_profile.

The recommended model cannot be downloaded here: the speed twin of the bundled SmolLM2-135M stands in for it,
installed where the registry puts the medium tier's model (its registry entry then names the twin's size). The
CPU's speed is the reference machine's (an input from outside the unit: a busy CI machine must not change the
tier); everything else is the app's own: the shipped defaults, resolve(), the Session and llama.cpp.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

import assistant.models
import assistant.profile
from assistant.capability import MachineSpeed, WorkloadTime
from assistant.config import load_settings, settings_to_dict, validate_dict
from assistant.models import REGISTRY, ModelFile, install_dir
from assistant.recommend import REFERENCE_MACHINE_S, TIER_BY_PROFILE
from assistant.session import Session
from assistant.twins import build_twin

pytestmark = pytest.mark.integration

REFERENCE = MachineSpeed(WorkloadTime(REFERENCE_MACHINE_S / 2, REFERENCE_MACHINE_S / 2), 2, "reference")
MEDIUM = TIER_BY_PROFILE["medium"].dialogue_model


@pytest.fixture
def settings(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(assistant.profile, "measure_cpu_speed", lambda s: REFERENCE)
    data = settings_to_dict(load_settings(user_path=tmp_path / "none.yaml", env={}))
    data["paths"].update(models_dir=str(tmp_path / "models"), data_dir=str(tmp_path / "data"))
    s = validate_dict(data)
    assert s.gpu_profile == "auto" and s.dialogue.model == "auto"  # the shipped defaults, untouched
    return s


def install_twin_as(name: str, models_dir: Path, monkeypatch) -> Path:
    twin = build_twin("smollm2-135m", models_dir.parent / "twins").path
    spec = REGISTRY[name]
    dest = install_dir(spec, models_dir) / spec.files[0].rel_path
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(twin, dest)
    stand_in = replace(spec, files=(ModelFile(spec.files[0].rel_path, spec.files[0].urls, dest.stat().st_size),))
    monkeypatch.setitem(assistant.models.REGISTRY, name, stand_in)
    return dest


def test_nothing_downloaded_the_demo_models_answer_and_the_set_is_recommended(settings):
    session = Session(settings, probe=lambda: None, llm_gpu_probe=lambda: False)
    assert session.resolved.profile == "medium"  # what the reference CPU sustains
    assert (session.resolved.dialogue_model, session.resolved.asr_model) == ("smollm2-135m", "whisper-tiny.en")
    rec = session.recommendation
    assert rec is not None and rec.demo_in_use and rec.offer
    assert [s.name for s in rec.to_download] == [MEDIUM, TIER_BY_PROFILE["medium"].asr_model]
    assert session.notices == []  # the demo set is not a substitution to warn about


def test_a_downloaded_model_of_the_tier_is_used_without_touching_the_profile(settings, monkeypatch):
    path = install_twin_as(MEDIUM, settings.models_dir, monkeypatch)
    session = Session(settings, probe=lambda: None, llm_gpu_probe=lambda: False)
    assert session.resolved.dialogue_model == MEDIUM
    assert session.resolved.sources["dialogue.model"] == "gpu_profile=medium"
    session.dialogue = session._build_dialogue()  # the app's own build: llama.cpp loads the file
    try:
        assert session.dialogue.model_path == path and session.dialogue.name == MEDIUM
        assert session.engines_summary()["llm"] == f"{MEDIUM} on CPU"
        reply = session.dialogue.reply("What is the capital of France?")
        assert session.dialogue.last_completion_tokens > 0 and reply.model == MEDIUM
    finally:
        session.close()
    rec = session.recommendation
    assert rec is not None and [s.name for s in rec.to_download] == [TIER_BY_PROFILE["medium"].asr_model]
