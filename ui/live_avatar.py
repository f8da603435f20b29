"""The Qt side of the session's live avatar: builds the core `LiveStream` off the GUI thread, hands it to the
desktop player (`live.player`: the `DirectPlayer` paints its frames on the sound card's clock; the VLC `LivePlayer`
plays its encoder's MPEG-TS pipe), queues reply speech into it, cancels it, and turns its events into Qt signals.

One stream and one player for the whole session. The stream starts as soon as the window opens (while the
models are still loading the avatar already breathes and blinks); a new avatar photo swaps the stream's renderer
in place, so the media never reloads for that either (a new size or frame rate does restart it).

Needs PySide6; sounddevice (direct player) or python-vlc and ffmpeg (vlc player).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QPoint, Signal

from assistant.config import LiveSettings, Settings
from assistant.events import SegmentReady
from assistant.live import LiveStream, StreamDrained, StreamEvent, StreamSpeechFinished, StreamSpeechStarted
from assistant.live.build import LiveSetup, build_live, record_path
from assistant.live.clip_feed import ClipFeed
from assistant.profile import resolve
from assistant.talking_head.speed import measure_cpu_lipsync
from assistant.video import LiveEncoder
from ui.direct_player import DirectPlayer
from ui.live_player import LivePlayer, PlayerError
from ui.widgets import AvatarView, VideoSurface
from ui.workers import CallWorker

log = logging.getLogger(__name__)

Player = DirectPlayer | LivePlayer
PlayerFactory = Callable[[VideoSurface, LiveSettings], Player]


def resolve_measured(settings: Settings) -> Any:
    """The settings resolved as the session resolves them: Wav2Lip timed on a CPU when its weights are on disk."""
    return resolve(settings, cpu_lipsync_probe=measure_cpu_lipsync)


def default_player(surface: VideoSurface, live: LiveSettings, vlc_args: tuple[str, ...] = ()) -> Player:
    """The player `live.player` names (VLC with `vlc_args`)."""
    if live.player == "vlc":
        return LivePlayer(surface, vlc_args, caching_ms=live.caching_ms)
    return DirectPlayer(surface, live.audio_buffer_ms)


class LiveAvatar(QObject):
    started = Signal(str)  # what draws it, e.g. "light engine 1280x720 at 25 fps"
    failed = Signal(str)
    notice = Signal(str)
    speech_started = Signal(object)  # StreamSpeechStarted
    speech_finished = Signal(object)  # StreamSpeechFinished
    drained = Signal(object)  # StreamDrained
    _event = Signal(object)  # from the stream's clock thread

    def __init__(
        self,
        view: AvatarView,
        settings: Settings,
        player_factory: PlayerFactory | None = None,
        record: str | Path | None = None,
        resolve_settings: Callable[[Settings], Any] = resolve_measured,
    ) -> None:
        super().__init__()
        self.view = view
        self.settings = settings
        self._player_factory = player_factory or default_player
        self._record = record
        self._resolve = resolve_settings
        self.stream: LiveStream | None = None
        self.encoder: LiveEncoder | None = None
        self.player: Player | None = None
        self.setup: LiveSetup | None = None
        self._builders: list[CallWorker] = []
        self._generation = 0
        self.feed: ClipFeed | None = None  # the one way speech goes onto the stream
        self._pending: list[SegmentReady] = []  # speech that arrived before the stream was built
        self._closed = False
        self._event.connect(self._on_stream_event)
        view.resized.connect(self._fit)

    @property
    def media_loads(self) -> int:
        return self.player.media_loads if self.player is not None else 0

    def player_delay_s(self) -> float | None:
        """How long the player holds the stream's sound before the speaker, now (None: it cannot say)."""
        delay = self.player.delay_ms() if self.player is not None else None
        return None if delay is None else delay / 1000.0

    def played_sound(self) -> Any:
        """The direct player's sound as the device plays it (an `AudioPlayout`, the echo canceller's reference);
        None with VLC, or before the stream is built."""
        return getattr(self.player, "playout", None)

    # ---- lifecycle ----
    def start(self) -> None:
        """Build the renderer (face detection, a measured frame rate) on a thread; the stream starts when ready."""
        settings = self.settings
        builder = CallWorker(lambda: build_live(settings, self._resolve(settings)))
        builder.done.connect(self._on_built)
        builder.failed.connect(self._on_build_failed)
        builder.finished.connect(self._prune_builders)
        # Builds may overlap (settings applied while the first one runs): keep each QThread alive until it ends,
        # and let the newest one win (an older result that lands later is dropped by its generation number).
        self._generation += 1
        builder.setProperty("generation", self._generation)
        self._builders.append(builder)
        builder.start()

    def _prune_builders(self) -> None:
        self._builders = [b for b in self._builders if b.isRunning()]

    def _on_build_failed(self, message: str) -> None:
        self.failed.emit(f"The live avatar could not start: {message}")

    def _on_built(self, setup: LiveSetup) -> None:
        sender = self.sender()
        if self._closed or (sender is not None and sender.property("generation") != self._generation):
            return  # closing, or a newer build is on its way
        for text in setup.notices:
            self.notice.emit(f"Talking head: {text}")
        if self.stream is not None and self.setup is not None and self.setup.settings == setup.settings:
            old = self.stream.renderer
            self.stream.renderer = setup.renderer  # same size and rate: swap in place, keep the one media
            if hasattr(old, "close"):
                old.close()
            self.setup = setup
            self.started.emit(self.describe())
            return
        self._stop_stream()
        self.setup = setup
        s = setup.settings
        try:
            player = self._ensure_player()
            self.encoder = self._make_encoder(player, setup)
        except (PlayerError, Exception) as e:  # noqa: BLE001 - the app goes on without a picture
            self.failed.emit(f"The live avatar could not start: {e}")
            return
        self.stream = LiveStream(setup.renderer, s, on_event=self._event.emit)
        self.feed = ClipFeed(self.stream)
        if self.encoder is not None:
            self.stream.add_sink(self.encoder)
        player.attach(self.stream, self.encoder)
        self.stream.start()
        self._fit(self.view.width(), self.view.height())
        box = setup.renderer.face_box
        log.info(
            "live avatar started: %s; face box in the stream x1=%d y1=%d x2=%d y2=%d of %dx%d",
            self.describe(), box.x1, box.y1, box.x2, box.y2, s.width, s.height,
        )  # fmt: skip
        self.started.emit(self.describe())
        pending, self._pending = self._pending, []
        for segment in pending:
            self.say(segment)

    def _ensure_player(self) -> Player:
        if self.player is None:
            self.player = self._player_factory(self.view.video, self.settings.live)
            self.player.video_ready.connect(self.view.show_video)
            self.player.failed.connect(self.failed)
            if isinstance(self.player, DirectPlayer):
                self.player.notice.connect(self.notice)
        return self.player

    def _make_encoder(self, player: Player, setup: LiveSetup) -> LiveEncoder | None:
        """ffmpeg for what needs an encoded stream: VLC's pipe, a recording of the session; else None."""
        outputs: list[tuple[str, str | Path | None]] = [("mpegts", None)] if player.wants_pipe else []
        target = record_path(self.settings, self._record)
        if target is not None:
            outputs.append(("mp4", target))
        s = setup.settings
        return LiveEncoder(outputs, s.width, s.height, s.fps, s.audio_rate_hz) if outputs else None

    def _fit(self, width: int, height: int) -> None:
        if self.player is None or self.setup is None:
            return
        s = self.setup.settings
        geometry = self.player.crop_to(s.width, s.height, width, height)
        corner = self.view.mapToGlobal(QPoint(0, 0))
        log.info(
            "live picture: stream crop %s shown at x=%d y=%d w=%d h=%d", geometry, corner.x(), corner.y(), width, height
        )

    def describe(self) -> str:
        if self.setup is None:
            return "starting"
        s = self.setup.settings
        name = {
            "light": "light engine", "static": "still face (idle motion)",
            "wav2lip": "Wav2Lip mouth on the light rig", "wav2lip_gan": "Wav2Lip-GAN mouth on the light rig",
        }.get(self.setup.engine, self.setup.engine)  # fmt: skip
        return f"{name} {s.width}x{s.height} at {s.fps:g} fps"

    def apply_settings(self, settings: Settings) -> None:
        """A new avatar, engine or size: rebuild the renderer; the stream keeps running meanwhile."""
        old, self.settings = self.settings, settings
        if (old.talking_head, old.live, old.gpu_profile) != (settings.talking_head, settings.live, settings.gpu_profile):
            self.start()

    def _stop_stream(self) -> None:
        if self.stream is not None:
            self.stream.stop(close_sinks=True)
            if hasattr(self.stream.renderer, "close"):
                self.stream.renderer.close()
        self.stream, self.encoder, self.feed = None, None, None

    def shutdown(self) -> None:
        self._closed = True
        self._stop_stream()
        if self.player is not None:
            self.player.release()
        for builder in self._builders:
            builder.wait(10_000)

    # ---- speech ----
    def say(self, segment: SegmentReady) -> None:
        if self.stream is None or self.feed is None:
            self._pending.append(segment)
            return
        key, text, path = (segment.turn_id, segment.index), segment.speech.text, segment.speech.wav_path
        try:
            self.feed.say_file(key, path, text)
        except Exception as e:  # noqa: BLE001 - an unreadable WAV loses one segment, not the session
            log.exception("cannot queue %s", path)
            self.notice.emit(f"Could not play a reply segment: {e}")

    def cancel(self) -> None:
        """Fade out the voice, drop what is queued or being prepared, and what the player still holds."""
        self._pending.clear()
        if self.feed is None:
            return
        # Clips never said come back through the stream's events, as cut ones do.
        if self.feed.cancel() and self.player is not None:
            self.player.cut(self.stream.settings.fade_ms)  # the player drops what it holds and the stream's fade

    # ---- events from the clock thread ----
    def _on_stream_event(self, event: StreamEvent) -> None:
        if isinstance(event, StreamSpeechStarted):
            self.speech_started.emit(event)
        elif isinstance(event, StreamSpeechFinished):
            if self.feed is not None:
                self.feed.finished(event.key)
            self.speech_finished.emit(event)
        elif isinstance(event, StreamDrained):
            self.drained.emit(event)
