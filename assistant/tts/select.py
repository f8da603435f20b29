"""The TTS fallback chain: coqui -> piper -> espeak. An engine that cannot load (missing model, import error,
corrupt file) or that fails while speaking is dropped, the next one speaks, and the reason is logged, kept
in `fallbacks` and written into `SpeechAudio.fallback_reason`.

Needs only the engine modules, which import their heavy packages (torch, Coqui, onnxruntime) inside
`load()`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import Cancelled, ConfigError, TTSError
from assistant.events import SpeechAudio
from assistant.tts.base import ENGINE_NAMES, EmptyTextError, TTSEngine, TTSOptions, check_text

log = logging.getLogger(__name__)

EngineFactory = Callable[[TTSOptions], TTSEngine]
FallbackCallback = Callable[[str, str], None]  # (engine that failed, reason)


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

    `name` is the engine speaking now. A dropped engine stays dropped (and closed) for the life of this
    object, so a model that broke is not retried on every sentence.
    """

    def __init__(
        self,
        engines: Sequence[TTSEngine],
        *,
        on_fallback: FallbackCallback | None = None,
        preferred: str | None = None,
        failed: Sequence[FallbackStep] = (),
    ) -> None:
        """`failed`: engines of the chain that could not even be built (reported like load failures)."""
        if not engines and not failed:
            raise ValueError("FallbackTTS needs at least one engine")
        self.preferred = preferred or (failed[0].engine if failed else engines[0].name)
        self._engines = list(engines)  # still candidates, best first
        self._on_fallback = on_fallback
        self._fallbacks: list[FallbackStep] = list(failed)
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
        """Every step down so far, oldest first."""
        return list(self._fallbacks)

    @property
    def fallback_reason(self) -> str | None:
        """One line saying why the preferred engine is not the one speaking; None when it is."""
        if not self._fallbacks:
            return None
        return "; ".join(str(step) for step in self._fallbacks)

    def _drop(self, engine: TTSEngine, stage: str, error: BaseException) -> None:
        step = FallbackStep(engine.name, stage, _reason(error))
        self._fallbacks.append(step)
        self._engines.remove(engine)
        nxt = self._engines[0].name if self._engines else None
        log.warning("TTS %s%s", step, f"; falling back to {nxt}" if nxt else "; no engine left")
        try:
            engine.close()
        except Exception:  # closing a half-loaded engine must not hide why it was dropped
            log.debug("closing %s after its failure raised", engine.name, exc_info=True)
        if self._on_fallback is not None:
            self._on_fallback(step.engine, str(step))

    def _nothing_left_message(self) -> str:
        lines = "\n  ".join(str(s) for s in self._fallbacks) or "no engine was configured"
        return (
            f"No TTS engine could speak:\n  {lines}\n"
            "Install espeak-ng (sudo apt-get install espeak-ng) as a last resort"
        )

    def load(self) -> None:
        """Load the first engine that loads; TTSError listing every reason when none does."""
        with self._lock:
            while self._engines:
                engine = self._engines[0]
                try:
                    engine.load()
                    return
                except (Cancelled, KeyboardInterrupt):
                    raise
                except Exception as e:
                    self._drop(engine, "load", e)
            raise TTSError(self._nothing_left_message())

    def synthesize(self, text: str, out_path: Path) -> SpeechAudio:
        check_text(text)  # empty text is the caller's mistake, not an engine failure: no fallback
        with self._lock:
            while True:
                self.load()
                engine = self._engines[0]
                try:
                    speech = engine.synthesize(text, out_path)
                except (Cancelled, KeyboardInterrupt, EmptyTextError):
                    raise
                except Exception as e:
                    self._drop(engine, "synthesize", e)
                    continue
                if self._fallbacks:
                    speech = dataclasses.replace(speech, fallback_reason=self.fallback_reason)
                return speech

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
