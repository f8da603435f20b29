"""How fast Wav2Lip renders on this CPU: the measurement `assistant.profile.resolve` is given (as its
`cpu_lipsync_probe`) to decide whether a named medium/high profile keeps Wav2Lip without a GPU. Loads the
checkpoint and renders a few seconds of video, so it runs only when its answer can change the choice, once per
process for a checkpoint file and options.

Needs torch (imported when a checkpoint is on disk and timed).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from assistant.config import Settings
from assistant.errors import AssistantError
from assistant.profile import CPU_LIPSYNC_QUALITY
from assistant.talking_head.options import wav2lip_config

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _measured_realtime(
    checkpoint: Path, mtime_ns: int, avatar: Path, options: tuple[tuple[str, object], ...]
) -> float | None:
    from assistant.talking_head.wav2lip_engine import Wav2LipTalkingHead

    try:
        engine = Wav2LipTalkingHead(
            avatar, device="cpu", quality_mode=CPU_LIPSYNC_QUALITY, model_path=checkpoint, **dict(options)
        )
        try:
            return engine.measure_realtime()
        finally:
            engine.close()
    except (AssistantError, OSError, RuntimeError, ValueError) as e:  # no face, broken file, no torch...
        log.warning("cannot measure Wav2Lip on this CPU (%s); the light engine stands in", e)
        return None


def measure_cpu_lipsync(settings: Settings, engine: str) -> float | None:
    """Seconds of `engine` (wav2lip / wav2lip_gan) video rendered per second on this CPU at 720p25, end to end,
    with the config's Wav2Lip options; None when its checkpoint is not on disk (nothing is loaded then) or it
    cannot run. Measured once per process for a checkpoint file and options."""
    checkpoints, options = wav2lip_config(settings, CPU_LIPSYNC_QUALITY)
    checkpoint = checkpoints[engine]
    if not checkpoint.is_file():
        return None
    avatar = settings.project_path(settings.talking_head.avatar_image)
    key = tuple(sorted(options.items()))
    rate = _measured_realtime(checkpoint, checkpoint.stat().st_mtime_ns, avatar, key)
    if rate is not None:
        log.info("%s on this CPU at 720p25: %.2fx real time", engine, rate)
    return rate
