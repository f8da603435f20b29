"""A conversation session: builds the four stages from the settings, keeps them loaded, runs turns, logs each
turn, and reloads only what a settings change touches. What the CLI, the benchmark and the desktop app drive.

Models are loaded once (load()) and kept warm; a model the profile asks for but that is not downloaded is replaced
by the bundled one with a notice, so a first run with nothing downloaded works offline.

What ran is what `engines_summary()` reports: each stage names the model or engine that was loaded, and one that
replaced what the settings asked for says so ("instead of ..."). `notices` holds the full reason for every
substitution still in effect (a stage rebuilt forgets its old ones), not only the latest.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from assistant.config import Settings
from assistant.conversation_log import ConversationLog
from assistant.errors import ModelError
from assistant.events import Notice, TurnEvent, Utterance
from assistant.heap import release_free_memory
from assistant.models import ModelChoice, locate_or_bundled, state
from assistant.pipeline import Hold, Stages, TurnResult, TurnRunner
from assistant.profile import GPUInfo, ResolvedSettings, llama_gpu_offload, probe_cuda, resolve
from assistant.recommend import BUNDLED_ASR, Recommendation, recommend
from assistant.retention import prune_media
from assistant.storage import describe as describe_storage
from assistant.talking_head.speed import measure_cpu_lipsync

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]

AMENDABLE_TURNS = 8  # the newest turns whose reply may still be cut while playing (amend_spoken_reply)


@dataclass(frozen=True)
class _StageKeys:
    """What each stage is built from; a stage is rebuilt when its key changes."""

    asr: tuple
    dialogue: tuple
    tts: tuple
    talking_head: tuple


def _usable(model: str, models_dir: Path) -> bool:
    """Whether a model named by path or registry name is there to load (a download finished since: reload)."""
    if Path(model).expanduser().exists():
        return True
    try:
        return state(model, models_dir).usable
    except ModelError:
        return False


def _keys(settings: Settings, r: ResolvedSettings) -> _StageKeys:
    th = settings.talking_head
    models = settings.models_dir
    return _StageKeys(
        asr=(r.asr_model, _usable(r.asr_model, models), r.asr_device, settings.asr.model_dump_json()),
        dialogue=(
            r.dialogue_model, _usable(r.dialogue_model, models), r.dialogue_gpu_layers,
            settings.dialogue.model_dump_json(),
        ),  # fmt: skip
        tts=(r.tts_engine, r.coqui_model, r.tts_device, settings.tts.model_dump_json()),
        talking_head=(r.talking_head_engine, r.quality_mode, r.talking_head_device, th.model_dump_json()),
    )


class Session:
    def __init__(
        self,
        settings: Settings,
        on_event: Callable[[TurnEvent], None] = lambda e: None,
        probe: Callable[[], GPUInfo | None] = probe_cuda,
        out_dir: Path | None = None,
        live: bool = False,
        llm_gpu_probe: Callable[[], bool] = llama_gpu_offload,
        cpu_lipsync_probe: Callable[[Settings, str], float | None] | None = measure_cpu_lipsync,
    ) -> None:
        self.settings = settings
        # live: a LiveStream animates the speech (the desktop app), so no talking-head files are rendered per turn.
        self.live = live
        self._probe = probe
        self._llm_gpu_probe = llm_gpu_probe
        self._cpu_lipsync_probe = cpu_lipsync_probe
        self.on_event = on_event
        # Per stage ("profile", "asr", "dialogue", "tts", "talking_head"): the reasons its choice differs from the
        # settings', and (what was asked for, why not in a few words) when it runs something else.
        self._notices: dict[str, list[str]] = {}
        self._substituted: dict[str, tuple[str, str]] = {}
        # Without CUDA: the model set this CPU sustains and what of it is missing (the window offers it).
        self.recommendation: Recommendation | None = None
        self.resolved = self._resolve(settings)
        self.out_dir = Path(out_dir) if out_dir else settings.data_dir / "replies"
        self.conversation_log = ConversationLog(settings.data_dir / "conversations")
        self.asr: Any = None
        self.dialogue: Any = None
        self.tts: Any = None
        self.talking_head: Any = None
        self.runner: TurnRunner | None = None
        self._keys: _StageKeys | None = None
        self.load_timings_s: dict[str, float] = {}
        self.live_engine: str | None = None  # what draws the live stream, told by whoever runs it
        # Interrupted replies: what the stream really said, per turn, applied to the history once the turn ended.
        self._amend_lock = threading.Lock()
        self._amendments: dict[int, str] = {}
        self._user_text_of_turn: dict[int, str] = {}

    # ---- building the stages ----
    @property
    def notices(self) -> list[str]:
        """Why what runs differs from what the settings ask for: every reason still in effect, oldest first."""
        return [message for stage in self._notices.values() for message in stage]

    def _notice(self, message: str, level: str = "warning", stage: str = "") -> None:
        log.warning(message) if level == "warning" else log.info(message)
        self._notices.setdefault(stage, []).append(message)
        self.on_event(Notice(0, time.monotonic(), message, level))

    def _resolve(self, settings: Settings) -> ResolvedSettings:
        """Resolve the profile (and, on a CPU, what to recommend); a profile's notice is told once while it lasts."""
        resolved = resolve(settings, self._probe, self._llm_gpu_probe, self._cpu_lipsync_probe)
        self.recommendation = self._recommend(settings, resolved)
        if list(resolved.notices) != self._notices.get("profile", []):
            self._notices.pop("profile", None)
            for message in resolved.notices:
                self._notice(message, stage="profile")
        return resolved

    @staticmethod
    def _recommend(settings: Settings, r: ResolvedSettings) -> Recommendation | None:
        """The set this CPU should run and what of it is missing (None with a CUDA GPU or an untimed CPU)."""
        if r.cpu_speed is None:
            return None
        try:
            return recommend(r.cpu_speed, settings.models_dir, r.dialogue_model, r.asr_model)
        except ModelError as e:  # a tier names a model the registry lacks: a bug, but no reason to stop
            log.warning("no model recommendation: %s", e)
            return None

    def _substitute(self, what: str, stage: str) -> Callable[[ModelChoice], None]:
        """What a stage does when the bundled model stands in for the one asked for: a notice, and the engines
        summary says "instead of ..."."""

        def record(choice: ModelChoice) -> None:
            self._notice(f"{what}: {choice.why}; using the bundled {choice.name} meanwhile", stage=stage)
            self._substituted[stage] = (choice.replaced or "", choice.replaced_because)

        return record

    def _build_asr(self) -> Any:
        from assistant.asr import WhisperASR

        choice = locate_or_bundled(self.resolved.asr_model, BUNDLED_ASR, self.settings.models_dir)
        if choice.replaced is not None:
            self._substitute("Speech recognition", "asr")(choice)
        asr = WhisperASR.from_settings(self.settings.asr, choice.path, self.resolved.asr_device, choice.name)
        asr.load()
        return asr

    def _build_dialogue(self) -> Any:
        from assistant.dialogue_model import build_dialogue

        return build_dialogue(self.settings, self.resolved, self._substitute("Dialogue model", "dialogue"))

    def _build_tts(self) -> Any:
        from assistant.tts.select import build_tts, options_from_settings

        options = options_from_settings(self.settings, self.resolved)
        return build_tts(
            self.resolved.tts_engine, options,
            on_fallback=lambda name, why: self._notice(f"Speech: {why}", stage="tts"),
        )  # fmt: skip

    def _build_talking_head(self) -> Any:
        if not self.settings.talking_head.enabled or self.live:
            return None
        from assistant.talking_head.chain import build_chain

        chain = build_chain(self.settings, self.resolved, on_oom="raise")
        warm = getattr(chain, "prepare", None)
        if warm is not None:  # build the engine now, not on the first reply
            for reason in warm():
                self._notice(f"Talking head: {reason}", stage="talking_head")
        return chain

    def load(self, progress: Progress | None = None) -> None:
        """Load every stage (blocking; the app calls it from a worker thread). Idempotent."""
        progress = progress or (lambda what, fraction: None)
        steps = (
            ("asr", "speech recognition", self._build_asr),
            ("dialogue", "language model", self._build_dialogue),
            ("tts", "voice", self._build_tts),
            ("talking_head", "talking head", self._build_talking_head),
        )
        for i, (attr, label, build) in enumerate(steps):
            if getattr(self, attr) is not None:
                continue
            progress(f"Loading {label}", i / len(steps))
            start = time.monotonic()
            setattr(self, attr, build())
            self.load_timings_s[attr] = time.monotonic() - start
        progress("Ready", 1.0)
        self._keys = _keys(self.settings, self.resolved)
        self._make_runner()

    def _make_runner(self) -> None:
        stages = Stages(self.asr, self.dialogue, self.tts, self.talking_head)
        if self.runner is None:
            self.runner = TurnRunner(stages, self._emit, self.out_dir)
            self.runner.video_by_stream = self.live
        else:
            self.runner.stages = stages

    def _emit(self, event: TurnEvent) -> None:
        self.on_event(event)

    # ---- turns ----
    def run_turn(
        self,
        utterance: Utterance | None = None,
        text: str | None = None,
        end_of_speech_at: float | None = None,
        hold: Hold | None = None,
    ) -> TurnResult:
        """One turn (blocking: call from a worker thread). Written to the conversation log when it ends.

        With a `hold` the turn is speculative (started at a pause in speech): its events wait for hold.release()
        and a discarded one is neither shown nor logged."""
        if self.runner is None:
            self.load()
        assert self.runner is not None
        started = dt.datetime.now().astimezone()
        result = self.runner.run(utterance=utterance, text=text, end_of_speech_at=end_of_speech_at, hold=hold)
        with self._amend_lock:
            self._user_text_of_turn[result.turn_id] = result.transcript
            # Only a reply still playing can be cut: forget the questions of older turns (the desktop app keeps one
            # session for hours, and this map held every question asked).
            oldest = result.turn_id - AMENDABLE_TURNS
            for table in (self._user_text_of_turn, self._amendments):
                for old in [t for t in table if t <= oldest]:
                    del table[old]
        self._apply_amendment(result.turn_id)
        if not result.dropped and not result.discarded:
            source = utterance.source if utterance is not None else "typed"
            try:
                self.conversation_log.append(result, started, source)
            except OSError as e:  # a read-only or full data folder must not lose the reply already shown
                message = f"Conversation log not written: {describe_storage(self.conversation_log.folder, e)}"
                log.warning(message)
                self._emit(Notice(result.turn_id, time.monotonic(), message, "warning"))
            paths = self.settings.paths
            try:
                prune_media(self.out_dir, paths.keep_media_turns, paths.keep_media_mb)
            except OSError as e:  # retention is housekeeping: it never fails a turn
                log.warning("media retention skipped: %s", e)
        # The turn's stage threads freed their native buffers into their own C heaps: hand them back now, or the
        # process's memory creeps up over a long session (see assistant.heap).
        release_free_memory()
        return result

    def amend_spoken_reply(self, turn_id: int, spoken_text: str) -> None:
        """The reply of `turn_id` was cut while being spoken: keep only `spoken_text` in the dialogue history,
        marked interrupted. Safe from any thread; applied once the turn has ended if it is still running."""
        with self._amend_lock:
            self._amendments[turn_id] = spoken_text
        self._apply_amendment(turn_id)

    def _apply_amendment(self, turn_id: int) -> None:
        with self._amend_lock:
            user_text = self._user_text_of_turn.get(turn_id)
            if user_text is None or turn_id not in self._amendments:
                return
            spoken = self._amendments.pop(turn_id)
        amend = getattr(self.dialogue, "amend_reply", None)
        if amend is not None and user_text:
            amend(user_text, spoken)

    def cancel_current(self, reason: str = "new user speech") -> bool:
        return self.runner.cancel_current(reason) if self.runner else False

    def reset_conversation(self) -> None:
        if self.dialogue is not None:
            self.dialogue.reset()

    # ---- what is running ----
    def engines_summary(self) -> dict[str, str]:
        """What each stage runs, as loaded; a stage running something other than what the settings ask for says
        "(instead of X: why)". The full reasons are in `notices`."""
        r = self.resolved
        th = "off"
        if self.live and self.settings.talking_head.enabled:
            th = self.live_engine or "live stream"
        elif self.talking_head is not None:
            chain = self.talking_head
            engine = getattr(chain, "last_engine", None) or getattr(chain, "ready_engine", None)
            engine = engine or r.talking_head_engine
            th = {
                "wav2lip": f"Wav2Lip {r.quality_mode} on {r.talking_head_device.upper()}",
                "wav2lip_gan": f"Wav2Lip-GAN {r.quality_mode} on {r.talking_head_device.upper()}",
                "light": "light engine on CPU",
                "static": "still photo",
            }.get(engine, engine)
            if engine != r.talking_head_engine:
                th += f" (instead of {r.talking_head_engine}: unavailable)"
        asr_device = getattr(self.asr, "resolved_device", None) or r.asr_device
        layers = getattr(self.dialogue, "n_gpu_layers", r.dialogue_gpu_layers)
        where = "CPU" if layers == 0 else ("GPU" if layers < 0 else f"GPU ({layers} layers)")
        profile = r.profile
        if r.stepped_down:
            profile += f" (instead of {r.requested_profile}: no CUDA GPU)"
        return {
            "profile": profile,
            "asr": self._instead("asr", f"{getattr(self.asr, 'name', r.asr_model)} on {asr_device}"),
            "llm": self._instead("dialogue", f"{getattr(self.dialogue, 'name', r.dialogue_model)} on {where}"),
            "tts": self._tts_in_use(),
            "talking_head": th,
        }

    def _instead(self, stage: str, text: str) -> str:
        substituted = self._substituted.get(stage)
        return f"{text} (instead of {substituted[0]}: {substituted[1]})" if substituted else text

    def _tts_in_use(self) -> str:
        name = str(getattr(self.tts, "name", self.resolved.tts_engine))
        preferred = getattr(self.tts, "preferred", name)
        steps = getattr(self.tts, "fallbacks", [])
        if name != preferred and steps:
            return f"{name} (instead of {preferred}: it failed to {steps[0].stage})"
        return name

    def avatar_face_preview(self, image_path: str | Path) -> tuple[np.ndarray, Any]:
        """The face crop of an avatar candidate and its box; raises NoFaceError for an image without a face."""
        from assistant.talking_head.face import FaceCache

        image, box = FaceCache(self.settings.cache_dir / "faces").load(image_path)
        return image[box.y1 : box.y2, box.x1 : box.x2].copy(), box

    # ---- settings changes ----
    def reconfigure(self, settings: Settings, progress: Progress | None = None) -> list[str]:
        """Apply new settings without a restart: rebuild only the stages whose inputs changed. Returns their names."""
        old = self._keys
        self.settings = settings
        self.resolved = self._resolve(settings)
        self.conversation_log = ConversationLog(settings.data_dir / "conversations")
        new = _keys(settings, self.resolved)
        changed = [name for name in ("asr", "dialogue", "tts", "talking_head") if old is None or
                   getattr(old, name) != getattr(new, name)]  # fmt: skip
        for name in changed:
            self._close_stage(name)
        if changed:
            log.info("Settings changed: reloading %s", ", ".join(changed))
            self.load(progress)
        else:
            self._keys = new
        return changed

    def _close_stage(self, name: str) -> None:
        stage = getattr(self, name)
        setattr(self, name, None)
        self._notices.pop(name, None)  # a rebuilt stage tells its own substitutions again
        self._substituted.pop(name, None)
        closer = getattr(stage, "close", None)
        if closer is not None:
            try:
                closer()
            except Exception as e:  # noqa: BLE001 - closing one stage must not stop the others
                log.warning("closing %s failed: %s", name, e)

    def close(self) -> None:
        """Stop the reply in flight and free every model (VRAM included)."""
        self.cancel_current("closing")
        for name in ("talking_head", "tts", "dialogue", "asr"):
            self._close_stage(name)
        self.runner = None
