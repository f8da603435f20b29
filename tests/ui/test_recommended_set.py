"""The first run on a CPU offers the recommended model set: the real main window, with nothing downloaded, says
plainly that the bundled models are an offline demo whose answers are often wrong, and offers the set this CPU
keeps quick (what it is, its size, each licence and whether it allows commercial use, what it changes). One click
downloads both models from a local HTTP server (tests/http_server.py) through the app's downloader, in turn, and
the window switches to them: the notice goes. "Not now" is remembered in the user overlay across windows, and
the settings dialog still offers the set, saying what each profile gives and costs here.

The session is the UI tests' fake (tests/ui/conftest.py) with the app Session's recommendation: the real
assistant.recommend, on a CPU as fast as the reference machine, its medium tier's models served by the test.
"""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import yaml

import assistant.recommend as recommend_module
from assistant.capability import MachineSpeed, WorkloadTime
from assistant.config import load_settings
from assistant.models import HF, CommercialUse, ModelFile, ModelSpec, make_registry, state
from assistant.pipeline import Stages
from assistant.recommend import REFERENCE_MACHINE_S, best_present, recommend, sustained_tier
from tests.http_server import LocalHTTPServer
from tests.ui.conftest import FakeASR, FakeListener, FakeLLM, FakeSession, FakeTTS, player_for_tests
from tests.ui.conftest import small_stream_settings
from ui.main_window import MainWindow
from ui.model_offer import DEMO_DECLINED, DEMO_NOTICE, DownloadWorker, SetOffer

pytestmark = pytest.mark.ui

WAIT_MS = 20_000
LLM_BODY = bytes(range(256)) * (2 * 4096 + 5)  # ~2 MiB: two 1 MiB chunks of the downloader
ASR_BODY = bytes(range(255, -1, -1)) * (2 * 4096 + 9)  # ~2 MiB
ASR_CONFIG = b'{"test": true}'
LLM_PATH, ASR_PATH, CONFIG_PATH = "/test/llama.gguf", "/test/base.en/model.bin", "/test/base.en/config.json"


def _file(rel: str, path: str, body: bytes) -> ModelFile:
    return ModelFile(rel, (f"{HF}{path}",), len(body), hashlib.sha256(body).hexdigest())


# Stand-ins for the medium tier's models under their registry names, with the real ones' descriptions and licences.
LLM = ModelSpec(
    "llama-3.2-1b", "llm", "Llama 3.2 1B Instruct Q4_K_M GGUF (test)", "Llama 3.2 Community License",
    (_file("llama.gguf", LLM_PATH, LLM_BODY),), "llm", entry="llama.gguf", commercial_use=CommercialUse.CONDITIONS,
    commercial_terms="over 700 million monthly active users need a licence from Meta",
)  # fmt: skip
ASR = ModelSpec(
    "whisper-base.en", "asr", "Whisper base.en (English only), test", "MIT",
    (_file("config.json", CONFIG_PATH, ASR_CONFIG), _file("model.bin", ASR_PATH, ASR_BODY)), "whisper/base.en",
    commercial_use=CommercialUse.YES,
)  # fmt: skip
REGISTRY = make_registry([LLM, ASR])
SIZE_MB = (len(LLM_BODY) + len(ASR_BODY) + len(ASR_CONFIG)) / 1000**2
SPEED = MachineSpeed(WorkloadTime(REFERENCE_MACHINE_S / 2, REFERENCE_MACHINE_S / 2), 2, "test")  # the reference


@pytest.fixture(autouse=True)
def reference_costs(monkeypatch):
    """The reference machine's seconds: medium within a quick turn's budgets, high far over them. The first word
    comes 1.5 x ((0.8 + 0.3) - (0.456 + 0.14)) = 0.8 s later with medium than with the demo set (IN_APP_SLOWDOWN)."""
    for table, values in (
        (recommend_module.REFERENCE_LLM_S, {LLM.name: 0.8, "llama-3.2-3b": 5.0, "smollm2-135m": 0.456}),
        (recommend_module.REFERENCE_ASR_S, {ASR.name: 0.3, "whisper-small.en": 5.0, "whisper-tiny.en": 0.14}),
    ):
        for name, seconds in values.items():
            monkeypatch.setitem(table, name, seconds)


class RecommendingSession(FakeSession):
    """The fake session with the app Session's `recommendation`, made again whenever it resolves its settings."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.recommendation = self._recommend()

    def reconfigure(self, settings, progress=None) -> list[str]:
        changed = super().reconfigure(settings, progress)
        self.recommendation = self._recommend()
        return changed

    def _recommend(self):
        # This CPU's speed, as resolve() records it; what runs: the best model of the tier on disk, else the
        # bundled one (as the CPU tiers resolve).
        self.resolved = dataclasses.replace(self.resolved, cpu_speed=SPEED)
        models, tier = self.settings.models_dir, sustained_tier(SPEED)
        in_use = (best_present(tier, kind, models, REGISTRY) for kind in ("llm", "asr"))
        return recommend(SPEED, models, *in_use, registry=REGISTRY)


@pytest.fixture
def server():
    with LocalHTTPServer({LLM_PATH: LLM_BODY, ASR_PATH: ASR_BODY, CONFIG_PATH: ASR_CONFIG}) as s:
        yield s


@pytest.fixture
def models(tmp_path):
    return tmp_path / "models"


@pytest.fixture
def open_window(qtbot, tmp_path, server, models):
    """(ui overrides) -> a started MainWindow on a RecommendingSession, loaded; every window is closed after."""
    windows = []
    FakeListener.instances.clear()

    def factory(settings, on_event):
        stages = Stages(asr=FakeASR(), dialogue=FakeLLM(), tts=FakeTTS(), talking_head=None)
        return RecommendingSession(settings, on_event, stages, tmp_path / "replies")

    def open_(ui: dict | None = None) -> MainWindow:
        settings = small_stream_settings(
            tmp_path, audio={"barge_in": False}, paths={"models_dir": str(models)},
            models={"mirror_url": server.base_url}, ui=ui or {},
        )  # fmt: skip
        window = MainWindow(
            settings, factory, listener_factory=FakeListener, player_factory=player_for_tests,
            user_config=tmp_path / "user-config.yaml",
        )  # fmt: skip
        qtbot.addWidget(window)
        windows.append(window)
        window.show()
        window.start()
        qtbot.waitUntil(lambda: window.ready and window.live.stream is not None, timeout=WAIT_MS)
        return window

    yield open_
    for window in windows:
        window.close()


def usable(spec: ModelSpec, models) -> bool:
    return state(spec.name, models, registry=REGISTRY).usable


def test_first_run_says_the_demo_is_a_demo_offers_the_set_and_switches_to_it(qtbot, open_window, models, server,
                                                                            artifacts_dir):  # fmt: skip
    window = open_window()
    banner = window.model_banner
    offer = banner.offer
    assert banner.isVisible() and banner.notice.isVisible() and offer is not None and offer.isVisible()
    assert banner.notice.text() == DEMO_NOTICE
    assert "offline demo" in DEMO_NOTICE and "often wrong" in DEMO_NOTICE
    assert offer.label.text() == "Better answers for this computer: Llama 3.2 1B + Whisper base.en"
    assert offer.details.text() == (
        "Right answers to everyday questions far more often; the first word about 0.8 s later. "
        f"Download: {SIZE_MB:.0f} MB."
    )
    assert offer.licences.text().splitlines() == [
        "Llama 3.2 1B: Llama 3.2 Community License, commercial use allowed under conditions (over 700 million "
        "monthly active users need a licence from Meta)",
        "Whisper base.en: MIT, commercial use allowed",
    ]
    assert offer.button.text() == "Download both" and offer.decline_button.isVisible()
    window.grab().save(str(artifacts_dir / "recommended-set-offer.png"))

    session = window.worker.session
    with qtbot.waitSignal(banner.downloaded, timeout=WAIT_MS) as done:
        offer.button.click()
    assert done.args == [(LLM.name, ASR.name)]
    assert usable(LLM, models) and usable(ASR, models)
    assert {r.path for r in server.requests} == {LLM_PATH, ASR_PATH, CONFIG_PATH}
    # The window reconfigures the session with the same settings (as after the settings dialog's download); the
    # session then runs the set, and the notice goes with the offer.
    qtbot.waitUntil(lambda: not banner.isVisible(), timeout=WAIT_MS)
    assert session.reconfigured_with == [window.settings]
    assert not session.recommendation.demo_in_use and not session.recommendation.offer
    assert banner.offer is None
    assert "Downloaded llama-3.2-1b and whisper-base.en: switching to them." in window.conversation.plain_text()


def test_not_now_is_remembered_and_the_settings_dialog_still_offers_the_set(qtbot, open_window, tmp_path, models,
                                                                          artifacts_dir):  # fmt: skip
    window = open_window()
    banner = window.model_banner
    banner.offer.decline_button.click()
    # The offer goes; the notice stays, short, and says where the better models are.
    assert banner.offer is None and banner.isVisible()
    assert banner.notice.text() == DEMO_DECLINED == (
        "⚠ Demo models: answers are often wrong. Settings → Models offers better ones."
    )
    overlay = yaml.safe_load((tmp_path / "user-config.yaml").read_text(encoding="utf-8"))
    assert overlay == {"ui": {"model_offer_declined": [LLM.name, ASR.name]}}
    window.close()

    # The next start reads the overlay: the same set is not offered again.
    saved = load_settings(user_path=tmp_path / "user-config.yaml", env={})
    assert saved.ui.model_offer_declined == [LLM.name, ASR.name]
    window = open_window(ui={"model_offer_declined": saved.ui.model_offer_declined})
    banner = window.model_banner
    assert banner.offer is None and banner.notice.isVisible() and banner.notice.text() == DEMO_DECLINED
    window.grab().save(str(artifacts_dir / "recommended-set-declined.png"))

    # Settings → Models: what each profile gives and costs here, and the offer, declined or not.
    window.open_settings()
    dialog = window.settings_dialog
    qtbot.waitUntil(dialog.isVisible, timeout=5_000)
    panel = dialog.models_panel
    assert dialog.profile_combo.itemText(0) == "auto (resolves to medium here)"
    assert panel.profiles.text().splitlines() == [
        "• auto: picks the best set this computer keeps quick (here: medium).",
        "• low: SmolLM2-135M + Whisper tiny.en (bundled offline demo): quick, but answers are often wrong and words "
        "are misheard. The quickest.",
        f"• medium: Llama 3.2 1B + Whisper base.en ({SIZE_MB:.0f} MB to download): right answers to everyday "
        "questions far more often. Recommended here: the first word about 0.8 s later.",
        "• high: Llama 3.2 3B + Whisper small.en (2.5 GB to download): the best answers, for a fast CPU. "
        "Too slow on this computer.",
    ]
    offer = panel.offer
    assert offer is not None and offer.label.text().endswith("Llama 3.2 1B + Whisper base.en")
    assert not offer.decline_button.isVisible()
    dialog.grab().save(str(artifacts_dir / "recommended-set-settings.png"))

    with qtbot.waitSignal(dialog.applied, timeout=WAIT_MS):
        offer.button.click()
    assert usable(LLM, models) and usable(ASR, models)
    qtbot.waitUntil(lambda: not banner.isVisible(), timeout=WAIT_MS)  # the window switched: no demo any more
    dialog.reject()


def test_the_set_downloads_in_turn_and_a_cancel_in_the_second_model_resumes_there(qtbot, models, server,
                                                                                    monkeypatch):  # fmt: skip
    rec = recommend(SPEED, models, "smollm2-135m", "whisper-tiny.en", registry=REGISTRY)
    offer = SetOffer(rec, models, server.base_url)
    qtbot.addWidget(offer)
    report = DownloadWorker._on_progress

    def cancel_in_the_recogniser(worker, progress) -> None:
        report(worker, progress)
        if progress.model == ASR.name and progress.file == "model.bin":
            offer.cancel()

    # The user presses Cancel as the recogniser's first chunk comes: the download stops at its next chunk.
    monkeypatch.setattr(DownloadWorker, "_on_progress", cancel_in_the_recogniser)
    offer.button.click()
    qtbot.waitUntil(lambda: not offer.downloading, timeout=WAIT_MS)
    monkeypatch.undo()
    assert usable(LLM, models) and not usable(ASR, models)
    assert offer.button.text() == "Resume download" and "Cancelled" in offer.status.text()
    # The bar counts the first model whole and the part of the second.
    assert 1000 * len(LLM_BODY) / rec.download_bytes < offer.bar.value() < 1000

    before = len(server.requests)
    with qtbot.waitSignal(offer.downloaded, timeout=WAIT_MS):
        offer.button.click()  # Resume
    resumed = server.requests[before:]
    assert [r.path for r in resumed] == [ASR_PATH]  # the first model is not fetched again
    assert resumed[0].status == 206 and resumed[0].range.startswith("bytes=")
    assert usable(ASR, models) and offer.bar.value() == 1000
