"""The offer of a better dialogue model: its name, size and licence, one click to download it with progress,
cancel and resume, through the same downloader as `assistant models download` (assistant.download).

The bundled SmolLM2-135M answers poorly; the `medium` and `high` profiles pick a bigger model, which runs once it
is downloaded. `offered_dialogue_model()` says which one to offer (None when there is nothing to offer), and
`ModelOffer` is the widget: a cancelled download keeps its `.part` file, and the next click resumes it.

Needs PySide6; the download runs on its own QThread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import QThread, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from assistant.download import DownloadProgress, download_model
from assistant.errors import AssistantError, Cancelled
from assistant.models import ModelSpec, get_spec, state

log = logging.getLogger(__name__)

MB = 1000**2  # sizes as the hosts publish them


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


class DownloadWorker(QThread):
    """Runs download_model once; `cancel()` stops it after the current chunk, keeping the .part for resume."""

    progress = Signal(object, object)  # bytes done (int), bytes in all (int or None)
    done = Signal(object)  # DownloadResult
    failed = Signal(str)
    cancelled = Signal()

    def __init__(
        self, spec: ModelSpec, models_dir: Path, base_url: str | None, registry: Mapping[str, ModelSpec] | None
    ) -> None:
        super().__init__()
        self.spec, self.models_dir, self.base_url, self.registry = spec, models_dir, base_url, registry
        self._cancel = threading.Event()
        self._done_by_file: dict[str, int] = {}

    def cancel(self) -> None:
        self._cancel.set()

    def _on_progress(self, p: DownloadProgress) -> None:
        if self._cancel.is_set():
            raise Cancelled(f"download of {self.spec.name} cancelled")  # leaves the .part for resume
        self._done_by_file[p.file] = p.done_bytes
        self.progress.emit(sum(self._done_by_file.values()), self.spec.size_bytes or p.total_bytes)

    def run(self) -> None:
        try:
            result = download_model(
                self.spec.name, self.models_dir, base_url=self.base_url, registry=self.registry,
                progress=self._on_progress,
            )  # fmt: skip
        except Cancelled:
            self.cancelled.emit()
        except AssistantError as e:
            self.failed.emit(str(e))
        else:
            self.done.emit(result)


class ModelOffer(QWidget):
    """"Better answers: <model>, <size>, <licence>" with Download / Cancel / Resume and a progress bar.
    `downloaded(name)` fires once every file of the model is in place."""

    downloaded = Signal(str)

    def __init__(
        self,
        spec: ModelSpec,
        models_dir: Path,
        base_url: str | None = None,
        registry: Mapping[str, ModelSpec] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent, objectName="modelOffer")
        self.spec, self.models_dir, self.base_url, self.registry = spec, Path(models_dir), base_url, registry
        self.worker: DownloadWorker | None = None
        self.label = QLabel(f"Better answers: {describe(spec)}", objectName="modelOfferLabel", wordWrap=True)
        self.button = QPushButton(objectName="modelOfferButton")
        self.bar = QProgressBar(objectName="modelOfferProgress", textVisible=True)
        self.bar.setRange(0, 1000)
        self.status = QLabel(objectName="modelOfferStatus", wordWrap=True)
        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self.button.clicked.connect(self._on_button)
        self._show_idle()

    def _partial_bytes(self) -> int:
        return state(self.spec.name, self.models_dir, registry=self.registry).partial_bytes

    def _show_idle(self, message: str = "") -> None:
        partial = self._partial_bytes()
        self.button.setText("Resume download" if partial else "Download")
        total = self.spec.size_bytes
        self.bar.setValue(int(1000 * partial / total) if partial and total else 0)
        self.bar.setVisible(bool(partial))
        self.status.setText(message)

    @property
    def downloading(self) -> bool:
        return self.worker is not None

    def start(self) -> None:
        if self.worker is not None:
            return
        worker = DownloadWorker(self.spec, self.models_dir, self.base_url, self.registry)
        worker.progress.connect(self._on_progress)
        worker.done.connect(self._on_done)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)
        self.worker = worker
        self.button.setText("Cancel")
        self.bar.show()
        self.status.setText(f"Downloading {self.spec.name}…")
        worker.start()

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def _on_button(self) -> None:
        self.cancel() if self.worker is not None else self.start()

    def _on_progress(self, done: int, total: int | None) -> None:
        if total:
            self.bar.setValue(int(1000 * min(done, total) / total))
            self.bar.setFormat(f"{done / MB:,.0f} of {total / MB:,.0f} MB")

    def _finished(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.wait()

    def _on_done(self, result: object) -> None:
        self._finished()
        self.bar.setValue(1000)
        self.button.setEnabled(False)
        self.button.setText("Downloaded")
        self.status.setText(f"{self.spec.name} is downloaded; the assistant switches to it.")
        log.info("offered model %s downloaded", self.spec.name)
        self.downloaded.emit(self.spec.name)

    def _on_failed(self, message: str) -> None:
        self._finished()
        self._show_idle(f"The download failed: {message}")

    def _on_cancelled(self) -> None:
        self._finished()
        self._show_idle("Cancelled; what was downloaded is kept, and the download resumes from there.")

    def shutdown(self) -> None:
        """Cancel a download in flight and wait for its thread (the dialog is closing)."""
        worker = self.worker
        if worker is not None:
            worker.cancel()
            worker.wait(10_000)
