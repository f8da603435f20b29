"""The settings dialog: hardware profile, talking head, microphone, voice, dialogue model and avatar image.

Apply validates and saves only the changed keys to the user overlay (`save_user_settings`, which refuses
invalid values with a message naming the key; the dialog shows it), then emits `applied(Settings)`; the window
reloads what changed in the background. The avatar image is checked for a face off the GUI thread, with a
preview of the detected face; a photo without one is refused and the current avatar stays (other changes can
still be applied).

When the profile picks a dialogue model that is not downloaded yet, the dialog offers it (ui.model_offer: name,
size, licence, download with progress, cancel and resume); once it is there the dialog emits `applied` with the
same settings, and the session reloads the dialogue stage with it. On a CPU (the session's `recommendation`), a
Models section says what each hardware profile gives and costs on this machine and offers the recommended set,
even after the window's "Not now" (ui.model_offer.ModelsPanel); once it is downloaded, the same happens.

"In use" is what the running session loaded (its `engines_summary()`), with every reason a stage runs something
other than what the settings ask for; before the models are loaded it says what the settings resolve to.

Needs PySide6 and OpenCV (the face preview); the face detector comes from the Session or
assistant.talking_head.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal, SignalInstance
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from assistant.config import Settings, merge, save_user_settings, settings_to_dict, validate_dict
from assistant.errors import ConfigError
from assistant.profile import PROFILES, profile_for_gpu
from ui.widgets import LevelMeter
from ui.workers import CallWorker

log = logging.getLogger(__name__)

FacePreview = Callable[[Path], tuple[np.ndarray, Any]]  # image path -> (BGR face crop, FaceBox); NoFaceError
PREVIEW_SIDE_PX = 128
LevelProbeFactory = Callable[[Any, Callable[[float], None], Callable[[Exception], None]], Any]


def default_level_probe(
    device: str | int | None, on_level: Callable[[float], None], on_error: Callable[[Exception], None]
) -> Any:
    """A listener on another microphone that only reports its level (the meter next to the device list)."""
    from assistant.audio.capture import LiveListener

    return LiveListener(device, on_utterance=lambda _utterance: None, on_level=on_level, on_error=on_error)


def detect_face_crop(image_path: Path) -> tuple[np.ndarray, Any]:
    """The default preview when no Session is loaded: the padded face box and its crop."""
    from assistant.talking_head.face import FaceCache

    image, box = FaceCache().load(image_path)
    return image[box.y1 : box.y2, box.x1 : box.x2].copy(), box


def bgr_to_pixmap(image: np.ndarray, side_px: int = PREVIEW_SIDE_PX) -> QPixmap:
    rgb = np.ascontiguousarray(image[:, :, ::-1])  # (H, W, 3) uint8 BGR -> RGB
    h, w = rgb.shape[:2]
    qimage = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()  # copy: rgb is freed
    return QPixmap.fromImage(qimage).scaled(
        side_px, side_px, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )


def _get(settings: Settings, dotted: str) -> Any:
    value: Any = settings
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def check_voice(voice: str) -> None:
    """ConfigError naming tts.espeak_voice when espeak-ng has no such voice (espeak-ng itself not installed is not
    this field's fault: the voice is kept and the TTS chain says what to install when it runs)."""
    from assistant.tts.base import TTSImportError, TTSModelError
    from assistant.tts.espeak import EspeakEngine

    try:
        EspeakEngine(voice).load()
    except TTSImportError:
        return
    except TTSModelError as e:
        raise ConfigError(f"eSpeak voice (tts.espeak_voice): {e}") from e


def save_changes(settings: Settings, changed: dict[str, Any], user_config: Path | None) -> Settings:
    """Validate `changed` (dotted keys) over `settings`, save it to the user overlay, and return the new settings
    (which remember the keys as the user's). Every value is checked before anything is written: ConfigError,
    naming the field and what to do, and nothing saved, when one is invalid."""
    changes = _nest(changed)
    new = validate_dict(merge(settings_to_dict(settings), changes), "the settings")
    if "tts.espeak_voice" in changed:
        check_voice(new.tts.espeak_voice)
    path = save_user_settings(changes, user_config)
    log.info("settings saved to %s: %s", path, ", ".join(sorted(changed)))
    return new.model_copy(update={"user_keys": frozenset(settings.user_keys | set(changed))})


def _combo(items: list[tuple[str, Any]], editable: bool = False, name: str = "") -> QComboBox:
    box = QComboBox(objectName=name, editable=editable)
    for text, data in items:
        box.addItem(text, data)
    return box


def _select(box: QComboBox, value: Any) -> None:
    index = box.findData(value)
    if index < 0:
        box.addItem(str(value), value)
        index = box.count() - 1
    box.setCurrentIndex(index)


def _form(*rows: tuple[str | None, QWidget]) -> QFormLayout:
    """A form of (label, field) rows; a None label gives the field the whole row."""
    form = QFormLayout()
    for label, widget in rows:
        if label is None:
            form.addRow(widget)
        else:
            form.addRow(label, widget)
    return form


def _combo_value(box: QComboBox) -> Any:
    """The selected item's data; for an editable combo, the typed text when it differs from the item."""
    if box.isEditable() and box.currentText() != box.itemText(box.currentIndex()):
        return box.currentText().strip()
    data = box.currentData()
    return box.currentText().strip() if data is None and box.isEditable() else data


class SettingsDialog(QDialog):
    """Edit the user settings. `applied(Settings)` fires after a successful save."""

    applied = Signal(object)
    _probe_level = Signal(float)  # from the level probe's thread
    _probe_error = Signal(str)

    def __init__(
        self,
        settings: Settings,
        *,
        resolved: Any = None,
        face_preview: FacePreview | None = None,
        level_signal: SignalInstance | None = None,
        user_config: Path | None = None,
        device_lister: Callable[[], list[Any]] | None = None,
        level_probe: LevelProbeFactory | None = default_level_probe,
        engines: dict[str, str] | None = None,
        notices: list[str] | None = None,
        model_registry: Any = None,
        recommendation: Any = None,
        parent: QWidget | None = None,
    ) -> None:
        # engines: what runs, as the session reports it (engines_summary); notices: why anything differs;
        # recommendation: the session's assistant.recommend.Recommendation (None with a CUDA GPU).
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(900)
        self.settings = settings
        self.resolved = resolved
        self.engines = dict(engines) if engines else None
        self.notices = list(notices or [])
        self._model_registry = model_registry  # tests serve their own models
        self.model_offer: Any = None  # ui.model_offer.ModelOffer when there is a better model to offer
        self.recommendation = recommendation
        self.models_panel: Any = None  # ui.model_offer.ModelsPanel on a CPU
        self.user_config = user_config
        self._face_preview = face_preview or detect_face_crop
        self._workers: list[CallWorker] = []  # kept alive until they finish
        self.avatar_state = "ok"  # "ok", "checking" or "no_face"
        self.avatar_message = ""
        self._level_probe_factory = level_probe
        self.level_probe: Any = None  # listening to a microphone other than the one in use
        self._build()
        self._load_values(settings)
        if level_signal is not None:
            level_signal.connect(self._on_main_level)
        self._probe_level.connect(self.meter.set_level)
        self._probe_error.connect(self._on_probe_error)
        self.mic_combo.currentIndexChanged.connect(self._on_mic_selected)
        self._preview_current_avatar()
        if device_lister is None:
            from assistant.audio.capture import list_input_devices

            device_lister = list_input_devices
        self._run(device_lister, self._on_devices_listed, self._on_devices_failed)

    # ---- layout ----
    def _build(self) -> None:
        """Four groups in two columns (video and microphone; voice and dialogue, and the avatar), the models section
        across the dialog, the error line and the buttons."""
        columns = QHBoxLayout()
        left, right = QVBoxLayout(), QVBoxLayout()
        for layout, (title, body) in (
            (left, ("Video", self._build_video())),
            (left, ("Microphone", self._build_microphone())),
            (right, ("Voice and dialogue", self._build_voice())),
            (right, ("Avatar", self._build_avatar())),
        ):
            group = QGroupBox(title)
            group.setLayout(body)
            layout.addWidget(group)
        columns.addLayout(left)
        columns.addLayout(right)
        self.error_label = QLabel(objectName="errorLabel", wordWrap=True)
        self.error_label.setStyleSheet("color:#b00020;")
        self.error_label.hide()
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Apply
            | QDialogButtonBox.StandardButton.Cancel
        )
        main = QVBoxLayout(self)
        main.addLayout(columns)
        self._add_models_section(main)
        main.addWidget(self.error_label)
        main.addWidget(self.buttons)

        self.browse_button.clicked.connect(self._browse)
        self.buttons.button(QDialogButtonBox.StandardButton.Apply).clicked.connect(self.apply)
        self.buttons.accepted.connect(self._ok)
        self.buttons.rejected.connect(self.reject)

    def _build_video(self) -> QFormLayout:
        auto_text = "auto"
        auto_profile = self._auto_profile()
        if auto_profile:
            auto_text = f"auto (resolves to {auto_profile} here)"
        self.profile_combo = _combo(
            [
                (auto_text, "auto"),
                ("low: the bundled demo models", "low"),
                ("medium: a 1B model (CPU) / a 4 GiB GPU", "medium"),
                ("high: a 3B model (fast CPU) / a 10 GiB GPU", "high"),
            ],
            name="gpuProfile",
        )
        self.quality_combo = _combo(
            [
                (self._profile_quality_text(), None),
                ("standard (720p Wav2Lip)", "standard"),
                ("high (1080p Wav2Lip-GAN)", "high"),
            ],
            name="qualityMode",
        )
        self.engine_combo = _combo(
            [(e, e) for e in ("auto", "wav2lip", "wav2lip_gan", "light", "static")], name="talkingHeadEngine"
        )
        self.device_combo = _combo(
            [(d, d) for d in ("auto", "cpu", "cuda")], editable=True, name="videoDevice"
        )
        self.video_enabled = QCheckBox("Make lip-synced video (off: audio only)", objectName="videoEnabled")
        self.enhance_check = QCheckBox(
            "Face enhancement (GFPGAN, when installed; slower)", objectName="enhance"
        )
        self.resolved_label = QLabel(objectName="resolvedLabel", wordWrap=True)
        self.resolved_label.setText(self._describe_resolved())
        return _form(
            ("Hardware profile", self.profile_combo), ("Quality mode", self.quality_combo),
            ("Talking-head engine", self.engine_combo), ("Video device", self.device_combo),
            (None, self.video_enabled), (None, self.enhance_check), (None, self.resolved_label),
        )  # fmt: skip

    def _build_microphone(self) -> QFormLayout:
        self.mic_combo = _combo([("System default", None)], name="micDevice")
        self.meter = LevelMeter()
        self.mic_mode_combo = _combo(
            [("Hands-free (voice detection)", "hands_free"), ("Push-to-talk", "push_to_talk")], name="micMode"
        )
        self.vad_spin = QSpinBox(objectName="vadAggressiveness", minimum=0, maximum=3)
        self.vad_spin.setToolTip("0 keeps the most audio, 3 filters non-speech hardest")
        self.silence_spin = QSpinBox(
            objectName="endSilence", minimum=100, maximum=5000, singleStep=50, suffix=" ms"
        )
        return _form(
            ("Microphone", self.mic_combo), ("Input level", self.meter), ("Mode", self.mic_mode_combo),
            ("VAD sensitivity (0-3)", self.vad_spin), ("End-of-speech silence", self.silence_spin),
        )  # fmt: skip

    def _build_voice(self) -> QFormLayout:
        self.tts_combo = _combo([(e, e) for e in ("auto", "coqui", "piper", "espeak")], name="ttsEngine")
        self.piper_combo = _combo(self._registry_names("tts", "piper"), editable=True, name="piperVoice")
        self.espeak_edit = QLineEdit(objectName="espeakVoice")
        self.speaker_edit = QLineEdit(objectName="coquiSpeaker", placeholderText="default speaker")
        self.llm_combo = _combo(self._registry_names("llm"), editable=True, name="dialogueModel")
        self.prompt_edit = QPlainTextEdit(objectName="systemPrompt")
        self.prompt_edit.setFixedHeight(80)
        voice = _form(
            ("TTS engine", self.tts_combo), ("Piper voice", self.piper_combo), ("eSpeak voice", self.espeak_edit),
            ("Coqui speaker", self.speaker_edit), ("Dialogue model", self.llm_combo),
        )  # fmt: skip
        self._add_model_offer(voice)
        voice.addRow("System prompt", self.prompt_edit)
        return voice

    def _build_avatar(self) -> QVBoxLayout:
        """The photo's path with a Choose button, and below it the detected face's preview and what was found."""
        self.avatar_edit = QLineEdit(objectName="avatarPath", readOnly=True)
        self.browse_button = QPushButton("Choose…", objectName="browseAvatar")
        self.face_label = QLabel(objectName="facePreview", alignment=Qt.AlignmentFlag.AlignCenter)
        self.face_label.setFixedSize(PREVIEW_SIDE_PX, PREVIEW_SIDE_PX)
        self.face_label.setStyleSheet("background:#222; color:#ccc;")
        self.avatar_status = QLabel(objectName="avatarStatus", wordWrap=True)
        avatar_row = QHBoxLayout()
        avatar_row.addWidget(self.avatar_edit, 1)
        avatar_row.addWidget(self.browse_button)
        avatar = QVBoxLayout()
        avatar.addLayout(avatar_row)
        preview_row = QHBoxLayout()
        preview_row.addWidget(self.face_label)
        preview_row.addWidget(self.avatar_status, 1)
        avatar.addLayout(preview_row)
        return avatar

    def _add_model_offer(self, form: QFormLayout) -> None:
        from ui.model_offer import ModelOffer, offered_dialogue_model

        spec = offered_dialogue_model(
            self.resolved, self.settings.dialogue.model, self.settings.models_dir, self._model_registry
        )
        if spec is None:
            return
        self.model_offer = ModelOffer(
            spec, self.settings.models_dir, self.settings.models.mirror_url, self._model_registry, parent=self
        )
        self.model_offer.downloaded.connect(self._on_model_downloaded)
        form.addRow("", self.model_offer)

    def _add_models_section(self, main: QVBoxLayout) -> None:
        """On a CPU, across the dialog: what each profile gives and costs here, and the recommended set's offer."""
        from ui.model_offer import ModelsPanel

        if self.recommendation is None:
            return
        self.models_panel = ModelsPanel(
            self.recommendation, getattr(self.resolved, "cpu_speed", None), self.settings.models_dir,
            self.settings.models.mirror_url,
        )  # fmt: skip
        if self.models_panel.offer is not None:
            self.models_panel.offer.downloaded.connect(self._on_model_downloaded)
        group = QGroupBox("Models: what each hardware profile gives on this computer")
        QVBoxLayout(group).addWidget(self.models_panel)
        main.addWidget(group)

    def _on_model_downloaded(self, names: tuple[str, ...]) -> None:
        """The models are there: the session switches to them (the same settings, reloaded)."""
        log.info("%s downloaded: the session switches", " and ".join(names))
        self.applied.emit(self.settings)

    @staticmethod
    def _registry_names(kind: str, prefix: str = "") -> list[tuple[str, str]]:
        try:
            from assistant.models import REGISTRY
        except ImportError:
            return []
        return [(n, n) for n, spec in REGISTRY.items() if spec.kind == kind and n.startswith(prefix)]

    def _auto_profile(self) -> str | None:
        """What gpu_profile=auto picks on this machine, when the loaded session probed the GPU."""
        r = self.resolved
        if r is None:
            return None
        if r.gpu is not None:
            return profile_for_gpu(r.gpu)
        if self.recommendation is not None:  # a CPU's auto: the tier it keeps quick
            return self.recommendation.tier.profile
        if r.gpu_probed:
            return "low"  # the probe ran and found no CUDA GPU
        return None

    def _profile_quality_text(self) -> str:
        if self.resolved is None:
            return "from the profile"
        return (
            f"from the profile ({PROFILES[self.resolved.profile].quality_mode} with {self.resolved.profile})"
        )

    def _describe_resolved(self) -> str:
        """What runs (from the session) and every reason for a substitution; the resolved choices before that."""
        r = self.resolved
        if self.engines:
            labels = {"profile": "profile", "asr": "ASR", "llm": "dialogue", "tts": "TTS",
                      "talking_head": "talking head"}  # fmt: skip
            used = "; ".join(f"{labels.get(k, k)} {v}" for k, v in self.engines.items())
            text = f"In use: {used}."
        elif r is None:
            return "The models are still loading; what 'auto' picks shows here once they are loaded."
        else:
            text = (
                f"The settings resolve to: profile {r.profile} ({r.sources.get('profile', '')}); "
                f"ASR {r.asr_model} on {r.asr_device}; dialogue {r.dialogue_model}; TTS {r.tts_engine}; "
                f"talking head {r.talking_head_engine}, {r.quality_mode} mode, on {r.talking_head_device} "
                "(the models are still loading)."
            )
        text += " The profile decides wherever a setting says auto."
        if self.notices:
            text += "\nWhy something else runs:\n" + "\n".join(f"• {n}" for n in self.notices)
        return text

    def _load_values(self, s: Settings) -> None:
        _select(self.profile_combo, s.gpu_profile)
        _select(self.quality_combo, s.talking_head.quality_mode)
        _select(self.engine_combo, s.talking_head.engine)
        _select(self.device_combo, s.talking_head.device)
        self.video_enabled.setChecked(s.talking_head.enabled)
        mode = s.talking_head.quality_mode or (self.resolved.quality_mode if self.resolved else "standard")
        self.enhance_check.setChecked(getattr(s.talking_head, mode).enhance_face)
        _select(self.mic_combo, s.audio.input_device)
        _select(self.mic_mode_combo, s.audio.mode)
        self.vad_spin.setValue(s.audio.vad_aggressiveness)
        self.silence_spin.setValue(s.audio.end_silence_ms)
        _select(self.tts_combo, s.tts.engine)
        _select(self.piper_combo, s.tts.piper_voice)
        self.espeak_edit.setText(s.tts.espeak_voice)
        self.speaker_edit.setText(s.tts.speaker or "")
        _select(self.llm_combo, s.dialogue.model)
        self.prompt_edit.setPlainText(s.dialogue.system_prompt)
        self.avatar_edit.setText(s.talking_head.avatar_image)
        self.avatar_status.setText("The current avatar.")

    # ---- values ----
    def values(self) -> dict[str, Any]:
        """Every setting the dialog edits, by dotted key."""
        enhance = self.enhance_check.isChecked()
        return {
            "gpu_profile": self.profile_combo.currentData(),
            "talking_head.quality_mode": self.quality_combo.currentData(),
            "talking_head.engine": self.engine_combo.currentData(),
            "talking_head.device": _combo_value(self.device_combo),
            "talking_head.enabled": self.video_enabled.isChecked(),
            "talking_head.standard.enhance_face": enhance,
            "talking_head.high.enhance_face": enhance,
            "talking_head.avatar_image": self.avatar_edit.text().strip(),
            "audio.input_device": self.mic_combo.currentData(),
            "audio.mode": self.mic_mode_combo.currentData(),
            "audio.vad_aggressiveness": self.vad_spin.value(),
            "audio.end_silence_ms": self.silence_spin.value(),
            "tts.engine": self.tts_combo.currentData(),
            "tts.piper_voice": _combo_value(self.piper_combo),
            "tts.espeak_voice": self.espeak_edit.text().strip(),
            "tts.speaker": self.speaker_edit.text().strip() or None,
            "dialogue.model": _combo_value(self.llm_combo),
            "dialogue.system_prompt": self.prompt_edit.toPlainText().strip(),
        }

    def changes(self) -> dict[str, Any]:
        """Only what differs from the current settings, as the nested dict save_user_settings takes."""
        return _nest({k: v for k, v in self.values().items() if _get(self.settings, k) != v})

    # ---- apply ----
    def apply(self) -> bool:
        """Validate, save the changes to the user config, emit `applied`; False (and a message) if not."""
        self._hide_error()
        if self.avatar_state == "checking":
            return self._refuse("The avatar image is still being checked for a face; try again in a moment.")
        # A refused photo was never taken (the avatar field still holds the current one): nothing of it is
        # saved, and it must not block the other changes.
        values = self.values()
        changed = {k: v for k, v in values.items() if _get(self.settings, k) != v}
        if not changed:
            return True
        try:
            self.settings = save_changes(self.settings, changed, self.user_config)
        except ConfigError as e:
            return self._refuse(str(e))
        self.applied.emit(self.settings)
        return True

    def _ok(self) -> None:
        if self.apply():
            self.accept()

    def _refuse(self, message: str) -> bool:
        self.error_label.setText(message)
        self.error_label.show()
        return False

    def _hide_error(self) -> None:
        self.error_label.clear()
        self.error_label.hide()

    # ---- avatar ----
    def _browse(self) -> None:
        start = str(Path(self.avatar_edit.text()).expanduser().parent) if self.avatar_edit.text() else ""
        path, _filter = QFileDialog.getOpenFileName(
            self, "Choose the avatar photo", start, "Images (*.png *.jpg *.jpeg *.bmp *.webp)"
        )
        if path:
            self.choose_avatar(Path(path))

    def choose_avatar(self, path: Path) -> None:
        """Check `path` for a face in the background; it becomes the avatar only if one is found."""
        self.avatar_state = "checking"
        self.avatar_message = ""
        self.avatar_status.setText(f"Looking for a face in {path.name}…")
        self.face_label.setPixmap(QPixmap())
        self._run(
            lambda: self._face_preview(path),
            lambda r: self._on_face_found(path, r),
            lambda msg: self._on_face_missing(path, msg),
        )

    def _on_face_found(self, path: Path, result: tuple[np.ndarray, Any]) -> None:
        crop, box = result
        self.avatar_state = "ok"
        self.avatar_edit.setText(str(path))
        self.face_label.setPixmap(bgr_to_pixmap(crop))
        self.avatar_status.setText(f"Face found: {box.width}x{box.height} px at ({box.x1}, {box.y1}).")
        self._hide_error()

    def _on_face_missing(self, path: Path, message: str) -> None:
        self.avatar_state = "no_face"
        self.avatar_message = message
        self.face_label.setText("no face")
        self.avatar_status.setText(f"Refused {path.name}: {message}")
        self._refuse(f"The avatar image was refused: {message}")

    def _preview_current_avatar(self) -> None:
        path = self.settings.project_path(self.settings.talking_head.avatar_image)

        def shown(result: tuple[np.ndarray, Any]) -> None:
            if (
                self.avatar_state == "ok"
                and self.avatar_edit.text() == self.settings.talking_head.avatar_image
            ):
                self.face_label.setPixmap(bgr_to_pixmap(result[0]))

        def missing(message: str) -> None:
            if self.avatar_edit.text() == self.settings.talking_head.avatar_image:
                self.avatar_status.setText(f"The current avatar has a problem: {message}")

        self._run(lambda: self._face_preview(path), shown, missing)

    def revert_avatar(self) -> None:
        """Forget a refused photo and keep the current avatar."""
        self.avatar_state = "ok"
        self.avatar_edit.setText(self.settings.talking_head.avatar_image)
        self.avatar_status.setText("The current avatar.")
        self._hide_error()

    # ---- devices ----
    def _on_devices_listed(self, devices: list[Any]) -> None:
        current = self.mic_combo.currentData()
        for device in devices:
            if self.mic_combo.findData(device.name) < 0:
                self.mic_combo.addItem(
                    f"{device.name} ({device.hostapi})" if device.hostapi else device.name, device.name
                )
        _select(self.mic_combo, current)

    def _on_devices_failed(self, message: str) -> None:
        self.mic_combo.setToolTip(f"Cannot list the audio devices: {message}")

    def _on_main_level(self, dbfs: float) -> None:
        if self.level_probe is None:  # the meter shows the microphone in use unless another one is picked
            self.meter.set_level(dbfs)

    def _on_mic_selected(self, _index: int) -> None:
        """Another device picked: listen to it (level only) so the meter shows whether it hears anything."""
        self._stop_probe()
        device = self.mic_combo.currentData()
        self.meter.setToolTip("Microphone input level")
        if device == self.settings.audio.input_device or self._level_probe_factory is None:
            return
        try:
            self.level_probe = self._level_probe_factory(
                device, self._probe_level.emit, lambda e: self._probe_error.emit(str(e))
            )
            self.level_probe.start()
        except Exception as e:  # noqa: BLE001 - shown next to the device
            self.level_probe = None
            self._on_probe_error(str(e))

    def _on_probe_error(self, message: str) -> None:
        self.meter.set_level(-100.0)
        self.meter.setToolTip(f"Cannot listen to this device: {message}")

    def _stop_probe(self) -> None:
        probe, self.level_probe = self.level_probe, None
        if probe is not None:
            probe.stop()

    # ---- background calls ----
    def _run(
        self, fn: Callable[[], Any], on_done: Callable[[Any], None], on_fail: Callable[[str], None]
    ) -> None:
        worker = CallWorker(fn)
        worker.done.connect(on_done)
        worker.failed.connect(on_fail)
        worker.finished.connect(lambda: self._workers.remove(worker) if worker in self._workers else None)
        self._workers.append(worker)
        worker.start()

    def done(self, result: int) -> None:  # noqa: D401 - Qt API: also called by accept/reject
        self._stop_probe()
        for offer in (self.model_offer, self.models_panel):  # a download stops; its .part waits for a Resume
            if offer is not None:
                offer.shutdown()
        for worker in list(self._workers):
            worker.wait(10_000)  # a face check or device listing takes well under a second
        super().done(result)
