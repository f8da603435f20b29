"""The settings dialog: changing the profile and quality mode reconfigures the running pipeline and saves the
user config; a photo without a face is refused; an invalid value is refused with the config layer's message.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
import yaml
from PySide6.QtWidgets import QDialogButtonBox

from assistant.audio.capture import InputDevice
from assistant.config import PROJECT_ROOT, load_settings
from ui.settings_dialog import SettingsDialog

pytestmark = pytest.mark.ui

AVATAR = PROJECT_ROOT / "assets" / "avatars" / "astronaut.png"


def start(qtbot, window):
    window.show()
    window.start()
    # The live avatar built too: applying settings that rebuild it while its first build still runs is another
    # test's subject.
    qtbot.waitUntil(lambda: window.ready and window.live.stream is not None, timeout=20_000)


def open_dialog(qtbot, window) -> SettingsDialog:
    window.open_settings()
    dialog = window.settings_dialog
    qtbot.waitUntil(dialog.isVisible, timeout=5_000)
    return dialog


def test_dialog_shows_what_auto_resolved_to(qtbot, window):
    start(qtbot, window)
    dialog = open_dialog(qtbot, window)
    # No CUDA in the fake session's probe: auto resolves to the low profile, shown on the auto item.
    assert dialog.profile_combo.itemText(0) == "auto (resolves to low here)"
    # "In use" is what the session loaded and what draws the live stream, not what the settings asked for.
    text = dialog.resolved_label.text()
    assert text.startswith("In use: ASR fake whisper on CPU; dialogue fake llm; TTS fake tts; talking head ")
    assert window.live.describe() in text
    dialog.reject()


def test_dialog_lists_every_reason_something_else_runs(qtbot, window, make_session):
    start(qtbot, window)
    session = make_session.made[-1]
    session.notices = [  # the session's reasons, oldest first (Session.notices)
        "Profile high needs a CUDA GPU and none was found; using the low profile's models and talking head",
        "Dialogue model: model llama-3.2-3b is not downloaded; using the bundled smollm2-135m meanwhile",
    ]
    dialog = open_dialog(qtbot, window)
    text = dialog.resolved_label.text()
    assert "Why something else runs:" in text
    for notice in session.notices:  # every one, not only the latest
        assert f"• {notice}" in text
    dialog.reject()


def test_before_loading_the_dialog_says_what_the_settings_resolve_to(qtbot, settings, tmp_path):
    from assistant.capability import MachineSpeed, WorkloadTime
    from assistant.profile import resolve

    slow_cpu = MachineSpeed(WorkloadTime(20.0, 0.0), 2, "slow")  # far too slow for high's tier
    resolved = resolve(
        settings.model_copy(update={"gpu_profile": "high"}), probe=lambda: None, cpu_speed_probe=lambda s: slow_cpu
    )
    dialog = SettingsDialog(
        settings, resolved=resolved, user_config=tmp_path / "user.yaml", device_lister=lambda: [],
        level_probe=None, notices=list(resolved.notices),
        face_preview=lambda path: (np.zeros((8, 8, 3), np.uint8), None),
    )  # fmt: skip
    qtbot.addWidget(dialog)
    text = dialog.resolved_label.text()
    assert text.startswith("The settings resolve to: profile high") and "still loading" in text
    assert "dialogue llama-3.2-3b" in text and "• Profile high on this CPU" in text
    dialog.reject()


def test_changing_profile_and_quality_reconfigures_and_saves(qtbot, window, make_session):
    start(qtbot, window)
    session = make_session.made[-1]
    dialog = open_dialog(qtbot, window)
    dialog.profile_combo.setCurrentIndex(dialog.profile_combo.findData("medium"))
    dialog.quality_combo.setCurrentIndex(dialog.quality_combo.findData("high"))
    dialog.enhance_check.setChecked(True)
    assert dialog.changes() == {
        "gpu_profile": "medium",
        "talking_head": {
            "quality_mode": "high",
            "standard": {"enhance_face": True},
            "high": {"enhance_face": True},
        },
    }
    stream = window.live.stream
    with qtbot.waitSignal(window.worker.reconfigured, timeout=10_000) as reconfigured:
        with qtbot.waitSignal(window.live.started, timeout=20_000):  # the live avatar rebuilt its renderer
            assert dialog.apply()
    # The running pipeline got the new settings, without a restart (same session object).
    assert make_session.made == [session]
    new = session.reconfigured_with[-1]
    assert (new.gpu_profile, new.talking_head.quality_mode) == ("medium", "high")
    assert session.resolved.quality_mode == "high"
    assert set(reconfigured.args[0]) == {"gpu_profile", "talking_head"}
    assert window.settings.gpu_profile == "medium"
    # The live avatar took the new talking-head settings in place: same stream, same VLC media.
    assert window.live.settings.talking_head.quality_mode == "high"
    assert window.live.stream is stream and window.live.media_loads == 1
    assert "320x180 at 25 fps" in window.engines_label.text()
    # Saved to the user overlay, and restored on the next start.
    saved = yaml.safe_load(window.user_config.read_text())
    assert saved["gpu_profile"] == "medium" and saved["talking_head"]["quality_mode"] == "high"
    restored = load_settings(user_path=window.user_config)
    assert (restored.gpu_profile, restored.talking_head.quality_mode) == ("medium", "high")
    assert "gpu_profile" in restored.user_keys
    dialog.accept()


def test_avatar_without_a_face_is_refused(qtbot, window, tmp_path):
    start(qtbot, window)
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((480, 640, 3), 180, np.uint8))
    dialog = open_dialog(qtbot, window)
    dialog.choose_avatar(blank)
    qtbot.waitUntil(lambda: dialog.avatar_state == "no_face", timeout=10_000)
    assert "No face found" in dialog.error_label.text()
    assert dialog.avatar_edit.text() != str(blank)  # not taken
    assert dialog.apply() and not window.user_config.exists()  # the photo is not saved: nothing changed
    assert "Refused wall.png" in dialog.avatar_status.text()  # the refusal stays visible
    dialog.reject()


def test_a_refused_avatar_does_not_block_other_changes(qtbot, window, tmp_path):
    start(qtbot, window)
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((480, 640, 3), 180, np.uint8))
    dialog = open_dialog(qtbot, window)
    dialog.choose_avatar(blank)
    qtbot.waitUntil(lambda: dialog.avatar_state == "no_face", timeout=10_000)
    dialog.silence_spin.setValue(800)
    with qtbot.waitSignal(window.worker.reconfigured, timeout=10_000):
        assert dialog.apply()  # Apply takes the other change
    assert not dialog.error_label.isVisible() or dialog.error_label.text() == ""
    saved = yaml.safe_load(window.user_config.read_text())
    assert saved == {"audio": {"end_silence_ms": 800}}  # the refused photo is not among the changes
    assert window.settings.talking_head.avatar_image == window.worker.session.settings.talking_head.avatar_image
    dialog.vad_spin.setValue(3)
    with qtbot.waitSignal(dialog.finished, timeout=5_000):
        dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()  # and OK too, then closes
    assert yaml.safe_load(window.user_config.read_text())["audio"] == {"end_silence_ms": 800, "vad_aggressiveness": 3}


def test_avatar_with_a_face_shows_a_preview_and_is_applied(qtbot, window, tmp_path):
    start(qtbot, window)
    photo = tmp_path / "me.png"
    photo.write_bytes(AVATAR.read_bytes())
    dialog = open_dialog(qtbot, window)
    dialog.choose_avatar(photo)
    qtbot.waitUntil(
        lambda: dialog.avatar_state == "ok" and dialog.avatar_edit.text() == str(photo), timeout=10_000
    )
    assert not dialog.face_label.pixmap().isNull()
    assert dialog.avatar_status.text().startswith("Face found")
    stream = window.live.stream
    with qtbot.waitSignal(window.worker.reconfigured, timeout=10_000):
        with qtbot.waitSignal(window.live.started, timeout=20_000):  # the stream draws the new photo
            assert dialog.apply()
    assert window.avatar.image_path == photo
    assert window.live.stream is stream and window.live.media_loads == 1  # swapped in place, no new media
    assert yaml.safe_load(window.user_config.read_text())["talking_head"]["avatar_image"] == str(photo)
    dialog.reject()


def test_invalid_value_is_refused_with_the_config_message(qtbot, window):
    start(qtbot, window)
    dialog = open_dialog(qtbot, window)
    dialog.device_combo.setEditText("gpu0")
    assert not dialog.apply()
    message = dialog.error_label.text()
    assert "talking_head.device" in message and "'gpu0'" in message
    assert not window.user_config.exists()
    assert window.worker.session.reconfigured_with == []
    dialog.reject()


def test_microphone_changes_restart_the_listener(qtbot, window, fake_listener_factory):
    start(qtbot, window)
    dialog = open_dialog(qtbot, window)
    dialog.vad_spin.setValue(3)
    dialog.silence_spin.setValue(800)
    with qtbot.waitSignal(window.worker.reconfigured, timeout=10_000):
        assert dialog.apply()
    first, latest = fake_listener_factory.instances[0], fake_listener_factory.instances[-1]
    assert first.stopped and latest is not first and latest.started
    assert (latest.vad.aggressiveness, latest.vad.silence_ms) == (3, 800)
    dialog.reject()


class FakeProbe:
    def __init__(self, device, on_level, on_error) -> None:
        self.device, self.on_level = device, on_level
        self.started = self.stopped = False

    def start(self) -> None:
        self.started = True
        threading.Thread(
            target=self.on_level, args=(-12.0,)
        ).start()  # from the capture thread, like the real one

    def stop(self) -> None:
        self.stopped = True


def test_picking_another_microphone_shows_its_live_level(qtbot, settings, tmp_path):
    devices = [
        InputDevice(0, "Built-in Mic", 2, 48000.0, "ALSA"),
        InputDevice(3, "USB Headset", 1, 16000.0, "ALSA"),
    ]
    probes: list[FakeProbe] = []

    def probe_factory(device, on_level, on_error):
        probes.append(FakeProbe(device, on_level, on_error))
        return probes[-1]

    dialog = SettingsDialog(
        settings,
        user_config=tmp_path / "user.yaml",
        device_lister=lambda: devices,
        level_probe=probe_factory,
        face_preview=lambda path: (np.zeros((8, 8, 3), np.uint8), None),
    )
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.mic_combo.findData("USB Headset") >= 0, timeout=5_000)
    dialog.mic_combo.setCurrentIndex(dialog.mic_combo.findData("USB Headset"))
    assert probes and probes[-1].device == "USB Headset" and probes[-1].started
    qtbot.waitUntil(lambda: dialog.meter.last_dbfs == -12.0, timeout=2_000)
    assert dialog.changes() == {"audio": {"input_device": "USB Headset"}}
    dialog.mic_combo.setCurrentIndex(dialog.mic_combo.findData(None))  # back to the one in use: probe stops
    assert probes[-1].stopped and dialog.level_probe is None
    dialog.reject()



def standalone_dialog(qtbot, settings, user_config) -> tuple[SettingsDialog, list]:
    """The dialog alone, on the real config layer: what Apply writes and whether it emits `applied`."""
    dialog = SettingsDialog(
        settings, user_config=user_config, device_lister=list, level_probe=None,
        face_preview=lambda path: (np.zeros((8, 8, 3), np.uint8), None),
    )  # fmt: skip
    qtbot.addWidget(dialog)
    applied: list = []
    dialog.applied.connect(applied.append)
    return dialog, applied


def test_a_system_prompt_too_long_for_the_context_is_refused_and_nothing_written(qtbot, settings, tmp_path):
    user_config = tmp_path / "user.yaml"
    dialog, applied = standalone_dialog(qtbot, settings, user_config)
    dialog.prompt_edit.setPlainText("Be brief" + "!" * 203_992)  # 204,000 characters
    dialog.vad_spin.setValue(3)  # another change: not written either
    assert not dialog.apply()
    message = dialog.error_label.text()
    assert "dialogue" in message and "system_prompt is 204,000 characters" in message, message
    assert "shorten it or raise context_tokens" in message
    assert len(message) < 1000, "the prompt itself is not echoed"
    assert not user_config.exists() and applied == []


def test_a_bad_espeak_voice_is_refused_naming_the_field_and_nothing_written(qtbot, settings, tmp_path):
    user_config = tmp_path / "user.yaml"
    dialog, applied = standalone_dialog(qtbot, settings, user_config)
    dialog.espeak_edit.setText("xx-notavoice")
    dialog.vad_spin.setValue(3)  # valid, but Apply is all or nothing: file and app never disagree
    assert not dialog.apply()
    message = dialog.error_label.text()
    assert "tts.espeak_voice" in message and "'xx-notavoice'" in message and "espeak-ng --voices" in message
    assert "apt-get install" not in message, "the voice is wrong, espeak-ng is installed"
    assert not user_config.exists() and applied == []
    dialog.espeak_edit.setText("en-gb")  # a voice espeak-ng has: applied with the other change
    assert dialog.apply()
    saved = yaml.safe_load(user_config.read_text())
    assert saved == {"audio": {"vad_aggressiveness": 3}, "tts": {"espeak_voice": "en-gb"}}
    assert len(applied) == 1 and applied[0].tts.espeak_voice == "en-gb"


def test_apply_keeps_the_comments_of_the_user_config(qtbot, settings, tmp_path):
    user_config = tmp_path / "user.yaml"
    user_config.write_text(
        "# my settings, written by hand\n"
        "audio:\n"
        "  end_silence_ms: 700  # I pause a lot\n"
        "\n"
        "# the voice I like\n"
        "tts:\n"
        "  espeak_voice: en-us\n"
    )
    dialog, applied = standalone_dialog(qtbot, settings, user_config)
    dialog.vad_spin.setValue(3)
    assert dialog.apply() and len(applied) == 1
    text = user_config.read_text()
    for comment in ("# my settings, written by hand", "# I pause a lot", "# the voice I like"):
        assert comment in text, text
    saved = yaml.safe_load(text)
    assert saved["audio"] == {"end_silence_ms": 700, "vad_aggressiveness": 3}
    assert saved["tts"] == {"espeak_voice": "en-us"}
