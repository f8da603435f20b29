"""The TTS fallback chain: coqui -> piper -> espeak. An engine that cannot load (missing model, import error,
corrupt file) is dropped, the next one speaks, and the reason is logged, kept in `fallbacks` and written into
`SpeechAudio.fallback_reason`; a dropped engine is tried again after `retry_load_after_s` (a model downloaded
meanwhile, memory freed), unless its package is missing. An engine that fails while speaking one sentence is
not dropped: the next engine speaks that sentence and the next sentence starts from the best engine again; only
FAILURES_IN_A_ROW_TO_DROP failures in a row drop it like a load failure (and it is retried the same way). A
speech file that cannot be written (read-only or full folder) is nobody's fault but the folder's: no engine is
tried further and TTSOutputError names the folder and the fix.

Needs only the engine modules, which import their heavy packages (torch, Coqui, onnxruntime) inside
`load()`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.errors import Cancelled, ConfigError, TTSError
from assistant.events import SpeechAudio
from assistant.storage import StorageError, check_writable
from assistant.tts.base import (
    ENGINE_NAMES,
    EmptyTextError,
    TTSEngine,
    TTSImportError,
    TTSOptions,
    TTSOutputError,
    check_text,
)

if TYPE_CHECKING:
    from assistant.config import Settings
    from assistant.profile import ResolvedSettings

log = logging.getLogger(__name__)

EngineFactory = Callable[[TTSOptions], TTSEngine]
FallbackCallback = Callable[[str, str], None]  # (engine that failed, reason)
RETRY_LOAD_AFTER_S = 60.0  # a model that failed to load is tried again this long after (about every few turns)
FAILURES_IN_A_ROW_TO_DROP = 3  # sentences one engine failed in a row before it is treated as broken (a CUDA fault)


@dataclass(frozen=True)
class FallbackStep:
    """One step down the chain: which engine was dropped, when, and why."""

    engine: str
    stage: str  # "load" or "synthesize"
    reason: str

    def __str__(self) -> str:
        return f"{self.engine} failed to {self.stage}: {self.reason}"


def _coqui(options: TTSOptions) -> TTSEngine:
    from assistant.tts.coqui import CoquiEngine

    return CoquiEngine(
        options.coqui_model,
        models_dir=options.models_dir,
        config_path=options.coqui_config_path,
        device=options.device,
        speaker=options.speaker,
        language=options.language,
        speaker_wav=options.speaker_wav,
    )


def _piper(options: TTSOptions) -> TTSEngine:
    from assistant.tts.piper import PiperEngine

    return PiperEngine(
        options.piper_voice,
        models_dir=options.models_dir,
        device=options.device,
        length_scale=options.piper_length_scale,
    )


def _espeak(options: TTSOptions) -> TTSEngine:
    from assistant.tts.espeak import EspeakEngine

    return EspeakEngine(options.espeak_voice, options.espeak_rate_wpm)


DEFAULT_FACTORIES: Mapping[str, EngineFactory] = {"coqui": _coqui, "piper": _piper, "espeak": _espeak}


def options_from_settings(settings: Settings, resolved: ResolvedSettings) -> TTSOptions:
    """The engines' options from the config and the resolved profile (the app, the livestream, presentations)."""
    cfg = settings.tts
    return TTSOptions(
        models_dir=settings.models_dir, coqui_model=resolved.coqui_model, speaker=cfg.speaker,
        language=cfg.language, device=resolved.tts_device, piper_voice=cfg.piper_voice,
        espeak_voice=cfg.espeak_voice,
    )  # fmt: skip


def chain_for(preferred: str) -> tuple[str, ...]:
    """Engine names tried in order: the preferred one and every one after it; "auto" = the offline default."""
    name = "piper" if preferred == "auto" else preferred
    if name not in ENGINE_NAMES:
        raise ConfigError(
            f"Unknown TTS engine {preferred!r} (tts.engine); use one of auto, {', '.join(ENGINE_NAMES)}"
        )
    return ENGINE_NAMES[ENGINE_NAMES.index(name) :]


def _reason(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text if isinstance(error, TTSError) else f"{type(error).__name__}: {text}"


class FallbackTTS:
    """A TTSEngine made of several: speaks with the first that works, steps down on failure, reports why.

    `name` is the engine speaking now. An engine that failed to load is dropped (and closed) and tried again
    once `retry_load_after_s` has passed; one that failed to speak a sentence stays, so a moment without a
    writable folder or a sentence one voice cannot pronounce never mutes the session.
    """

    def __init__(
        self,
        engines: Sequence[TTSEngine],
        *,
        on_fallback: FallbackCallback | None = None,
        preferred: str | None = None,
        failed: Sequence[FallbackStep] = (),
        retry_load_after_s: float = RETRY_LOAD_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`failed`: engines of the chain that could not even be built (reported like load failures)."""
        if not engines and not failed:
            raise ValueError("FallbackTTS needs at least one engine")
        self.preferred = preferred or (failed[0].engine if failed else engines[0].name)
        self._engines = list(engines)  # still candidates, best first
        self._rank = {id(e): i for i, e in enumerate(engines)}
        self._on_fallback = on_fallback
        self._fallbacks: list[FallbackStep] = list(failed)
        # Engines dropped at load: (when, engine, the step that reports it), retried after retry_load_after_s.
        self._dropped: list[tuple[float, TTSEngine, FallbackStep]] = []
        self._failures_in_a_row: dict[int, int] = {}  # id(engine) -> sentences it failed since it last spoke
        self.retry_load_after_s = retry_load_after_s
        self._clock = clock
        self._lock = threading.RLock()

    @property
    def name(self) -> str:
        return self._engines[0].name if self._engines else "none"

    @property
    def engine(self) -> TTSEngine:
        """The engine speaking now."""
        if not self._engines:
            raise TTSError(self._nothing_left_message())
        return self._engines[0]

    @property
    def fallbacks(self) -> list[FallbackStep]:
        """Every load failure still in effect, oldest first."""
        return list(self._fallbacks)

    @property
    def fallback_reason(self) -> str | None:
        """One line saying why the preferred engine is not the one speaking; None when it is."""
        if not self._fallbacks:
            return None
        return "; ".join(str(step) for step in self._fallbacks)

    def _report(self, step: FallbackStep, nxt: str | None) -> None:
        log.warning("TTS %s%s", step, f"; falling back to {nxt}" if nxt else "; no engine left")
        if self._on_fallback is not None:
            self._on_fallback(step.engine, str(step))

    def _drop(self, engine: TTSEngine, error: BaseException, stage: str = "load") -> None:
        """Out of the chain until retry_load_after_s has passed (for good if its package is not installed)."""
        step = FallbackStep(engine.name, stage, _reason(error))
        self._failures_in_a_row.pop(id(engine), None)
        self._fallbacks.append(step)
        self._engines.remove(engine)
        try:
            engine.close()
        except Exception:  # closing a half-loaded engine must not hide why it was dropped
            log.debug("closing %s after its failure raised", engine.name, exc_info=True)
        if not isinstance(error, TTSImportError):  # a missing package does not appear mid-session
            self._dropped.append((self._clock(), engine, step))
        self._report(step, self._engines[0].name if self._engines else None)

    def _retry_dropped(self) -> None:
        """Put engines whose load failed long enough ago back in their place; load() tries them again."""
        now = self._clock()
        due = [d for d in self._dropped if now - d[0] >= self.retry_load_after_s]
        for entry in due:
            _, engine, step = entry
            self._dropped.remove(entry)
            if step in self._fallbacks:
                self._fallbacks.remove(step)
            self._engines.append(engine)
            log.info("TTS: trying %s again (it failed to load %.0f s ago)", engine.name, now - entry[0])
        if due:
            self._engines.sort(key=lambda e: self._rank.get(id(e), len(self._rank)))

    def _nothing_left_message(self, steps: Sequence[FallbackStep] = ()) -> str:
        lines = "\n  ".join(str(s) for s in [*self._fallbacks, *steps]) or "no engine was configured"
        return (
            f"No TTS engine could speak:\n  {lines}\n"
            "Install espeak-ng (sudo apt-get install espeak-ng) as a last resort"
        )

    def _load_engine(self, engine: TTSEngine) -> bool:
        try:
            engine.load()
            return True
        except (Cancelled, KeyboardInterrupt):
            raise
        except Exception as e:
            self._drop(engine, e)
            return False

    def load(self) -> None:
        """Load the first engine that loads; TTSError listing every reason when none does."""
        with self._lock:
            self._retry_dropped()
            while self._engines:
                if self._load_engine(self._engines[0]):
                    return
            raise TTSError(self._nothing_left_message())

    def synthesize(self, text: str, out_path: Path) -> SpeechAudio:
        check_text(text)  # empty text is the caller's mistake, not an engine failure: no fallback
        with self._lock:
            self.load()
            failed_now: list[FallbackStep] = []  # engines that could not speak this sentence
            for engine in list(self._engines):
                if not self._load_engine(engine):
                    continue
                try:
                    speech = engine.synthesize(text, out_path)
                except (Cancelled, KeyboardInterrupt, EmptyTextError):
                    raise
                except Exception as e:
                    try:
                        check_writable(Path(out_path).parent)
                    except StorageError as storage:  # the folder, not the engine: the next would fail the same
                        Path(out_path).unlink(missing_ok=True)  # what a full disk let through is no WAV
                        raise TTSOutputError(f"Speech not written: {storage}") from e
                    in_a_row = self._failures_in_a_row.get(id(engine), 0) + 1
                    self._failures_in_a_row[id(engine)] = in_a_row
                    if in_a_row >= FAILURES_IN_A_ROW_TO_DROP:
                        self._drop(engine, e, "synthesize")
                        continue
                    failed_now.append(FallbackStep(engine.name, "synthesize", _reason(e)))
                    later = self._engines[self._engines.index(engine) + 1 :]
                    self._report(failed_now[-1], later[0].name if later else None)
                    continue
                self._failures_in_a_row.pop(id(engine), None)
                reasons = [*self._fallbacks, *failed_now]
                if reasons:
                    speech = dataclasses.replace(speech, fallback_reason="; ".join(str(s) for s in reasons))
                return speech
            raise TTSError(self._nothing_left_message(failed_now))

    def close(self) -> None:
        with self._lock:
            for engine in self._engines:
                engine.close()


def build_tts(
    preferred: str = "auto",
    options: TTSOptions | None = None,
    *,
    factories: Mapping[str, EngineFactory] | None = None,
    on_fallback: FallbackCallback | None = None,
    load: bool = True,
) -> FallbackTTS:
    """The chain from `preferred` ("coqui", "piper", "espeak"; "auto" = piper), loaded unless load=False.

    `factories` replaces how an engine is built (tests pass fakes). Raises ConfigError for an unknown engine
    name and TTSError when no engine of the chain loads.
    """
    options = options or TTSOptions()
    makers = dict(DEFAULT_FACTORIES if factories is None else factories)
    names = chain_for(preferred)
    engines: list[TTSEngine] = []
    failed: list[FallbackStep] = []
    for name in names:
        if name not in makers:
            raise ConfigError(f"No factory for TTS engine {name!r}")
        try:
            engines.append(makers[name](options))
        except Exception as e:  # a bad option for one engine must not take the others down
            failed.append(FallbackStep(name, "load", _reason(e)))
            log.warning("TTS %s", failed[-1])
            if on_fallback is not None:
                on_fallback(name, str(failed[-1]))
    tts = FallbackTTS(engines, on_fallback=on_fallback, preferred=names[0], failed=failed)
    if load:
        tts.load()
    return tts
