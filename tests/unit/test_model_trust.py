"""Model files nobody can check are not trusted silently: `models list` calls a downloaded model whose files have no
published sha256 "unverified"; a bundled one (installed by pip, pinned) and a fully published one are plain."""

from __future__ import annotations

from pathlib import Path

from assistant.models import REGISTRY, ModelState, ModelStatus, state_text, unverifiable_files


def _present(name: str) -> ModelState:
    return ModelState(name, ModelStatus.PRESENT, Path("/models") / name, 1000)


def test_a_downloaded_model_without_published_sha256_is_unverified() -> None:
    spec = REGISTRY["coqui-vits"]
    assert unverifiable_files(spec)
    assert state_text(_present("coqui-vits"), spec).startswith("present, unverified")


def test_published_and_bundled_models_read_present() -> None:
    checked = next(s for s in REGISTRY.values() if not s.bundled and not unverifiable_files(s))
    assert state_text(_present(checked.name), checked) == "present"
    bundled = REGISTRY["piper-joe"]
    assert bundled.bundled and state_text(_present("piper-joe"), bundled) == "present"
