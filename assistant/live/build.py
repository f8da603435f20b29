"""Build the session's live stream from the settings: its size and rate, and the renderer that keeps up with it.

The renderer follows the resolved talking-head engine: `light` animates the mouth from the speech, `static` keeps it
closed (the face still breathes, blinks and looks around), `wav2lip`/`wav2lip_gan` put the network's mouth on the
same rig (`wav2lip_live.py`). Whatever is chosen is timed on this machine first: the rig with `measure_rate`, Wav2Lip
by generating a second of frames. Wav2Lip below real time buffers each sentence ahead by the measured deficit; under
half real time it steps down to the light engine. A renderer that cannot keep up steps down, with the measured
figure in the notice.

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
from assistant.talking_head.options import render_settings_from_config, wav2lip_config
from assistant.talking_head.face import FaceCache

log = logging.getLogger(__name__)

# Below this share of real time, buffering a sentence ahead would take longer than the sentence lasts.
MIN_WAV2LIP_SHARE = 0.5


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
    avatar = Path(settings.project_path(settings.talking_head.avatar_image))
    image = load_avatar(avatar)  # FileNotFoundError / TalkingHeadError name the file
    box = FaceCache(settings.cache_dir / "faces").raw_box(avatar.read_bytes(), image, f"avatar image {avatar}")
    # The rig draws the mouth for light, and for Wav2Lip whenever the network's frame is not there (or it stepped down).
    renderer = RigRenderer(image, s.width, s.height, face_box=box, talking=wanted != "static")
    rate = measure_rate(renderer)
    if not rate.keeps_up(s.fps) and wanted != "static":
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
    if wanted in ("wav2lip", "wav2lip_gan"):
        wav2lip = _wav2lip_renderer(settings, resolved, wanted, avatar, renderer, s, notices)
        if wav2lip is not None:
            return LiveSetup(s, wav2lip, wanted, rate, notices)  # type: ignore[arg-type]
    return LiveSetup(s, renderer, renderer.name, rate, notices)


def _wav2lip_renderer(settings, resolved, engine_name, avatar, rig, s, notices):
    """Wav2Lip's mouth on the rig, when its weights are there and it is fast enough; else None with a notice."""
    checkpoints, options = wav2lip_config(settings, resolved.quality_mode)
    checkpoint = checkpoints[engine_name]
    if not Path(checkpoint).is_file():
        notices.append(
            f"{engine_name} weights are not downloaded ({checkpoint}); the light engine animates the avatar "
            f"(assistant models download {engine_name.replace('_', '-')})"
        )
        return None
    try:
        from assistant.live.wav2lip_live import Wav2LipLiveRenderer
        from assistant.talking_head.wav2lip_engine import Wav2LipTalkingHead

        engine = Wav2LipTalkingHead(
            avatar, device=resolved.talking_head_device, quality_mode=resolved.quality_mode, model_path=checkpoint,
            resolution=(s.width, s.height), fps=s.fps, **options,
        )  # fmt: skip
        live = Wav2LipLiveRenderer(engine, rig, s.fps)
        fps = live.measure()
    except Exception as e:  # noqa: BLE001 - any failure to build it means the light engine
        notices.append(f"{engine_name} could not start for the live avatar ({e}); the light engine animates it")
        return None
    if fps < MIN_WAV2LIP_SHARE * s.fps:
        live.close()
        notices.append(
            f"{engine_name} makes {fps:.1f} frames/s here, under half of {s.fps:g} fps: a sentence would wait longer "
            "than it lasts; the light engine animates the avatar"
        )
        return None
    if fps < s.fps:
        notices.append(
            f"{engine_name} makes {fps:.1f} frames/s here (below {s.fps:g} fps): each sentence starts once enough "
            "of its frames are ready, so it never stalls"
        )
    log.info("live avatar: %s mouth at %.1f frames/s on %s", engine_name, fps, resolved.talking_head_device)
    return live


def record_path(settings: Settings, override: str | Path | None = None) -> Path | None:
    target = override or settings.live.record
    return Path(target).expanduser() if target else None
