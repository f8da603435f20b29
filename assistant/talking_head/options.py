"""The talking head's options, read from the config: frame size and fps per quality mode and engine, the Wav2Lip
checkpoints and the engine's keyword options. Config only: nothing here builds or times an engine, so the reply
files, the live stream, presentations, the CLI and the CPU's Wav2Lip measurement all read the same values.

Needs nothing but the config and `RenderSettings`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from assistant.config import Settings
from assistant.talking_head.base import RenderSettings


def render_settings_from_config(settings: Settings, quality_mode: str, engine: str) -> RenderSettings:
    """Frame size and fps from the config: Wav2Lip uses the quality mode's profile; the light and static engines use
    `talking_head.light` in standard mode and the high profile's size and fps in high mode."""
    th = settings.talking_head
    if engine in ("light", "static") and quality_mode == "standard":
        res, fps = th.light.resolution, th.light.fps
    else:
        profile = th.high if quality_mode == "high" else th.standard
        res, fps = profile.resolution, profile.fps
    base = RenderSettings.for_quality(quality_mode)
    return dataclasses.replace(
        base, width=res.width, height=res.height, fps=float(fps), audio_bitrate=th.output.audio_bitrate
    )


def model_file_path(settings: Settings, value: str | Path) -> Path:
    """A weights file named in the config: one under `models/` (as the defaults are) lives in `paths.models_dir`,
    where `assistant models download` puts it and `models list` looks; any other path is taken as given."""
    p = Path(value).expanduser()
    if not p.is_absolute() and p.parts[:1] == ("models",):
        return settings.models_dir.joinpath(*p.parts[1:])
    return settings.project_path(p)


def wav2lip_config(settings: Settings, quality_mode: str) -> tuple[dict[str, Path], dict[str, Any]]:
    """The Wav2Lip checkpoints by engine name, and the engine's keyword options for a quality mode, from the config
    (the reply files, the live stream and presentations all build Wav2Lip from these)."""
    th = settings.talking_head
    profile = th.high if quality_mode == "high" else th.standard
    checkpoints = {
        "wav2lip": model_file_path(settings, th.models.wav2lip),
        "wav2lip_gan": model_file_path(settings, th.models.wav2lip_gan),
    }
    options = {
        "face_det_batch_size": profile.face_det_batch_size,
        "wav2lip_batch_size": profile.wav2lip_batch_size,
        "use_half_precision": th.use_half_precision,
        "blend": th.blend,
        "enhance_face": profile.enhance_face,
        "cache_dir": settings.cache_dir / "faces",
        "gfpgan_model_path": model_file_path(settings, th.models.gfpgan),
    }
    return checkpoints, options
