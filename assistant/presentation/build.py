"""Turn the loaded config (and command-line choices) into a presentation run: options, the voice, the avatar chain.

The voice is `build_tts` (the config's engine, Piper by default); the avatar is the talking-head chain from the
chosen engine down (`default_factories`, as `assistant lipsync` builds it), rendering at the layout's avatar size.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.presentation.narrate import NarrationTiming
from assistant.presentation.present import ChainFactory, PresentOptions, SpeakerFactory
from assistant.presentation.slides import Geometry

if TYPE_CHECKING:
    from assistant.config import Settings
    from assistant.profile import ResolvedSettings


def jobs_dir(settings: Settings) -> Path:
    p = settings.presentation.jobs_dir
    return settings.project_path(p) if p is not None else settings.data_dir / "presentations"


def present_options(
    settings: Settings,
    resolved: ResolvedSettings,
    avatar: Path | None = None,
    layout: str | None = None,
    quality: str | None = None,
    engine: str | None = None,
) -> PresentOptions:
    from assistant.talking_head.options import render_settings_from_config, wav2lip_config

    pres = settings.presentation
    quality = quality or pres.quality_mode or resolved.quality_mode
    rs = render_settings_from_config(settings, quality, "wav2lip")  # the quality mode's frame size and fps
    tts_engine = resolved.tts_engine
    checkpoints, wav2lip_options = wav2lip_config(settings, quality)
    voice = {"coqui": resolved.coqui_model, "piper": settings.tts.piper_voice, "espeak": settings.tts.espeak_voice}
    return PresentOptions(
        avatar=Path(avatar) if avatar else settings.project_path(settings.talking_head.avatar_image),
        width=rs.width, height=rs.height, fps=rs.fps, quality_mode=quality,
        layout=layout or pres.layout, engine=engine or resolved.talking_head_engine,
        voice=f"{tts_engine}:{voice.get(tts_engine, '')}",
        timing=NarrationTiming(
            pause_s=pres.sentence_pause_s, silent_s=pres.silent_slide_s, max_segment_s=pres.max_segment_s
        ),
        title_card_s=pres.title_card_s, crf=pres.crf, preset=pres.preset,
        audio_bitrate=settings.talking_head.output.audio_bitrate,
        blend=wav2lip_options["blend"], half_precision=wav2lip_options["use_half_precision"],
        device=resolved.talking_head_device, checkpoints=tuple((k, str(v)) for k, v in sorted(checkpoints.items())),
    )  # fmt: skip


def speaker_factory(settings: Settings, resolved: ResolvedSettings) -> SpeakerFactory:
    def build() -> Any:
        from assistant.tts.select import build_tts, options_from_settings

        return build_tts(resolved.tts_engine, options_from_settings(settings, resolved))

    return build


def chain_factory(settings: Settings, resolved: ResolvedSettings, options: PresentOptions) -> ChainFactory:
    def build(geo: Geometry, avatar: Path) -> Any:
        from assistant.talking_head.base import RenderSettings
        from assistant.talking_head.chain import TalkingHeadChain, default_factories
        from assistant.talking_head.options import wav2lip_config

        size = dataclasses.replace(
            RenderSettings.for_quality(options.quality_mode, options.fps),
            width=geo.avatar.w, height=geo.avatar.h, audio_bitrate=options.audio_bitrate,
        )  # fmt: skip
        _, wav2lip_options = wav2lip_config(settings, options.quality_mode)
        # The pixel options come from `options` (the slides' keys hold them), the rest from the config
        pixels = {"blend": options.blend, "use_half_precision": options.half_precision, "enhance_face": False}
        factories = default_factories(
            avatar, size, device=options.device, checkpoints=dict(options.checkpoints),
            wav2lip_options={**wav2lip_options, **pixels},  # enhance_face off: a small corner face, no GFPGAN pass
        )  # fmt: skip
        return TalkingHeadChain(options.engine, factories, on_oom="fallback")

    return build
