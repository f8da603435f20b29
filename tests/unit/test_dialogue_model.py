"""The dialogue model is built in one place (assistant.dialogue_model.build_dialogue) for the desktop session and
the livestream: both get the profile's GPU offload and the bundled model standing in for one not downloaded.
No model load: DialogueManager.load is a no-op and the CUDA probes are injected."""

from __future__ import annotations

import logging

import pytest

from assistant.livestream.stages import dialogue_factory
from assistant.models import REGISTRY
from assistant.profile import resolve
from assistant.session import Session
from tests.unit.test_profile import BIG_GPU, fake_download, settings_for


@pytest.fixture(autouse=True)
def no_llama_load(monkeypatch):
    from assistant.dialogue import DialogueManager

    monkeypatch.setattr(DialogueManager, "load", lambda self: None)


def test_the_livestream_gets_the_gpu_offload_and_the_bundled_fallback(tmp_path, caplog):
    settings = settings_for(tmp_path, gpu_profile="medium")
    resolved = resolve(settings, probe=lambda: BIG_GPU, llm_gpu_probe=lambda: True)
    assert resolved.dialogue_model == "llama-3.2-1b" and resolved.dialogue_gpu_layers == -1

    with caplog.at_level(logging.WARNING):
        manager = dialogue_factory(settings, resolved)()
    assert manager.name == "smollm2-135m" and manager.n_gpu_layers == -1
    assert "llama-3.2-1b is not downloaded" in caplog.text and "using the bundled smollm2-135m" in caplog.text

    folder = fake_download("llama-3.2-1b", settings.models_dir)
    manager = dialogue_factory(settings, resolved)()
    assert manager.model_path == folder / REGISTRY["llama-3.2-1b"].entry and manager.n_gpu_layers == -1


def test_the_livestream_and_the_session_build_the_same_model(tmp_path):
    settings = settings_for(tmp_path, gpu_profile="high", **{"dialogue.gpu_layers": 12})
    session = Session(settings, probe=lambda: BIG_GPU, llm_gpu_probe=lambda: True)
    session.dialogue = from_session = session._build_dialogue()
    from_stream = dialogue_factory(settings, session.resolved)()
    assert from_stream.n_gpu_layers == from_session.n_gpu_layers == 12
    assert (from_stream.name, from_stream.model_path) == (from_session.name, from_session.model_path)
    assert session.engines_summary()["llm"].startswith("smollm2-135m on GPU (12 layers) (instead of llama-3.2-3b")
