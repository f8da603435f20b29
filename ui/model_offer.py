"""The offer of better models: what they are, their size and licences, one click to download them in turn with
progress, cancel and resume, through the same downloader as `assistant models download` (assistant.download).

The bundled SmolLM2-135M and Whisper tiny.en are an offline demo whose answers are often wrong. On a machine
with a CUDA GPU the `medium` and `high` profiles pick a bigger dialogue model, which runs once it is downloaded:
`offered_dialogue_model()` says which one to offer. On a CPU the session recommends a set (assistant.recommend:
a dialogue model and a recogniser this CPU keeps quick): `SetOffer` offers it, and `ModelsPanel` says what
each profile gives and costs on this machine (the settings dialog shows it). `ModelOffer` is the download widget
under both: a cancelled download keeps its `.part` file, and the next click resumes it.

Needs PySide6; the download runs on its own QThread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QThread, Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from assistant.config import Settings
from assistant.download import DownloadProgress, download_model
from assistant.errors import AssistantError, Cancelled
from assistant.models import ModelSpec, get_spec, make_registry, state
from assistant.recommend import CPU_TIERS, Recommendation, Tier, tier_cost, usable

log = logging.getLogger(__name__)

MB = 1000**2  # sizes as the hosts publish them
GB = 1000**3
# What a ModelSpec's commercial_use (assistant.models.CommercialUse) says, in a user's words.
COMMERCIAL_USE = {
    "yes": "commercial use allowed",
    "conditions": "commercial use allowed under conditions",
    "no": "no commercial use",
    "unknown": "commercial use: read the licence",
}
# The main window's demo notice: with the offer next to it, after a "Not now", and where nothing is offered.
DEMO_NOTICE = "⚠ The bundled models are an offline demo: their answers are often wrong."
DEMO_DECLINED = "⚠ Demo models: answers are often wrong. Settings → Models offers better ones."
DEMO_NO_OFFER = "⚠ Demo models: answers are often wrong. Settings → Models says what bigger ones cost here."


def offered_dialogue_model(
    resolved: object, dialogue_model_setting: str, models_dir: Path, registry: Mapping[str, ModelSpec] | None = None
) -> ModelSpec | None:
    """The profile's dialogue model when the settings leave the choice to the profile and it is not there yet."""
    name = getattr(resolved, "dialogue_model", None)
    if dialogue_model_setting != "auto" or not name:
        return None
    try:
        spec = get_spec(name, registry)
        usable = state(name, models_dir, registry=registry).usable
    except AssistantError:
        return None
    return None if spec.bundled or usable else spec


def describe(spec: ModelSpec) -> str:
    size = f"{spec.size_bytes / MB:,.0f} MB" if spec.size_bytes else "size unknown"
    return f"{spec.description}: {size}, {spec.licence}"


def size_text(size_bytes: int | None) -> str:
    if not size_bytes:
        return "size unknown"
    return f"{size_bytes / GB:.1f} GB" if size_bytes >= GB else f"{size_bytes / MB:,.0f} MB"


def short_name(spec: ModelSpec) -> str:
    """"Qwen2.5 1.5B" from "Qwen2.5 1.5B Instruct Q4_K_M GGUF (Qwen)", "Whisper base.en" from "Whisper base.en
    (English only), CTranslate2 by Systran": the description up to its first detail."""
    text = spec.description
    for detail in (" (", ",", " Instruct", "-Instruct", " Q4_", " GGUF"):
        text = text.split(detail, 1)[0]
    return text.strip() or spec.name


def licence_text(spec: ModelSpec) -> str:
    """"Qwen2.5 1.5B: Apache-2.0, commercial use allowed", and the conditions or restriction if there are any."""
    use = getattr(spec, "commercial_use", None)  # a CommercialUse (a str enum); absent from older registries
    value = str(getattr(use, "value", use) or "unknown")
    text = f"{short_name(spec)}: {spec.licence}, {COMMERCIAL_USE.get(value, COMMERCIAL_USE['unknown'])}"
    terms = getattr(spec, "commercial_terms", "")
    return f"{text} ({terms})" if terms and value in ("conditions", "no") else text


def later_text(extra_first_word_s: float | None) -> str:
    """How much later the first word comes than with the demo set (a prediction from assistant.recommend)."""
    if extra_first_word_s is None:
        return "the first word a little later"
    if extra_first_word_s < 0.05:
        return "the first word as soon as now"
    return f"the first word about {extra_first_word_s:.1f} s later"


def changes_text(rec: Recommendation) -> str:
    """What the set changes: its tier's gain in a user's words, then its cost in time."""
    gain = _gain(rec.tier)
    return f"{gain[:1].upper()}{gain[1:]}; {later_text(rec.extra_first_word_s)}."


def total_bytes(specs: Sequence[ModelSpec]) -> int | None:
    """Every file of every model; None when a size is not known."""
    sizes = [spec.size_bytes for spec in specs]
    return None if None in sizes else sum(s for s in sizes if s is not None)


class DownloadWorker(QThread):
    """Runs download_model for each model in turn; `cancel()` stops after the current chunk, keeping the .part
    for resume. Progress counts every model's bytes, those on disk before it started included."""

    progress = Signal(object, object)  # bytes done (int), bytes in all (int or None)
    model_started = Signal(int)  # the index of the model whose files come now
    done = Signal(object)  # tuple of DownloadResult, one a model
    failed = Signal(str)
    cancelled = Signal()

    def __init__(
        self,
        specs: ModelSpec | Sequence[ModelSpec],
        models_dir: Path,
        base_url: str | None,
        registry: Mapping[str, ModelSpec] | None,
    ) -> None:
        super().__init__()
        self.specs = (specs,) if isinstance(specs, ModelSpec) else tuple(specs)
        self.models_dir, self.base_url, self.registry = models_dir, base_url, registry
        self._cancel = threading.Event()
        self._total = total_bytes(self.specs)
        # download_model reports the files it fetches (a resumed one from its first byte), not those it skips.
        self._installed = sum(state(s.name, models_dir, registry=registry).on_disk_bytes for s in self.specs)
        self._done_by_file: dict[tuple[str, str], int] = {}

    def cancel(self) -> None:
        self._cancel.set()

    def _on_progress(self, p: DownloadProgress) -> None:
        if self._cancel.is_set():
            raise Cancelled(f"download of {p.model} cancelled")  # leaves the .part for resume
        self._done_by_file[(p.model, p.file)] = p.done_bytes
        total = self._total if self._total or len(self.specs) > 1 else p.total_bytes
        self.progress.emit(self._installed + sum(self._done_by_file.values()), total)

    def run(self) -> None:
        results = []
        try:
            for index, spec in enumerate(self.specs):
                if self._cancel.is_set():
                    raise Cancelled(f"download of {spec.name} cancelled")
                self.model_started.emit(index)
                results.append(download_model(
                    spec.name, self.models_dir, base_url=self.base_url, registry=self.registry,
                    progress=self._on_progress,
                ))  # fmt: skip
        except Cancelled:
            self.cancelled.emit()
        except AssistantError as e:
            self.failed.emit(str(e))
        else:
            self.done.emit(tuple(results))


class ModelOffer(QWidget):
    """"Better answers: <model>, <size>, <licence>" with Download / Cancel / Resume and a progress bar; given
    several models, one click downloads them in turn. `downloaded(names)` fires once every file of each is in
    place. The offer downloads exactly the specs it is given (a registry of them, unless the caller passes one)."""

    downloaded = Signal(object)  # tuple of the model names

    def __init__(
        self,
        specs: ModelSpec | Sequence[ModelSpec],
        models_dir: Path,
        base_url: str | None = None,
        registry: Mapping[str, ModelSpec] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent, objectName="modelOffer")
        self.specs = (specs,) if isinstance(specs, ModelSpec) else tuple(specs)
        self.names = tuple(spec.name for spec in self.specs)
        self.models_dir, self.base_url = Path(models_dir), base_url
        self.registry = registry if registry is not None else make_registry(self.specs)
        count = len(self.specs)
        self.download_text = {1: "Download", 2: "Download both"}.get(count, f"Download all {count}")
        self.worker: DownloadWorker | None = None
        described = "; ".join(describe(s) for s in self.specs)
        self.label = QLabel(f"Better answers: {described}", objectName="modelOfferLabel", wordWrap=True)
        self.button = QPushButton(objectName="modelOfferButton")
        self.bar = QProgressBar(objectName="modelOfferProgress", textVisible=True)
        self.bar.setRange(0, 1000)
        self.status = QLabel(objectName="modelOfferStatus", wordWrap=True)
        self.row = QHBoxLayout()
        self.row.addWidget(self.bar, 1)
        self.row.addStretch(0)  # the buttons keep their size, on the right, while the bar is hidden
        self.row.addWidget(self.button)
        self.column = QVBoxLayout(self)
        self.column.setContentsMargins(0, 0, 0, 0)
        self.column.addWidget(self.label)
        self.column.addLayout(self.row)
        self.column.addWidget(self.status)
        self.button.clicked.connect(self._on_button)
        self._show_idle()

    def _done_bytes(self) -> int:
        """What is on disk of the models already: installed files and .part files waiting for a resume."""
        states = [state(name, self.models_dir, registry=self.registry) for name in self.names]
        return sum(st.on_disk_bytes + st.partial_bytes for st in states)

    def _show_idle(self, message: str = "") -> None:
        done = self._done_bytes()
        self.button.setText("Resume download" if done else self.download_text)
        total = total_bytes(self.specs)
        self.bar.setValue(int(1000 * min(done, total) / total) if done and total else 0)
        self.bar.setVisible(bool(done))
        self.status.setText(message)
        self.status.setVisible(bool(message))

    @property
    def downloading(self) -> bool:
        return self.worker is not None

    def start(self) -> None:
        if self.worker is not None:
            return
        worker = DownloadWorker(self.specs, self.models_dir, self.base_url, self.registry)
        worker.progress.connect(self._on_progress)
        worker.model_started.connect(self._on_model_started)
        worker.done.connect(self._on_done)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        self.worker = worker
        self.button.setText("Cancel")
        self.bar.show()
        self._on_model_started(0)
        worker.start()

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def _on_button(self) -> None:
        self.cancel() if self.worker is not None else self.start()

    def _on_model_started(self, index: int) -> None:
        count = f" ({index + 1} of {len(self.names)})" if len(self.names) > 1 else ""
        self.status.setText(f"Downloading {self.names[index]}{count}…")
        self.status.show()

    def _on_progress(self, done: int, total: int | None) -> None:
        if total:
            self.bar.setValue(int(1000 * min(done, total) / total))
            self.bar.setFormat(f"{done / MB:,.0f} of {total / MB:,.0f} MB")

    def _finished(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.wait()

    def _on_done(self, results: object) -> None:
        self._finished()
        self.bar.setValue(1000)
        self.button.setEnabled(False)
        self.button.setText("Downloaded")
        them = "it" if len(self.names) == 1 else "them"
        self.status.setText(f"{' and '.join(self.names)}: downloaded; the assistant switches to {them}.")
        log.info("offered models downloaded: %s", ", ".join(self.names))
        self.downloaded.emit(self.names)

    def _on_failed(self, message: str) -> None:
        self._finished()
        self._show_idle(f"The download failed: {message}")

    def _on_cancelled(self) -> None:
        self._finished()
        self._show_idle("Cancelled; what was downloaded is kept, and the download resumes from there.")

    def shutdown(self) -> None:
        """Cancel a download in flight and wait for its thread (the dialog or window is closing)."""
        worker = self.worker
        if worker is not None:
            worker.cancel()
            worker.wait(10_000)


class SetOffer(ModelOffer):
    """The recommended set (assistant.recommend.Recommendation): what it is, its download size, each model's
    licence and whether it allows commercial use, what it changes; one click downloads its models in turn. With
    `can_decline`, "Not now" emits `declined(names)` (whoever shows the offer remembers it and hides it)."""

    declined = Signal(object)  # tuple of the model names

    def __init__(
        self,
        recommendation: Recommendation,
        models_dir: Path,
        base_url: str | None = None,
        registry: Mapping[str, ModelSpec] | None = None,
        can_decline: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(recommendation.to_download, models_dir, base_url, registry, parent)
        self.setObjectName("setOffer")
        self.recommendation = recommendation
        names = " + ".join(short_name(s) for s in self.specs)
        self.label.setText(f"Better answers for this computer: {names}")
        self.label.setStyleSheet("font-weight:600;")
        self.details = QLabel(
            f"{changes_text(recommendation)} Download: {size_text(recommendation.download_bytes)}.",
            objectName="setOfferDetails", wordWrap=True,
        )  # fmt: skip
        self.licences = QLabel(
            "\n".join(licence_text(s) for s in self.specs), objectName="setOfferLicences", wordWrap=True
        )
        self.licences.setStyleSheet("color:#555;")
        self.column.insertWidget(1, self.details)
        self.column.insertWidget(2, self.licences)
        self.decline_button = QPushButton("Not now", objectName="setOfferDecline")
        self.decline_button.setVisible(can_decline)
        self.row.addWidget(self.decline_button)
        self.decline_button.clicked.connect(self._on_decline)

    def _on_decline(self) -> None:
        self.cancel()  # a download in flight stops; its .part waits for a later Resume
        self.declined.emit(self.names)


def profile_lines(recommendation: Recommendation, speed: Any, models_dir: Path) -> list[str]:
    """What each gpu_profile gives and costs on this CPU: its models and their download, what they give (the
    tier's words), and whether this CPU keeps it quick (`speed`: the session's MachineSpeed, None if untimed)."""
    lines = [f"auto: picks the best set this computer keeps quick (here: {recommendation.tier.profile})."]
    for tier in CPU_TIERS:
        download = _tier_download(tier, recommendation, models_dir)
        verdict = _tier_verdict(tier, recommendation, speed)
        lines.append(f"{tier.profile}: {_tier_models(tier)} ({download}): {_gain(tier)}. {verdict}")
    return lines


def _gain(tier: Tier) -> str:
    return tier.gives.rsplit(": ", 1)[-1]  # "a 1.5B model and Whisper base.en: right answers ...": the gain


def _tier_models(tier: Tier) -> str:
    names = []
    for name in (tier.dialogue_model, tier.asr_model):
        try:
            names.append(short_name(get_spec(name)))
        except AssistantError:
            names.append(name)
    return " + ".join(names)


def _tier_download(tier: Tier, rec: Recommendation, models_dir: Path) -> str:
    if tier == CPU_TIERS[0]:
        return "bundled offline demo"
    if tier == rec.tier:  # the recommendation knows its own models (a test serves its own)
        missing = list(rec.to_download)
    else:
        missing = []
        for name in (tier.dialogue_model, tier.asr_model):
            try:
                missing += [] if usable(name, models_dir) else [get_spec(name)]
            except AssistantError:
                pass
    return f"{size_text(total_bytes(missing))} to download" if missing else "downloaded"


def _tier_verdict(tier: Tier, rec: Recommendation, speed: Any) -> str:
    if tier == rec.tier:
        later = "" if tier == CPU_TIERS[0] else f": {later_text(rec.extra_first_word_s)}"
        return f"Recommended here{later}."
    if tier == CPU_TIERS[0]:
        return "The quickest."
    cost = tier_cost(tier, speed) if speed is not None else None
    if cost is None or None in (cost.llm_s, cost.asr_s):
        return "Its speed here is not known."
    return "Quick on this computer." if cost.sustained else "Too slow on this computer."


class ModelsPanel(QWidget):
    """The settings dialog's models section on a CPU: what each profile gives and costs here, and the
    recommended set's offer beside it (even after a "Not now": the user came looking for it)."""

    def __init__(
        self,
        recommendation: Recommendation,
        speed: Any,
        models_dir: Path,
        base_url: str | None = None,
        registry: Mapping[str, ModelSpec] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent, objectName="modelsPanel")
        self.profiles = QLabel(
            "\n".join(f"• {line}" for line in profile_lines(recommendation, speed, models_dir)),
            objectName="profileGives", wordWrap=True,
        )  # fmt: skip
        self.profiles.setAlignment(Qt.AlignmentFlag.AlignTop)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.profiles, 3)
        self.offer: SetOffer | None = None
        if recommendation.offer:
            self.offer = SetOffer(recommendation, models_dir, base_url, registry, parent=self)
            layout.addWidget(self.offer, 2, Qt.AlignmentFlag.AlignTop)

    def shutdown(self) -> None:
        if self.offer is not None:
            self.offer.shutdown()


class RecommendationBanner(QFrame):
    """The main window's word on its models: until the recommended set runs, that the bundled models are an
    offline demo whose answers are often wrong, and the set's offer next to it until the user says "Not now" to
    its models (`settings.ui.model_offer_declined`); then only a short notice. Hidden when neither applies."""

    declined = Signal(object)  # the offer's model names: the window remembers them
    downloaded = Signal(object)  # the offer's model names: the window switches to them

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent, objectName="recommendationBanner")
        self.setStyleSheet(
            "#recommendationBanner { background:#fff8e1; border:1px solid #ffe08a; border-radius:4px; }"
        )
        self.notice = QLabel(objectName="demoNotice", wordWrap=True)
        self.notice.setStyleSheet("color:#664d03; font-weight:600;")
        self.offer: SetOffer | None = None
        self.column = QVBoxLayout(self)
        self.column.setContentsMargins(8, 6, 8, 6)
        self.column.addWidget(self.notice)
        self.hide()

    @property
    def downloading(self) -> bool:
        return self.offer is not None and self.offer.downloading

    def show_recommendation(self, rec: Recommendation | None, settings: Settings) -> None:
        """Show what `rec` (the session's; None with a CUDA GPU) calls for under these settings."""
        names = tuple(spec.name for spec in rec.to_download) if rec is not None else ()
        wanted = bool(names) and not set(names) <= set(settings.ui.model_offer_declined)
        keep = self.offer is not None and (self.offer.downloading or (wanted and self.offer.names == names))
        if not keep:
            self._drop_offer()
            if wanted and rec is not None:
                self._add_offer(rec, settings)
        demo = rec is not None and rec.demo_in_use
        self.notice.setText(DEMO_NOTICE if self.offer is not None else DEMO_DECLINED if names else DEMO_NO_OFFER)
        self.notice.setVisible(demo)
        self.setVisible(demo or self.offer is not None)

    def _add_offer(self, rec: Recommendation, settings: Settings) -> None:
        offer = SetOffer(rec, settings.models_dir, settings.models.mirror_url, can_decline=True, parent=self)
        offer.declined.connect(self.declined)
        offer.downloaded.connect(self.downloaded)
        self.column.addWidget(offer)
        self.offer = offer

    def _drop_offer(self) -> None:
        offer, self.offer = self.offer, None
        if offer is not None:
            offer.shutdown()
            offer.hide()
            offer.deleteLater()

    def shutdown(self) -> None:
        if self.offer is not None:
            self.offer.shutdown()
