"""The main window: avatar view with the embedded player, conversation, microphone controls, text box, status.

It wires three things together, all on the GUI thread: the `SessionWorker` (models and turns, its own thread),
the `MicrophoneControl` (the capture thread) and the `SegmentPlayer` (VLC). Core events reach it through the
`EventBridge` as queued signals; every slot is `_on_<signal>` and only updates widgets or hands work to a
thread, so the event loop never waits on a model.

Needs PySide6; VLC for the real player (tests give a fake backend).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QPoint, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from assistant.config import Settings
from assistant.events import Notice, SegmentReady, StageFailed, TurnDone
from ui.bridge import EventBridge
from ui.microphone import (
    HANDS_FREE,
    PUSH_TO_TALK,
    ListenerFactory,
    MicrophoneControl,
    default_listener_factory,
)
from ui.player import PlaybackBackend, PlayerError, SegmentPlayer, SilentBackend, VlcBackend
from ui.widgets import AvatarView, ChatEntry, ConversationView, LevelMeter
from ui.workers import SessionFactory, SessionWorker, favour_gui_thread

log = logging.getLogger(__name__)

BackendFactory = Callable[[QWidget], PlaybackBackend]

# Stage timings shown after a turn: (key in TurnDone.timings_s, label).
TIMING_LABELS = (
    ("asr", "ASR"),
    ("llm_total", "LLM"),
    ("tts_total", "TTS"),
    ("talking_head_total", "video"),
    ("first_segment_from_end_of_speech", "first segment"),
    ("total", "total"),
)
ENGINE_LABELS = {
    "profile": "Profile",
    "asr": "ASR",
    "llm": "LLM",
    "dialogue": "LLM",
    "tts": "TTS",
    "talking_head": "Talking head",
}


def format_timings(timings_s: dict[str, float]) -> str:
    return " · ".join(f"{label} {timings_s[key]:.1f} s" for key, label in TIMING_LABELS if key in timings_s)


def format_engines(engines: dict[str, str]) -> str:
    """One line, the talking head first ("Talking head: light engine on CPU · ASR: ..."), the profile last."""
    order = sorted(engines, key=lambda k: (k != "talking_head", k == "profile"))
    return " · ".join(f"{ENGINE_LABELS.get(k, k)}: {engines[k]}" for k in order)


class MainWindow(QMainWindow):
    """The assistant's window. Call `start()` after `show()`; closing it stops everything in order."""

    ready_changed = Signal(bool)

    def __init__(
        self,
        settings: Settings,
        session_factory: SessionFactory,
        *,
        backend_factory: BackendFactory | None = None,
        listener_factory: ListenerFactory | None = default_listener_factory,
        vlc_args: tuple[str, ...] = (),
        user_config: Path | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.user_config = user_config
        self.setWindowTitle("Avatar Assistant")
        self.resize(settings.ui.window_width, settings.ui.window_height)
        self.bridge = EventBridge()
        self.worker = SessionWorker(session_factory, settings, self.bridge.post)
        self.mic = MicrophoneControl(self.bridge, settings, listener_factory)
        self.ready = False
        self.engines: dict[str, str] = {}
        self.notices: list[str] = []  # every warning shown, newest last (the banner shows the latest)
        # Which turn job each core turn_id belongs to; jobs numbered below _stale_before_job were
        # interrupted, and their late events (a segment finished after the cancel) are ignored.
        self._running_job = 0
        self._stale_before_job = 0
        # The speculative turn started at the last pause in speech, and the utterance it answers.
        self._hold = None
        self._held_utterance = None
        self._job_of_turn: dict[int, int] = {}
        self._user_entry_of_job: dict[int, ChatEntry] = {}
        self.worker_busy = False
        self._closed = False
        self._build_ui()
        factory = backend_factory or (lambda widget: VlcBackend(widget, vlc_args))
        try:
            backend = factory(self.avatar.video)
        except PlayerError as e:
            backend = SilentBackend(str(e))
            self._show_notice(f"Replies cannot be played: {e}")
        self.player = SegmentPlayer(backend)
        self._connect()
        self.avatar.set_image(settings.project_path(settings.talking_head.avatar_image))
        self._set_stage("Loading models…")

    # ---- layout ----
    def _build_ui(self) -> None:
        self.avatar = AvatarView()
        self.conversation = ConversationView()
        self.notice_label = QLabel(objectName="noticeBanner", wordWrap=True)
        self.notice_label.setStyleSheet(
            "background:#fff3cd; color:#664d03; padding:6px; border:1px solid #ffe69c;"
        )
        self.notice_label.hide()

        self.mode_combo = QComboBox(objectName="micMode")
        self.mode_combo.addItem("Hands-free", HANDS_FREE)
        self.mode_combo.addItem("Push-to-talk", PUSH_TO_TALK)
        self.mode_combo.setCurrentIndex(self.mode_combo.findData(self.settings.audio.mode))
        self.talk_button = QPushButton("Hold to talk (Space)", objectName="talkButton")
        self.mute_button = QPushButton("Mute", objectName="muteButton", checkable=True)
        self.stop_button = QPushButton("Stop reply", objectName="stopButton")
        self.meter = LevelMeter()
        self.mic_state = QLabel(objectName="micState")
        mic_row = QHBoxLayout()
        for w in (
            self.mode_combo,
            self.talk_button,
            self.mute_button,
            self.meter,
            self.mic_state,
            self.stop_button,
        ):
            mic_row.addWidget(w)
        mic_row.setStretch(3, 1)

        self.text_input = QLineEdit(objectName="textInput", placeholderText="Type a question and press Enter")
        self.send_button = QPushButton("Ask", objectName="sendButton")
        text_row = QHBoxLayout()
        text_row.addWidget(self.text_input, 1)
        text_row.addWidget(self.send_button)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.avatar, 1)
        left_layout.addLayout(mic_row)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.conversation)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        width = self.settings.ui.window_width
        splitter.setSizes([width * 3 // 5, width * 2 // 5])

        self.engines_label = QLabel(objectName="enginesLabel", wordWrap=True)
        self.engines_label.setStyleSheet("color:#555;")
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self.notice_label)
        layout.addWidget(splitter, 1)
        layout.addLayout(text_row)
        layout.addWidget(self.engines_label)
        self.setCentralWidget(central)

        self.stage_label = QLabel(objectName="stageLabel")
        self.timings_label = QLabel(objectName="timingsLabel")
        self.load_progress = QProgressBar(objectName="loadProgress", maximumWidth=180, textVisible=True)
        self.load_progress.setRange(0, 100)
        bar = self.statusBar()
        bar.addWidget(self.stage_label)
        bar.addWidget(self.load_progress)
        bar.addWidget(self.timings_label, 1)

        self.settings_action = QAction("&Settings…", self, shortcut=QKeySequence("Ctrl+,"))
        self.quit_action = QAction("&Quit", self, shortcut=QKeySequence.StandardKey.Quit)
        menu = self.menuBar().addMenu("&Assistant")
        menu.addAction(self.settings_action)
        menu.addSeparator()
        menu.addAction(self.quit_action)
        self._update_mic_widgets()

    def _connect(self) -> None:
        b, w, p = self.bridge, self.worker, self.player
        bridge_signals = (
            "utterance_captured", "transcript_ready", "reply_sentence_ready", "speech_ready", "video_ready",
            "segment_ready", "stage_failed", "notice", "turn_done",
            "mic_utterance", "mic_speech_started", "mic_speech_paused", "mic_speech_resumed", "mic_level",
            "mic_error", "mic_notice",
        )  # fmt: skip
        worker_signals = (
            "progress", "loaded", "load_failed", "turn_started", "turn_finished", "turn_failed",
            "reconfigured", "reconfigure_failed", "busy_changed",
        )  # fmt: skip
        for name in bridge_signals:
            getattr(b, name).connect(getattr(self, f"_on_{name}"))
        for name in worker_signals:
            getattr(w, name).connect(getattr(self, f"_on_{name}"))
        p.segment_started.connect(self._on_segment_started)
        p.audio_only.connect(self._on_audio_only)
        p.idle.connect(self._on_player_idle)
        p.error.connect(self._on_player_error)
        self.mic.state_changed.connect(self._on_mic_state_changed)
        # Bound methods rather than lambdas holding the window: with those, PySide6 6.12.0 crashed at exit
        # ("shared QObject was deleted directly", then SIGSEGV).
        self.mode_combo.currentIndexChanged.connect(self._on_mode_selected)
        self.mute_button.toggled.connect(self.mic.set_user_muted)
        self.talk_button.pressed.connect(self.begin_push_to_talk)
        self.talk_button.released.connect(self.end_push_to_talk)
        self.stop_button.clicked.connect(self._on_stop_clicked)
        self.send_button.clicked.connect(self._submit_text)
        self.text_input.returnPressed.connect(self._submit_text)
        self.settings_action.triggered.connect(self.open_settings)
        self.quit_action.triggered.connect(self.close)

    def _on_mode_selected(self, _index: int) -> None:
        self.mic.set_mode(self.mode_combo.currentData())
        self._update_mic_widgets()

    def _on_stop_clicked(self) -> None:
        self.stop_reply("stopped by the user")

    # ---- start / stop ----
    def start(self) -> None:
        """Load the models in the background and start listening; the window is usable meanwhile."""
        favour_gui_thread()
        self.worker.start()
        self.mic.start()
        QApplication.instance().installEventFilter(self)

    def shutdown(self) -> None:
        """Stop in order: microphone, turn in flight, playback (VLC), then the session (models, GPU)."""
        if self._closed:
            return
        self._closed = True
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
        self.mic.stop()
        self.worker.cancel_current("the window is closing")
        self.player.clear()
        self.player.backend.release()
        self.worker.shutdown()
        log.info("main window closed: microphone, player and session released")

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        self.hide()
        self.shutdown()
        super().closeEvent(event)

    # ---- user actions ----
    def ask(self, text: str) -> None:
        """Ask a typed question (the same as typing it and pressing Enter)."""
        text = text.strip()
        if not text:
            return
        self._interrupt("new question")
        entry = self.conversation.add(
            ChatEntry("user", text, note="" if self.ready else "queued until loaded")
        )
        self._user_entry_of_job[self.worker.submit_turn(text=text)] = entry

    def _submit_text(self) -> None:
        text = self.text_input.text()
        self.text_input.clear()
        self.ask(text)

    def begin_push_to_talk(self) -> None:
        if self.mic.mode != PUSH_TO_TALK:
            self.mode_combo.setCurrentIndex(self.mode_combo.findData(PUSH_TO_TALK))
        self._interrupt("push-to-talk")
        self.mic.ptt_press()

    def end_push_to_talk(self) -> None:
        self.mic.ptt_release()

    def stop_reply(self, reason: str = "stopped") -> None:
        self._interrupt(reason)
        self._set_stage("Ready" if self.ready else "Loading models…")

    def _interrupt(self, reason: str) -> None:
        """Barge-in: cancel the turn in flight, forget queued turns, stop playback."""
        self._stale_before_job = self.worker.next_job_number
        self.worker.drop_pending_turns()
        self.worker.cancel_current(reason)
        self.player.clear()

    def open_settings(self) -> None:
        from ui.settings_dialog import SettingsDialog

        session = self.worker.session
        dialog = SettingsDialog(
            self.settings,
            resolved=getattr(session, "resolved", None),
            face_preview=getattr(session, "avatar_face_preview", None),
            level_signal=self.bridge.mic_level,
            user_config=self.user_config,
            parent=self,
        )
        dialog.applied.connect(self.apply_settings)
        self.settings_dialog = dialog
        dialog.open()

    def apply_settings(self, settings: Settings) -> None:
        """Take new settings without restarting: models reload in the worker, the microphone restarts."""
        old = self.settings
        self.settings = settings
        self._set_stage("Applying settings…")
        self.load_progress.setValue(0)
        self.load_progress.show()
        self.worker.submit_reconfigure(settings)
        if settings.audio != old.audio:
            self.mic.restart(settings)
            self.mode_combo.setCurrentIndex(self.mode_combo.findData(settings.audio.mode))
        if settings.talking_head.avatar_image != old.talking_head.avatar_image:
            self.avatar.set_image(settings.project_path(settings.talking_head.avatar_image))

    # ---- push-to-talk on the keyboard (application-wide filter: the key works wherever the focus is,
    #      except in text fields, where it types a space) ----
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt API
        kind = event.type()
        if kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) and isinstance(event, QKeyEvent):
            if event.key() == self._ptt_key() and not event.isAutoRepeat() and self._ptt_key_allowed():
                if kind == QEvent.Type.KeyPress:
                    self.begin_push_to_talk()
                else:
                    self.end_push_to_talk()
                return True
        return False

    def _ptt_key(self) -> int:
        sequence = QKeySequence.fromString(self.settings.ui.push_to_talk_key.capitalize())
        return sequence[0].key() if not sequence.isEmpty() else Qt.Key.Key_Space

    def _ptt_key_allowed(self) -> bool:
        if not self.isActiveWindow() or self.mic.mode != PUSH_TO_TALK:
            return False
        focus = QApplication.focusWidget()
        return not isinstance(focus, (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox))

    # ---- worker slots ----
    def _on_progress(self, what: str, fraction: float) -> None:
        self.load_progress.show()
        self.load_progress.setValue(int(round(100 * max(0.0, min(1.0, fraction)))))
        self.load_progress.setFormat(f"{what} %p%")
        self._set_stage(f"Loading: {what}")

    def _on_loaded(self, engines: dict[str, str]) -> None:
        self._set_ready(engines)
        log.info("ready: models loaded; engines: %s", format_engines(engines))
        self.conversation.add(ChatEntry("system", "Ready: the models are loaded."))

    def _on_load_failed(self, message: str) -> None:
        self.load_progress.hide()
        self._set_stage("Models not loaded")
        self._show_notice(f"Loading the models failed: {message}")

    def _on_turn_started(self, job: int, payload: object) -> None:
        self._running_job = job
        self._hide_notice()
        self.timings_label.clear()
        if isinstance(payload, str):
            entry = self._user_entry_of_job.get(job)
            if entry is not None and entry.note:
                entry.note = ""
                self.conversation.refresh()
            self._set_stage("Thinking…")
        else:
            self._user_entry_of_job[job] = self.conversation.add(ChatEntry("user", "", note="recognising"))
            self._set_stage("Recognising speech…")

    def _on_turn_finished(self, result: object) -> None:
        entry = self._user_entry_of_job.get(self._running_job)
        dropped, discarded = getattr(result, "dropped", False), getattr(result, "discarded", False)
        if dropped or discarded:
            if entry is not None and not entry.text and entry in self.conversation.entries:
                self.conversation.entries.remove(entry)
                self.conversation.refresh()
            if dropped:
                self._set_stage("Ready (heard no words)")

    def _on_busy_changed(self, busy: bool) -> None:
        self.worker_busy = busy

    def _on_turn_failed(self, message: str) -> None:
        self._set_stage("Turn failed")
        self._show_notice(message)

    def _on_reconfigured(self, reloaded: list[str], engines: dict[str, str]) -> None:
        self._set_ready(engines)
        what = ", ".join(reloaded) if reloaded else "nothing needed reloading"
        self.conversation.add(ChatEntry("system", f"Settings applied ({what})."))

    def _on_reconfigure_failed(self, message: str) -> None:
        self.load_progress.hide()
        self._set_stage("Settings not applied")
        self._show_notice(f"Applying the settings failed: {message}")

    # ---- turn event slots (from the bridge) ----
    def _track(self, turn_id: int) -> bool:
        """Tie a turn's event to its job; False for an interrupted turn (its late events are ignored)."""
        job = self._job_of_turn.setdefault(turn_id, self._running_job)
        return job >= self._stale_before_job

    def _is_stale(self, turn_id: int) -> bool:
        return self._job_of_turn.get(turn_id, self._running_job) < self._stale_before_job

    def _on_utterance_captured(self, event) -> None:
        self._track(event.turn_id)

    def _on_transcript_ready(self, event) -> None:
        if not self._track(event.turn_id):
            return
        job = self._job_of_turn[event.turn_id]
        entry = self._user_entry_of_job.get(job)
        if entry is None:
            entry = self._user_entry_of_job[job] = self.conversation.add(ChatEntry("user", ""))
        entry.turn_id = event.turn_id
        entry.text = event.transcript.text.strip()
        entry.note = f"heard in {event.transcript.elapsed_s:.1f} s"
        self.conversation.refresh()
        self._set_stage("Thinking…")

    def _on_reply_sentence_ready(self, event) -> None:
        if not self._track(event.turn_id):
            return
        entry = self.conversation.reply_entry(event.turn_id)
        entry.text = f"{entry.text} {event.sentence.text}".strip()
        self.conversation.refresh()
        self._set_stage("Speaking…")

    def _on_speech_ready(self, event) -> None:
        if self._track(event.turn_id) and not self.player.busy:
            self._set_stage("Making the video…")

    def _on_video_ready(self, event) -> None:
        self._track(event.turn_id)

    def _on_segment_ready(self, event: SegmentReady) -> None:
        if not self._track(event.turn_id):
            return
        self.player.enqueue(event)

    def _on_stage_failed(self, event: StageFailed) -> None:
        if not self._track(event.turn_id):
            return
        self._show_notice(f"{event.stage}: {event.message}")

    def _on_notice(self, event: Notice) -> None:
        if event.level == "warning":
            self._show_notice(event.message)
        else:
            self.statusBar().showMessage(event.message, 5000)

    def _on_turn_done(self, event: TurnDone) -> None:
        cancelled = event.cancelled or self._is_stale(event.turn_id)
        entry = self.conversation.reply_entry(event.turn_id) if event.reply or cancelled else None
        if entry is not None:
            entry.note = "interrupted" if cancelled else f"{event.timings_s.get('total', 0.0):.1f} s"
            self.conversation.refresh()
        if self.settings.ui.show_timings:
            self.timings_label.setText(format_timings(event.timings_s))
        log.info(
            "turn %d done%s: heard %r, replied %r in %d segment(s); %s; engines %s",
            event.turn_id,
            " (cancelled)" if cancelled else "",
            event.transcript,
            event.reply,
            event.segments,
            format_timings(event.timings_s),
            format_engines(event.engines),
        )
        if not self.player.busy:
            self._set_stage("Ready")

    # ---- microphone slots ----
    def _on_mic_utterance(self, utterance, ended_at: float) -> None:
        hold, self._hold = self._hold, None
        if hold is not None and (hold_utterance := self._held_utterance) is not None and (
            hold_utterance.start_s, hold_utterance.end_s) == (utterance.start_s, utterance.end_s):  # fmt: skip
            hold.release()  # the reply prepared since the pause is the answer: show it
            return
        if hold is not None:
            hold.discard("a different utterance ended")
        self._interrupt("new user speech")
        self.worker.submit_turn(utterance=utterance, end_of_speech_at=ended_at)

    def _on_mic_speech_paused(self, paused, paused_at: float) -> None:
        """A pause in speech: start the reply now, show it only if the end of speech is confirmed."""
        from assistant.pipeline import Hold

        if self._hold is not None:
            self._hold.discard("superseded")
        self._hold, self._held_utterance = Hold(), paused.utterance
        self.worker.submit_turn(utterance=paused.utterance, end_of_speech_at=paused_at, hold=self._hold)

    def _on_mic_speech_resumed(self, _resumed) -> None:
        if self._hold is not None:
            self._hold.discard("the speaker went on")
            self._hold = self._held_utterance = None

    def _on_mic_speech_started(self, _started) -> None:
        # The user speaks while a reply is being made: drop it (playback itself is protected by the echo
        # guard).
        if self.worker_busy or self.player.busy:
            self._interrupt("new user speech")
        self._set_stage("Listening…")

    def _on_mic_level(self, dbfs: float) -> None:
        self.meter.set_level(dbfs)

    def _on_mic_error(self, message: str) -> None:
        self._show_notice(f"Microphone: {message}")

    def _on_mic_notice(self, message: str) -> None:
        self.statusBar().showMessage(message, 5000)
        if message.startswith("Microphone back"):
            self._hide_notice()

    def _on_mic_state_changed(self, text: str) -> None:
        self.mic_state.setText(text)

    # ---- player slots ----
    def _on_segment_started(self, segment: SegmentReady, as_video: bool) -> None:
        self.mic.set_speaking(True)
        if as_video:
            self.avatar.show_video()
            surface = self.avatar.video
            corner = surface.mapToGlobal(QPoint(0, 0))
            log.info(
                "video area on screen: x=%d y=%d w=%d h=%d",
                corner.x(),
                corner.y(),
                surface.width(),
                surface.height(),
            )
        else:
            self.avatar.show_photo()
        self._set_stage("Speaking" if as_video else "Speaking (audio only)")

    def _on_audio_only(self, segment: SegmentReady, reason: str) -> None:
        if self.settings.talking_head.enabled:
            self._show_notice(f"Playing audio only: {reason}")

    def _on_player_idle(self) -> None:
        self.avatar.show_photo()
        self.mic.set_speaking(False)
        if self.worker.session is not None and self.ready:
            self._set_stage("Ready")

    def _on_player_error(self, message: str) -> None:
        self._show_notice(message)

    # ---- helpers ----
    def _set_ready(self, engines: dict[str, str]) -> None:
        self.ready = True
        self.engines = dict(engines)
        self.load_progress.hide()
        self.engines_label.setText(format_engines(self.engines))
        self._set_stage("Ready")
        self.ready_changed.emit(True)

    def _set_stage(self, text: str) -> None:
        self.stage_label.setText(text)

    def _show_notice(self, message: str) -> None:
        self.notices.append(message)
        self.notice_label.setText(f"⚠ {message}")
        self.notice_label.show()
        log.warning("notice: %s", message)

    def _hide_notice(self) -> None:
        self.notice_label.hide()

    def _update_mic_widgets(self) -> None:
        ptt = self.mode_combo.currentData() == PUSH_TO_TALK
        self.talk_button.setEnabled(ptt and self.mic.available)
        self.mute_button.setEnabled(self.mic.available)
        self.mic_state.setText(self.mic.describe())
