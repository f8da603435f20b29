"""Build the session's live stream from the settings: its size and rate, and the renderer that keeps up with it.

The renderer follows the resolved talking-head engine: `light` animates the mouth from the speech, `static` keeps it
closed (the face still breathes, blinks and looks around). Wav2Lip does not drive the live stream yet: it renders
whole files slower than real time on a CPU (~0.65x at 720p), so the stream steps down to the light engine and says
so. Whatever is chosen is timed on this machine first (`measure_rate`); a renderer that cannot keep up with the
frame clock steps down to the next one, with the measured figure in the notice.

Needs the avatar photo (face detection through the face cache).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from assistant.config import Settings
from assistant.live.renderer import RenderRate, RigRenderer, measure_rate
from assistant.live.stream import StreamSettings
from assistant.profile import ResolvedSettings
from assistant.talking_head.base import load_avatar
from assistant.talking_head.chain import render_settings_from_config
from assistant.talking_head.face import FaceCache

log = logging.getLogger(__name__)


@dataclass
class LiveSetup:
    settings: StreamSettings
    renderer: RigRenderer
    engine: str  # what draws the stream: "light" or "static"
    rate: RenderRate
    notices: list[str] = field(default_factory=list)


def stream_settings(settings: Settings, resolved: ResolvedSettings) -> StreamSettings:
    live = settings.live
    base = render_settings_from_config(settings, resolved.quality_mode, "light")
    width = live.resolution.width if live.resolution else base.width
    height = live.resolution.height if live.resolution else base.height
    fps = float(live.fps) if live.fps else base.fps
    return StreamSettings(
        width - width % 2, height - height % 2, fps, live.audio_rate_hz, fade_ms=float(live.fade_ms)
    )


def build_live(settings: Settings, resolved: ResolvedSettings) -> LiveSetup:
    """The stream settings and a renderer measured to keep up; raises NoFaceError for a photo without a face."""
    s = stream_settings(settings, resolved)
    notices: list[str] = []
    wanted = resolved.talking_head_engine if settings.talking_head.enabled else "static"
    if wanted in ("wav2lip", "wav2lip_gan"):
        notices.append(
            f"{wanted} does not drive the live avatar yet (it renders slower than real time on a CPU); "
            "the light engine animates it"
        )
        wanted = "light"
    avatar = Path(settings.project_path(settings.talking_head.avatar_image))
    image = load_avatar(avatar)  # FileNotFoundError / TalkingHeadError name the file
    box = FaceCache(settings.cache_dir / "faces").raw_box(avatar.read_bytes(), image, f"avatar image {avatar}")
    renderer = RigRenderer(image, s.width, s.height, face_box=box, talking=wanted == "light")
    rate = measure_rate(renderer)
    if not rate.keeps_up(s.fps) and wanted == "light":
        notices.append(
            f"the light engine needs {rate.ms_per_frame_p90:.0f} ms a frame here, too slow for {s.fps:g} fps; "
            "the avatar keeps its mouth closed (static)"
        )
        renderer = RigRenderer(image, s.width, s.height, face_box=box, talking=False)
        rate = measure_rate(renderer)
    log.info(
        "live avatar: %s engine, %dx%d at %g fps, %.1f ms a frame (p90 %.1f)",
        renderer.name, s.width, s.height, s.fps, rate.ms_per_frame_median, rate.ms_per_frame_p90,
    )  # fmt: skip
    return LiveSetup(s, renderer, renderer.name, rate, notices)


def record_path(settings: Settings, override: str | Path | None = None) -> Path | None:
    target = override or settings.live.record
    return Path(target).expanduser() if target else None
