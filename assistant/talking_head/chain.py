"""The engine fallback chain: wav2lip_gan -> wav2lip -> light -> static, starting at the configured engine.

An engine is built lazily the first time it is needed and kept for later turns (no per-turn model reloads). When it
cannot be built (missing weights: CheckpointError, no face, torch absent, no CUDA) it is remembered as unavailable
and skipped from then on; when a render fails, that turn goes one step down. Every step down is logged and
reported in `AvatarVideo.fallback_reasons` as "from -> to: why". A VideoOutOfMemoryError propagates when
`on_oom="raise"` (the pipeline then plays the reply as audio only) or steps down to the CPU engines with
`on_oom="fallback"`. Cancelled always propagates.

Engines come from a mapping name -> factory (a zero-argument callable), so tests inject fakes;
`default_factories` builds the real ones. Needs nothing heavy itself: torch is imported only by the Wav2Lip factory.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from assistant.cancel import CancelToken
from assistant.errors import Cancelled, TalkingHeadError, VideoOutOfMemoryError
from assistant.events import AvatarVideo
from assistant.storage import StorageError
from assistant.talking_head.base import ENGINE_NAMES, RenderSettings, TalkingHeadEngine
from assistant.talking_head.options import render_settings_from_config, wav2lip_config

if TYPE_CHECKING:
    from assistant.config import Settings
    from assistant.profile import ResolvedSettings

log = logging.getLogger(__name__)

EngineFactory = Callable[[], TalkingHeadEngine]
OnOOM = Literal["raise", "fallback"]


def _why(e: BaseException) -> str:
    text = str(e).strip() or "no message"
    return f"{type(e).__name__}: {text}"


class TalkingHeadChain:
    """Renders with the best engine that works; itself a TalkingHeadEngine (`name` is the configured engine)."""

    def __init__(
        self,
        engine: str,
        factories: Mapping[str, EngineFactory],
        on_oom: OnOOM = "raise",
        order: tuple[str, ...] = ENGINE_NAMES,
    ) -> None:
        if engine not in order:
            raise ValueError(f"Unknown talking-head engine {engine!r}; use one of {', '.join(order)}")
        if on_oom not in ("raise", "fallback"):
            raise ValueError(f"on_oom must be 'raise' or 'fallback', got {on_oom!r}")
        self.name = engine
        self.on_oom = on_oom
        self.steps = tuple(n for n in order[order.index(engine) :] if n in factories)
        if not self.steps:
            raise ValueError(f"No factory for {engine!r} or any engine after it in {order}")
        self._factories = dict(factories)
        self._engines: dict[str, TalkingHeadEngine] = {}
        self._unavailable: dict[str, str] = {}  # engine -> why it could not be built
        self._lock = threading.Lock()  # one render at a time; engines are not re-entrant
        self.last_engine: str | None = None

    @property
    def unavailable(self) -> dict[str, str]:
        """Engines that could not be built, with the reason (shown by doctor/UI)."""
        return dict(self._unavailable)

    def _engine(self, name: str) -> TalkingHeadEngine:
        engine = self._engines.get(name)
        if engine is None:
            start = time.monotonic()
            engine = self._factories[name]()
            log.info("Talking-head engine %s ready in %.2f s", name, time.monotonic() - start)
            self._engines[name] = engine
        return engine

    def prepare(self) -> list[str]:
        """Build the first engine of the chain that can be built, now rather than on the first reply (models load
        once and stay warm). Returns one line per engine skipped on the way, with why."""
        skipped: list[str] = []
        with self._lock:
            for name in self.steps:
                if name in self._unavailable:
                    skipped.append(f"{name} {self._unavailable[name]}")
                    continue
                try:
                    self._engine(name)
                    return skipped
                except (Cancelled, KeyboardInterrupt):
                    raise
                except Exception as e:  # noqa: BLE001 - any build failure means "use the next engine"
                    self._unavailable[name] = f"unavailable ({_why(e)})"
                    log.warning("Talking-head engine %s cannot be used: %s", name, _why(e))
                    skipped.append(f"{name} {self._unavailable[name]}")
        return skipped

    @property
    def ready_engine(self) -> str | None:
        """The engine the next render will try first (the first one built and not known to be broken)."""
        for name in self.steps:
            if name in self._engines:
                return name
        return None

    def render(self, audio_path: Path, output_path: Path, cancel: CancelToken | None = None) -> AvatarVideo:
        """Render with the first engine that succeeds; raises TalkingHeadError when none does."""
        start = time.monotonic()
        failures: list[tuple[str, str]] = []  # (engine, why) for each step down
        with self._lock:
            for name in self.steps:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                if name in self._unavailable:
                    failures.append((name, self._unavailable[name]))
                    continue
                try:
                    engine = self._engine(name)
                except (Cancelled, KeyboardInterrupt):
                    raise
                except Exception as e:  # noqa: BLE001 - any build failure means "use the next engine"
                    self._unavailable[name] = f"unavailable ({_why(e)})"
                    log.warning("Talking-head engine %s cannot be used: %s", name, _why(e))
                    failures.append((name, self._unavailable[name]))
                    continue
                try:
                    video = engine.render(Path(audio_path), Path(output_path))
                except VideoOutOfMemoryError as e:
                    if self.on_oom == "raise":
                        raise
                    log.warning("Talking-head engine %s ran out of memory: %s", name, e)
                    failures.append((name, f"out of memory ({_why(e)})"))
                    continue
                except (Cancelled, KeyboardInterrupt, StorageError):
                    raise  # a full or read-only disk: the next engine would write to the same place
                except Exception as e:
                    log.warning("Talking-head engine %s failed: %s", name, _why(e), exc_info=True)
                    failures.append((name, f"failed ({_why(e)})"))
                    continue
                self.last_engine = name
                reasons = tuple(
                    f"{failed} -> {failures[i + 1][0] if i + 1 < len(failures) else name}: {why}"
                    for i, (failed, why) in enumerate(failures)
                )
                for reason in reasons:
                    log.info("Talking-head fallback: %s", reason)
                return dataclasses.replace(
                    video,
                    engine=name,
                    fallback_reasons=reasons + tuple(video.fallback_reasons),
                    elapsed_s=time.monotonic() - start,
                )
        summary = "; ".join(f"{n}: {why}" for n, why in failures)
        raise TalkingHeadError(f"No talking-head engine could render {audio_path}: {summary}")

    def close(self) -> None:
        """Close every engine that was built (frees model memory)."""
        with self._lock:
            for name, engine in self._engines.items():
                closer = getattr(engine, "close", None) or getattr(engine, "cleanup", None)
                try:
                    if closer is not None:
                        closer()
                except Exception as e:  # noqa: BLE001 - closing must not hide the others
                    log.warning("Closing talking-head engine %s failed: %s", name, e)
            self._engines.clear()


def default_factories(
    avatar_image: str | Path,
    settings: RenderSettings,
    device: str = "cpu",
    checkpoints: Mapping[str, str | Path] | None = None,
    wav2lip_options: Mapping[str, object] | None = None,
    light_settings: RenderSettings | None = None,
) -> dict[str, EngineFactory]:
    """Factories for the four real engines on one avatar.

    `settings` gives the Wav2Lip frame size, fps and quality mode; `light_settings` (default: `settings`) those of the
    light and static engines. `checkpoints` maps "wav2lip"/"wav2lip_gan" to weight files; `wav2lip_options` are
    passed to Wav2LipTalkingHead (batch sizes, blend, use_half_precision, cache_dir, ...).
    """
    avatar = Path(avatar_image)
    checkpoints = dict(checkpoints or {})
    options = dict(wav2lip_options or {})
    cpu_settings = light_settings or settings

    def wav2lip(name: str) -> EngineFactory:
        def build() -> TalkingHeadEngine:
            from assistant.talking_head.wav2lip_engine import Wav2LipTalkingHead  # torch: only when needed

            # The chain reports `name` (the checkpoint it runs) as the engine, whatever the quality mode.
            return Wav2LipTalkingHead(  # type: ignore[return-value]
                avatar, device=device, quality_mode=settings.quality_mode,  # type: ignore[arg-type]
                model_path=checkpoints.get(name), resolution=(settings.width, settings.height),
                fps=settings.fps, audio_bitrate=settings.audio_bitrate, **options,  # type: ignore[arg-type]
            )  # fmt: skip

        return build

    def light() -> TalkingHeadEngine:
        from assistant.talking_head.light import LightTalkingHead

        return LightTalkingHead(avatar, cpu_settings)

    def static() -> TalkingHeadEngine:
        from assistant.talking_head.static import StaticTalkingHead

        return StaticTalkingHead(avatar, cpu_settings)

    return {
        "wav2lip_gan": wav2lip("wav2lip_gan"),
        "wav2lip": wav2lip("wav2lip"),
        "light": light,
        "static": static,
    }


def build_chain(settings: Settings, resolved: ResolvedSettings, on_oom: OnOOM = "raise") -> TalkingHeadChain:
    """The app's chain from the loaded config and the resolved gpu_profile choices."""
    quality = resolved.quality_mode
    checkpoints, wav2lip_options = wav2lip_config(settings, quality)
    factories = default_factories(
        settings.project_path(settings.talking_head.avatar_image),
        render_settings_from_config(settings, quality, "wav2lip"),
        device=resolved.talking_head_device,
        checkpoints=checkpoints,
        wav2lip_options=wav2lip_options,
        light_settings=render_settings_from_config(settings, quality, "light"),
    )
    return TalkingHeadChain(resolved.talking_head_engine, factories, on_oom=on_oom)
