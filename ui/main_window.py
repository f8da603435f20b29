"""The main window: the live avatar, conversation, microphone controls, text box, status.

It wires four things together, all on the GUI thread: the `SessionWorker` (models and turns, its own thread),
the `MicrophoneControl` (the capture thread), the `LiveAvatar` (the session-long stream in the embedded VLC
player) and the core's `TurnTaking` controller, which decides who speaks when. The window holds no turn-taking
rule: it hands every event to the controller and carries out its actions (`submit_turn`, `cancel_turn`,
`speak`, `stop_speech`, `set_listening`, `state_changed`). Core events reach it through the `EventBridge` as
queued signals; every slot is `_on_<signal>` and only updates widgets or hands work on, so the event loop never
waits on a model.

Needs PySide6; VLC and ffmpeg for the live avatar.
"""

from __future__ import annotations

import logging
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
from assistant.errors import ConfigError
from assistant.events import ConversationReset, Notice, SegmentReady, StageFailed, TurnDone
from assistant.live import StreamSpeechFinished, StreamSpeechStarted
from assistant.conversation_bounds import ConversationBounds
from assistant.live.spoken import SpokenLedger, SpokenVerdict
from assistant.perceived import FirstSound, FirstSoundFigure
from assistant.audio.echo import barge_in_setup
from assistant.turn_taking import TurnState, TurnTaking
from ui.bridge import EventBridge
from ui.live_avatar import LiveAvatar, PlayerFactory, default_player
from ui.microphone import (
    HANDS_FREE,
    PUSH_TO_TALK,
    ListenerFactory,
    MicrophoneControl,
    default_listener_factory,
)
from ui.model_offer import RecommendationBanner
from ui.widgets import AvatarView, ChatEntry, ConversationView, LevelMeter
from ui.workers import SessionFactory, SessionWorker, favour_gui_thread

log = logging.getLogger(__name__)

# Stage timings shown after a turn: (key in TurnDone.timings_s, label).
TIMING_LABELS = (
    ("asr", "ASR"),
    ("llm_total", "LLM"),
    ("tts_total", "TTS"),
    ("talking_head_total", "video"),
    ("first_segment_from_end_of_speech", "first segment made"),
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
        player_factory: PlayerFactory | None = None,
        listener_factory: ListenerFactory | None = default_listener_factory,
        vlc_args: tuple[str, ...] = (),
        user_config: Path | None = None,
        record: str | Path | None = None,
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
        self.offered_model: str | None = None  # the better dialogue model offered at start, if any
        self._user_entry_of_job: dict[int, ChatEntry] = {}
        self.spoken = SpokenLedger()  # what the avatar really said of each reply, for the history after a cut
        self.first_sound = FirstSound()  # end of speech -> the reply's first sound at the speaker, per turn
        self.bounds = ConversationBounds()  # which turns belong to the conversation on screen ("New conversation")
        self.worker_busy = False
        self._closed = False
        self._build_ui()
        if player_factory is None and vlc_args:

            def player_factory(surface, live):
                return default_player(surface, live, vlc_args)

        self.live = LiveAvatar(self.avatar, settings, player_factory, record)
        self._set_barge_in(settings)
        self.turns = TurnTaking(self, mode=settings.audio.mode, barge_in=self.barge.enabled)
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
        self.model_banner = RecommendationBanner()  # the demo notice and the recommended set's offer
        self.text_input = QLineEdit(objectName="textInput", placeholderText="Type a question and press Enter")
        self.send_button = QPushButton("Ask", objectName="sendButton")
        text_row = QHBoxLayout()
        text_row.addWidget(self.text_input, 1)
        text_row.addWidget(self.send_button)
        self.engines_label = QLabel(objectName="enginesLabel", wordWrap=True)
        self.engines_label.setFixedHeight(2 * self.engines_label.fontMetrics().lineSpacing() + 4)
        self.engines_label.setStyleSheet("color:#555;")
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self._build_panes(), 1)
        layout.addLayout(text_row)
        layout.addWidget(self.engines_label)
        self.setCentralWidget(central)
        self._build_status_bar()
        self._build_menu()
        self._update_mic_widgets()

    def _build_mic_row(self) -> QHBoxLayout:
        self.mode_combo = QComboBox(objectName="micMode")
        self.mode_combo.addItem("Hands-free", HANDS_FREE)
        self.mode_combo.addItem("Push-to-talk", PUSH_TO_TALK)
        self.mode_combo.setCurrentIndex(self.mode_combo.findData(self.settings.audio.mode))
        self.talk_button = QPushButton("Hold to talk (Space)", objectName="talkButton")
        self.mute_button = QPushButton("Mute", objectName="muteButton", checkable=True)
        self.stop_button = QPushButton("Stop reply", objectName="stopButton")
        self.meter = LevelMeter()
        self.mic_state = QLabel(objectName="micState")
        # A fixed width for the text that changes during a turn, so the avatar pane never moves when a reply
        # starts or ends (the notice banner lives in the right column for the same reason).
        longest = "paused while the avatar speaks "
        self.mic_state.setFixedWidth(self.mic_state.fontMetrics().horizontalAdvance(longest) + 8)
        mic_row = QHBoxLayout()
        for w in (self.mode_combo, self.talk_button, self.mute_button, self.meter, self.mic_state, self.stop_button):
            mic_row.addWidget(w)
        mic_row.setStretch(3, 1)
        return mic_row

    def _build_panes(self) -> QSplitter:
        """The avatar with the microphone row on the left, the banners and the conversation on the right."""
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.avatar, 1)
        left_layout.addLayout(self._build_mic_row())
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.model_banner)
        right_layout.addWidget(self.notice_label)
        right_layout.addWidget(self.conversation, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        width = self.settings.ui.window_width
        splitter.setSizes([width * 3 // 5, width * 2 // 5])
        return splitter

    def _build_status_bar(self) -> None:
        self.stage_label = QLabel(objectName="stageLabel")
        self.timings_label = QLabel(objectName="timingsLabel")
        self.load_progress = QProgressBar(objectName="loadProgress", maximumWidth=180, textVisible=True)
        self.load_progress.setRange(0, 100)
        bar = self.statusBar()
        bar.addWidget(self.stage_label)
        bar.addWidget(self.load_progress)
        bar.addWidget(self.timings_label, 1)

    def _build_menu(self) -> None:
        self.settings_action = QAction("&Settings…", self, shortcut=QKeySequence("Ctrl+,"))
        self.quit_action = QAction("&Quit", self, shortcut=QKeySequence.StandardKey.Quit)
        self.new_conversation_action = QAction("&New conversation", self, shortcut=QKeySequence.StandardKey.New)
        self.new_conversation_action.setToolTip("Stop the reply; the assistant forgets what was said")
        menu = self.menuBar().addMenu("&Assistant")
        menu.addAction(self.new_conversation_action)
        menu.addAction(self.settings_action)
        menu.addSeparator()
        menu.addAction(self.quit_action)

    def _connect(self) -> None:
        b, w, live = self.bridge, self.worker, self.live
        bridge_signals = (
            "utterance_captured", "transcript_ready", "reply_sentence_ready", "speech_ready", "video_ready",
            "segment_ready", "stage_failed", "notice", "conversation_reset", "turn_done",
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
        self.model_banner.declined.connect(self._on_offer_declined)
        self.model_banner.downloaded.connect(self._on_offer_downloaded)
        live.started.connect(self._on_live_started)
        live.failed.connect(self._on_live_failed)
        live.notice.connect(self._show_notice)
        live.speech_started.connect(self._on_stream_speech_started)
        live.speech_finished.connect(self._on_stream_speech_finished)
        live.drained.connect(self._on_stream_drained)
        self.mic.state_changed.connect(self._on_mic_state_changed)
        # Bound methods rather than lambdas holding the window: with those, PySide6 6.12.0 crashed at exit
        # ("shared QObject was deleted directly", then SIGSEGV).
        self.mode_combo.currentIndexChanged.connect(self._on_mode_selected)
        self.mute_button.toggled.connect(self._on_mute_toggled)
        self.talk_button.pressed.connect(self.begin_push_to_talk)
        self.talk_button.released.connect(self.end_push_to_talk)
        self.stop_button.clicked.connect(self._on_stop_clicked)
        self.send_button.clicked.connect(self._submit_text)
        self.text_input.returnPressed.connect(self._submit_text)
        self.settings_action.triggered.connect(self.open_settings)
        self.new_conversation_action.triggered.connect(self.new_conversation)
        for signal in (b.utterance_captured, b.transcript_ready, b.turn_done):
            signal.connect(self._note_turn_id)
        # Direct: runs on the worker thread as the turn ends, before the next turn can read the history.
        w.turn_finished.connect(self._reset_after_cut_turn, Qt.ConnectionType.DirectConnection)
        w.turn_failed.connect(self._reset_after_cut_turn, Qt.ConnectionType.DirectConnection)
        self.quit_action.triggered.connect(self.close)

    def _on_mode_selected(self, _index: int) -> None:
        mode = self.mode_combo.currentData()
        self.mic.set_mode(mode)
        self.turns.set_mode(mode)
        self._update_mic_widgets()

    def _on_mute_toggled(self, muted: bool) -> None:
        self.mic.set_user_muted(muted)
        self.turns.set_muted(muted)

    def _on_stop_clicked(self) -> None:
        self.stop_reply("stopped by the user")

    # ---- start / stop ----
    def start(self) -> None:
        """Start the live avatar and load the models in the background; the window is usable meanwhile."""
        favour_gui_thread()
        self.live.start()
        self.worker.start()
        self.mic.start()
        QApplication.instance().installEventFilter(self)

    def shutdown(self) -> None:
        """Stop in order: microphone, turn in flight, the live avatar (VLC), then the session (models, GPU)."""
        if self._closed:
            return
        self._closed = True
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
        self.mic.stop()
        self.model_banner.shutdown()  # a download in flight stops; its .part waits for the next start
        self.worker.cancel_current("the window is closing")
        self.live.shutdown()
        self.worker.shutdown()
        log.info("main window closed: microphone, live avatar and session released")

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
        entry = ChatEntry("user", text, note="" if self.ready else "queued until loaded")
        job = self.turns.typed(text)
        if job is not None:
            self._user_entry_of_job[job] = self.conversation.add(entry)

    def _submit_text(self) -> None:
        text = self.text_input.text()
        self.text_input.clear()
        self.ask(text)

    def begin_push_to_talk(self) -> None:
        if self.mic.mode != PUSH_TO_TALK:
            self.mode_combo.setCurrentIndex(self.mode_combo.findData(PUSH_TO_TALK))
        self.turns.talk_pressed()
        self.mic.ptt_press()

    def end_push_to_talk(self) -> None:
        self.mic.ptt_release()

    def stop_reply(self, reason: str = "stopped") -> None:
        self.turns.stop(reason)

    def new_conversation(self) -> None:
        """Start afresh: stop the reply in flight, forget the dialogue history, clear the conversation panel."""
        self.bounds.start_afresh(self.worker_busy)  # before the stop: the cut turn may end at once
        self.turns.stop("new conversation")
        self._forget_history()
        self._clear_conversation()

    def _clear_conversation(self) -> None:
        """The panel of a new conversation (from the menu or said aloud): one line saying so."""
        self.conversation.entries.clear()
        self._user_entry_of_job.clear()
        self.timings_label.clear()
        self.conversation.add(ChatEntry("system", "New conversation: the assistant forgot what was said."))

    def _forget_history(self) -> None:
        if self.worker.session is not None:  # before the models loaded there is no history to forget
            self.worker.session.reset_conversation()

    def _reset_after_cut_turn(self, _result: object) -> None:
        if self.bounds.reset_due():  # worker thread: touches the session only
            self._forget_history()

    def _note_turn_id(self, event) -> None:
        self.bounds.seen(event.turn_id)

    # ---- TurnTaking's actions (called by the controller, on the GUI thread) ----
    def submit_turn(self, utterance=None, text=None, end_of_speech_at=None, hold=None) -> int:
        return self.worker.submit_turn(utterance=utterance, text=text, end_of_speech_at=end_of_speech_at, hold=hold)

    def cancel_turn(self, reason: str) -> None:
        self.worker.drop_pending_turns()
        self.worker.cancel_current(reason)

    def speak(self, segment: SegmentReady) -> None:
        self.spoken.queued(segment.turn_id, segment.index, segment.speech.text)
        self.live.say(segment)

    def stop_speech(self, reason: str) -> None:
        self.live.cancel()

    def set_listening(self, listening: bool) -> None:
        self.mic.set_speaking(not listening)

    def state_changed(self, state: TurnState, text: str) -> None:
        log.info("turn-taking: %s (%s)", state.value, text)
        self._set_stage(text)

    def open_settings(self) -> None:
        from ui.settings_dialog import SettingsDialog

        session = self.worker.session
        dialog = SettingsDialog(
            self.settings,
            resolved=getattr(session, "resolved", None),
            face_preview=getattr(session, "avatar_face_preview", None),
            level_signal=self.bridge.mic_level,
            user_config=self.user_config,
            engines=self.engines if self.ready else None,  # what ran, the live avatar's engine included
            notices=list(getattr(session, "notices", [])) + (self.live.setup.notices if self.live.setup else []),
            # the dialog offers the recommended set too, unless the window is downloading it already
            recommendation=None if self.model_banner.downloading else getattr(session, "recommendation", None),
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
        self.turns.models_loading()
        self.worker.submit_reconfigure(settings)
        self.live.apply_settings(settings)
        if settings.audio != old.audio:
            if settings.audio.barge_in != old.audio.barge_in or settings.audio.echo_delay_ms != old.audio.echo_delay_ms:
                self._set_barge_in(settings)
                self.turns.set_barge_in(self.barge.enabled)
            self.mic.barge_in_onset_ms = settings.audio.barge_in_min_speech_ms
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
        if not self.ready:
            self._set_stage(f"Loading: {what}")

    def _on_loaded(self, engines: dict[str, str]) -> None:
        self._set_ready(engines)
        log.info("ready: models loaded; engines: %s", format_engines(self.engines))
        self.conversation.add(ChatEntry("system", "Ready: the models are loaded."))
        self._offer_better_model()

    def _offer_better_model(self) -> None:
        """On a CPU: the demo notice and the recommended set's offer. With a CUDA GPU, first start with the
        profile's dialogue model not downloaded: say which one, and where to get it."""
        from ui.model_offer import describe, offered_dialogue_model

        session = self.worker.session
        if self._show_recommendation():
            return
        spec = offered_dialogue_model(
            getattr(session, "resolved", None), self.settings.dialogue.model, self.settings.models_dir
        )
        if spec is not None:
            self.offered_model = spec.name
            self.conversation.add(
                ChatEntry(
                    "system",
                    f"A better language model is available for this machine: {describe(spec)}. "
                    "Assistant → Settings downloads it (cancel and resume any time); the bundled one answers meanwhile.",
                )
            )

    def _on_load_failed(self, message: str) -> None:
        self.load_progress.hide()
        self.turns.models_failed()
        self._show_notice(f"Loading the models failed: {message}")

    def _on_turn_started(self, job: int, payload: object) -> None:
        self.turns.turn_started(job)
        if job != self.turns.live_job:
            return
        self._hide_notice()
        self.timings_label.clear()
        if isinstance(payload, str):
            entry = self._user_entry_of_job.get(job)
            if entry is not None and entry.note:
                entry.note = ""
                self.conversation.refresh()
        elif job not in self._user_entry_of_job:
            self._user_entry_of_job[job] = self.conversation.add(ChatEntry("user", "", note="recognising"))

    def _on_turn_finished(self, result: object) -> None:
        self.turns.turn_finished(result)
        self.bounds.turn_ended()
        dropped, discarded = getattr(result, "dropped", False), getattr(result, "discarded", False)
        if dropped or discarded:
            for job, entry in list(self._user_entry_of_job.items()):
                if not entry.text and entry in self.conversation.entries and job != self.turns.live_job:
                    self.conversation.entries.remove(entry)
                    del self._user_entry_of_job[job]
            self.conversation.refresh()

    def _on_busy_changed(self, busy: bool) -> None:
        self.worker_busy = busy
        if not busy:  # the job that was running has ended, and with it any reset it owed
            self.bounds.worker_idle()

    def _on_turn_failed(self, message: str) -> None:
        self.turns.turn_failed(message)
        self._show_notice(message)

    def _show_recommendation(self) -> bool:
        """The session's recommendation (assistant.recommend), shown; False when it has none (a CUDA GPU)."""
        recommendation = getattr(self.worker.session, "recommendation", None)
        self.model_banner.show_recommendation(recommendation, self.settings)
        return recommendation is not None

    def _on_offer_declined(self, names: tuple[str, ...]) -> None:
        """"Not now": remembered in the user overlay, so the next start does not offer these models again."""
        from ui.settings_dialog import save_changes

        declined = sorted(set(self.settings.ui.model_offer_declined) | set(names))
        try:
            self.settings = save_changes(self.settings, {"ui.model_offer_declined": declined}, self.user_config)
        except ConfigError as e:
            self._show_notice(f"Cannot remember the 'Not now': {e}")
        self._show_recommendation()

    def _on_offer_downloaded(self, names: tuple[str, ...]) -> None:
        """The recommended set is there: the session reloads with the same settings and switches to it."""
        self.conversation.add(ChatEntry("system", f"Downloaded {' and '.join(names)}: switching to them."))
        self.apply_settings(self.settings)

    def _on_reconfigured(self, reloaded: list[str], engines: dict[str, str]) -> None:
        self._show_recommendation()
        self._set_ready(engines)
        what = ", ".join(reloaded) if reloaded else "nothing needed reloading"
        self.conversation.add(ChatEntry("system", f"Settings applied ({what})."))

    def _on_reconfigure_failed(self, message: str) -> None:
        self.load_progress.hide()
        self.turns.models_failed()
        self._show_notice(f"Applying the settings failed: {message}")

    # ---- turn event slots (from the bridge) ----
    def _on_utterance_captured(self, event) -> None:
        self.turns.turn_event(event)

    def _on_transcript_ready(self, event) -> None:
        if not self.turns.turn_event(event):
            return
        job = self.turns.live_job
        entry = self._user_entry_of_job.get(job) if job is not None else None
        if entry is None:
            entry = self.conversation.add(ChatEntry("user", ""))
            if job is not None:
                self._user_entry_of_job[job] = entry
        entry.turn_id = event.turn_id
        entry.text = event.transcript.text.strip()
        entry.note = f"heard in {event.transcript.elapsed_s:.1f} s"
        self.conversation.refresh()

    def _on_reply_sentence_ready(self, event) -> None:
        if not self.turns.turn_event(event):
            return
        entry = self.conversation.reply_entry(event.turn_id)
        entry.text = f"{entry.text} {event.sentence.text}".strip()
        self.conversation.refresh()

    def _on_speech_ready(self, event) -> None:
        self.turns.turn_event(event)

    def _on_video_ready(self, event) -> None:
        self.turns.turn_event(event)

    def _on_segment_ready(self, event: SegmentReady) -> None:
        self.turns.segment_ready(event)
        if event.audio_only_reason and self.settings.talking_head.enabled:
            self._show_notice(f"Playing audio only: {event.audio_only_reason}")

    def _on_stage_failed(self, event: StageFailed) -> None:
        if not self.turns.turn_event(event):
            return
        self._show_notice(f"{event.stage}: {event.message}")

    def _on_notice(self, event: Notice) -> None:
        if event.level == "warning":
            self._show_notice(event.message)
        else:
            self.statusBar().showMessage(event.message, 5000)

    def _on_conversation_reset(self, event: ConversationReset) -> None:
        """The user said "new conversation": the session forgot the history; the panel starts afresh as from the
        menu, and the turn's confirmation is shown under it (late reports of older turns are not)."""
        if not self.turns.turn_event(event):
            return
        self.bounds.started_afresh_at(event.turn_id)
        self._clear_conversation()

    def _on_turn_done(self, event: TurnDone) -> None:
        live = self.turns.turn_done(event)
        cancelled = event.cancelled or not live
        self.spoken.forget_before(event.turn_id)
        shown = (event.reply or cancelled) and not self.bounds.forgotten(event.turn_id, live)
        entry = self.conversation.reply_entry(event.turn_id) if shown else None
        if entry is not None:
            entry.note = "interrupted" if cancelled else f"{event.timings_s.get('total', 0.0):.1f} s"
            self.conversation.refresh()
        if self.settings.ui.show_timings and live:
            self.timings_label.setText(format_timings(event.timings_s))
        if live:
            self._show_first_sound(self.first_sound.end_of_speech(event.turn_id, event.end_of_speech_at))
        log.info(  # what was said stays out of the log at info level (privacy): its length only
            "turn %d done%s: heard %d characters, replied %d in %d segment(s); %s; engines %s",
            event.turn_id,
            " (cancelled)" if cancelled else "",
            len(event.transcript or ""),
            len(event.reply or ""),
            event.segments,
            format_timings(event.timings_s),
            format_engines(event.engines),
        )
        log.debug("turn %d: heard %r, replied %r", event.turn_id, event.transcript, event.reply)
        if cancelled:  # what was not said is not said: settle the history once the stream has reported
            verdict = self.spoken.turn_cut(event.turn_id)
            if verdict is not None:
                self._amend_history(verdict)

    # ---- microphone slots ----
    def _on_mic_utterance(self, utterance, ended_at: float) -> None:
        self.turns.utterance_ended(utterance, ended_at)

    def _on_mic_speech_paused(self, paused, paused_at: float) -> None:
        """A pause in speech: the controller starts the reply now and shows it only if the end is confirmed."""
        self.turns.speech_paused(paused.utterance, paused_at)

    def _on_mic_speech_resumed(self, _resumed) -> None:
        self.turns.speech_resumed()

    def _on_mic_speech_started(self, _started) -> None:
        self.turns.speech_started()

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

    # ---- live avatar slots ----
    def _on_live_started(self, description: str) -> None:
        self.engines["talking_head"] = description
        if self.barge.echo is not None:
            self.barge.echo.attach(self.live.stream, self.live.played_sound())  # the reference: what is played
        session = self.worker.session
        if session is not None and hasattr(session, "live_engine"):
            session.live_engine = description
        self.engines_label.setText(format_engines(self.engines))
        surface = self.avatar  # the stacked view: its pages (photo, video surface) take its size
        corner = surface.mapToGlobal(QPoint(0, 0))
        log.info(
            "video area on screen: x=%d y=%d w=%d h=%d",
            corner.x(), corner.y(), surface.width(), surface.height(),
        )  # fmt: skip
        stop = self.stop_button.mapToGlobal(QPoint(0, 0))
        log.info(
            "stop button on screen: x=%d y=%d w=%d h=%d",
            stop.x(), stop.y(), self.stop_button.width(), self.stop_button.height(),
        )  # fmt: skip

    def _set_barge_in(self, settings: Settings) -> None:
        """Hands-free barge-in: an echo canceller between the microphone and the VAD, or half-duplex (notice)."""
        self.barge = barge_in_setup(settings.audio)
        self.mic.echo = self.barge.echo
        self.mic.barge_in_onset_ms = settings.audio.barge_in_min_speech_ms
        if self.barge.echo is not None and self.live.stream is not None:
            self.barge.echo.attach(self.live.stream, self.live.played_sound())
        log.info("barge-in: %s", "on (AEC3 echo canceller)" if self.barge.enabled else "off (half-duplex)")
        if self.barge.notice:
            self._show_notice(self.barge.notice)

    def _on_live_failed(self, message: str) -> None:
        self._show_notice(message)

    def _on_stream_speech_started(self, event: StreamSpeechStarted) -> None:
        turn_id, index = event.key
        # The clock's own time (CLOCK_MONOTONIC, shared by processes): `bench live` measures the player's delay from it.
        log.info("stream speech started: turn %d segment %d at monotonic %.4f", turn_id, index, event.at_s)
        self.turns.playback_started(turn_id)
        if index == 0:
            self._show_first_sound(self.first_sound.first_sound(turn_id, event.at_s, self.live.player_delay_s()))

    def _show_first_sound(self, figure: FirstSoundFigure | None) -> None:
        """The user's wait for the reply, end of speech to the speaker, first in the timings line."""
        if figure is None:
            return
        log.info(
            "turn %d: first sound %.3f s after the end of speech (the app's figure%s)",
            figure.turn_id, figure.seconds, "" if figure.player_delay_known else ", without the player's delay",
        )  # fmt: skip
        if self.settings.ui.show_timings:
            rest = self.timings_label.text()
            self.timings_label.setText(f"{figure.label()} · {rest}" if rest else figure.label())

    def _on_stream_speech_finished(self, event: StreamSpeechFinished) -> None:
        turn_id, index = event.key
        verdict = self.spoken.finished(
            turn_id, index, event.text, event.played_s, event.duration_s, event.cancelled
        )
        if verdict is not None:
            self._amend_history(verdict)

    def _amend_history(self, verdict: SpokenVerdict) -> None:
        """The user cut the reply: the history keeps only what the avatar actually said, and so does the panel."""
        if self.bounds.forgotten(verdict.turn_id):
            return
        if self.worker.session is not None:
            self.worker.session.amend_spoken_reply(verdict.turn_id, verdict.spoken_text)
        entry = self.conversation.reply_entry(verdict.turn_id)
        entry.text = f"{verdict.spoken_text} …".strip()
        entry.note = "interrupted"
        self.conversation.refresh()
        log.info(
            "turn %d interrupted after %.1f s of speech (%d characters said)",
            verdict.turn_id, verdict.played_s, len(verdict.spoken_text),
        )  # fmt: skip
        log.debug(
            "turn %d interrupted after %.1f s of speech; said: %r", verdict.turn_id, verdict.played_s, verdict.spoken_text
        )

    def _on_stream_drained(self, event) -> None:
        log.info("live stream drained at frame %d", event.frame)
        if isinstance(event.last_key, tuple):
            self.turns.playback_drained(*event.last_key)
        else:
            self.turns.playback_drained()

    # ---- helpers ----
    def _set_ready(self, engines: dict[str, str]) -> None:
        self.ready = True
        self.engines = dict(engines)
        if self.live.setup is not None:  # what really draws the avatar: the live stream
            self.engines["talking_head"] = self.live.describe()
        self.load_progress.hide()
        self.engines_label.setText(format_engines(self.engines))
        self.turns.models_ready()
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
