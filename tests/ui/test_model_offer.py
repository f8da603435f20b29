"""The offer of the profile's better dialogue model, downloaded from a local HTTP server (tests/http_server.py)
through the app's downloader: name, size and licence shown, progress, cancel keeps the partial file, resume asks
for the rest with a Range request, and the settings dialog switches to the model once it is there.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from assistant.models import HF, ModelFile, ModelSpec, make_registry, state
from assistant.profile import GIB, GPUInfo, resolve
from tests.http_server import LocalHTTPServer
from tests.ui.conftest import small_stream_settings
from ui.model_offer import DownloadWorker, ModelOffer, offered_dialogue_model
from ui.settings_dialog import SettingsDialog

pytestmark = pytest.mark.ui

BODY = bytes(range(256)) * (3 * 4096 + 17)  # ~3 MiB: several 1 MiB chunks of the downloader
PATH = "/test/Llama-Test.gguf"
# A stand-in for the medium profile's model, under its registry name, served by the local server.
SPEC = ModelSpec(
    "llama-3.2-1b", "llm", "Test Llama 1B GGUF", "Test Community Licence",
    (ModelFile("Llama-Test.gguf", (f"{HF}{PATH}",), len(BODY), hashlib.sha256(BODY).hexdigest()),),
    "llm", entry="Llama-Test.gguf",
)  # fmt: skip
REGISTRY = make_registry([SPEC])
WAIT_MS = 20_000


@pytest.fixture
def server():
    with LocalHTTPServer({PATH: BODY}) as s:
        yield s


def test_download_cancel_and_resume(qtbot, tmp_path, server, monkeypatch):
    models = tmp_path / "models"
    offer = ModelOffer(SPEC, models, server.base_url, REGISTRY)
    qtbot.addWidget(offer)
    assert "Test Llama 1B GGUF: 3 MB, Test Community Licence" in offer.label.text()
    assert offer.button.text() == "Download"

    # The user presses Cancel as the first progress report comes (on localhost the whole file would be there
    # before a click could land): the download stops at the next chunk.
    report = DownloadWorker._on_progress

    def cancel_after_first_report(worker, progress) -> None:
        report(worker, progress)
        offer.cancel()

    monkeypatch.setattr(DownloadWorker, "_on_progress", cancel_after_first_report)
    offer.button.click()
    assert offer.button.text() == "Cancel"
    qtbot.waitUntil(lambda: not offer.downloading, timeout=WAIT_MS)
    monkeypatch.undo()
    part = models / "llm" / "Llama-Test.gguf.part"
    assert part.is_file() and 0 < part.stat().st_size < len(BODY)  # kept for resume
    assert offer.button.text() == "Resume download" and "Cancelled" in offer.status.text()
    assert not state(SPEC.name, models, registry=REGISTRY).usable

    kept = part.stat().st_size
    with qtbot.waitSignal(offer.downloaded, timeout=WAIT_MS) as done:
        offer.button.click()  # Resume
    assert done.args == [(SPEC.name,)]
    assert server.requests[-1].range == f"bytes={kept}-" and server.requests[-1].status == 206
    assert (models / "llm" / "Llama-Test.gguf").read_bytes() == BODY and not part.exists()
    assert state(SPEC.name, models, registry=REGISTRY).usable
    assert offer.bar.value() == 1000 and not offer.button.isEnabled()


def test_the_settings_dialog_offers_the_profiles_model_and_switches_to_it(qtbot, tmp_path, server):
    models = tmp_path / "models"
    settings = small_stream_settings(
        tmp_path, gpu_profile="medium", paths={"models_dir": str(models)}, models={"mirror_url": server.base_url}
    )
    resolved = resolve(settings, probe=lambda: GPUInfo("RTX", 8 * GIB, 6 * GIB), llm_gpu_probe=lambda: True)
    assert resolved.dialogue_model == SPEC.name
    dialog = SettingsDialog(
        settings, resolved=resolved, user_config=tmp_path / "user.yaml", device_lister=lambda: [],
        level_probe=None, model_registry=REGISTRY,
        face_preview=lambda path: (np.zeros((8, 8, 3), np.uint8), None),
    )  # fmt: skip
    qtbot.addWidget(dialog)
    offer = dialog.model_offer
    assert offer is not None and "Test Community Licence" in offer.label.text()
    with qtbot.waitSignal(dialog.applied, timeout=WAIT_MS) as applied:
        offer.button.click()
    assert applied.args[0] is dialog.settings  # the same settings: the session reloads the dialogue with the model
    assert state(SPEC.name, models, registry=REGISTRY).usable
    # Once there, nothing is offered any more.
    assert offered_dialogue_model(resolved, settings.dialogue.model, models, REGISTRY) is None
    dialog.reject()


def test_nothing_is_offered_for_a_named_model_or_the_bundled_one(tmp_path):
    settings = small_stream_settings(tmp_path, gpu_profile="medium")
    resolved = resolve(settings, probe=lambda: GPUInfo("RTX", 8 * GIB, 6 * GIB), llm_gpu_probe=lambda: False)
    assert offered_dialogue_model(resolved, "smollm2-135m", tmp_path, REGISTRY) is None  # the user chose one
    low = resolve(small_stream_settings(tmp_path), probe=lambda: None, llm_gpu_probe=lambda: False)
    assert offered_dialogue_model(low, "auto", tmp_path) is None  # low's model is the bundled one
