"""What `assistant serve` holds for everybody: the models, loaded once, and the avatar's renderer, measured once.

`load()` (blocking, on a thread: the page already answers "loading" meanwhile) builds the stages the way the desktop
app does, through a `Session` with a live stream (a model the profile asks for but that is not downloaded is
replaced by the bundled one, with a notice), and the live avatar's renderer at `serve.resolution` / `serve.fps`
(`assistant.live.build`, the same measured step-down as the window's). Then `admission` opens, and each browser
gets a `BrowserSession` from `new_session()`.

Needs the models of the configured profile (or the bundled ones) and the avatar photo.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from assistant.audio.vad import VadSettings
from assistant.config import LiveSettings, Settings
from assistant.live.build import LiveSetup, build_live
from assistant.live.renderer import RigRenderer
from assistant.serve.admission import Admission, Capacity
from assistant.serve.conversation import BrowserSession, Send
from assistant.serve.turn_queue import SharedModels
from assistant.session import Session

log = logging.getLogger(__name__)


def live_settings_for_serve(settings: Settings) -> Settings:
    """The settings with the live stream at the size and rate sent to browsers (`serve.resolution`, `serve.fps`)."""
    s = settings.serve
    live = LiveSettings(
        **{**settings.live.model_dump(), "resolution": s.resolution.model_dump(), "fps": s.fps}
    )
    return settings.model_copy(update={"live": live})


def per_browser_renderer(setup: LiveSetup) -> LiveSetup:
    """The setup each browser's stream copies its renderer from. Wav2Lip's live renderer holds the network and
    one stream's frames in preparation; it is not shared between browsers yet, so its rig (the light engine)
    animates each of them, with a notice."""
    if isinstance(setup.renderer, RigRenderer):
        return setup
    rig = setup.renderer.rig
    close = getattr(setup.renderer, "close", None)
    if close is not None:
        close()
    notice = (
        f"{setup.engine} is not shared between browsers yet: the light engine animates each browser's avatar"
    )
    return LiveSetup(setup.settings, rig, rig.name, setup.rate, [*setup.notices, notice])


class ServeHub:
    def __init__(self, settings: Settings, work_dir: Path | None = None) -> None:
        self.settings = settings
        s = settings.serve
        self.admission = Admission(Capacity(s.max_sessions, s.max_sessions_per_address))
        self.session: Session | None = None
        self.models: SharedModels | None = None
        self.setup: LiveSetup | None = None
        self.vad = VadSettings.from_config(settings.audio)
        # Each turn's speech files: under a folder of its own, removed at exit (a server keeps no conversation).
        self._owns_work_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="assistant-serve-"))

    def load(self, progress: Callable[[str], None] = lambda what: None) -> None:
        """Load the models and build the renderer; on failure the admission says why to every page."""
        try:
            started = time.monotonic()
            session = Session(self.settings, live=True, out_dir=self.work_dir)
            session.load(lambda what, fraction: progress(what))
            progress("Measuring the avatar renderer")
            setup = build_live(live_settings_for_serve(self.settings), session.resolved)
        except Exception as e:  # the server stays up to tell the pages what went wrong
            log.exception("loading the models failed")
            self.admission.failure = f"{type(e).__name__}: {e}"
            self.admission.state = "failed"
            return
        self.session = session
        self.setup = setup = per_browser_renderer(setup)
        for notice in setup.notices:
            log.warning("Talking head: %s", notice)
        session.live_engine = setup.engine
        self.models = SharedModels(session.asr, session.dialogue, session.tts)
        s = setup.settings
        log.info(
            "models ready in %.1f s: %s; avatar %s %dx%d at %g fps",
            time.monotonic() - started, ", ".join(f"{k} {v}" for k, v in session.engines_summary().items()),
            setup.engine, s.width, s.height, s.fps,
        )  # fmt: skip
        self.admission.state = "ready"

    def new_session(self, session_id: str, send: Send) -> BrowserSession:
        assert self.models is not None and self.setup is not None, "load() first"
        return BrowserSession(
            session_id,
            self.models,
            self.setup,
            self.vad,
            self.work_dir,
            send,
            self.settings.serve.max_message_chars,
        )

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
