"""The last-resort talking head: the still avatar photo for as long as the speech lasts, audio muxed in.

It needs no face and no weights, so it works for any image; it is what the chain falls back to when everything
else failed. Needs OpenCV and ffmpeg (through `assistant.video`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from assistant.events import AvatarVideo
from assistant.talking_head.base import RenderSettings, fit_frame, load_avatar, video_from_writer
from assistant.video import FrameWriter


class StaticTalkingHead:
    """A video of the unchanging photo. Identical frames cost the encoder almost nothing."""

    name = "static"

    def __init__(self, avatar_image: str | Path | np.ndarray, settings: RenderSettings | None = None) -> None:
        self.settings = settings or RenderSettings()
        photo = avatar_image if isinstance(avatar_image, np.ndarray) else load_avatar(avatar_image)
        self.frame, self.placement = fit_frame(photo, self.settings.width, self.settings.height)

    def render(self, audio_path: Path, output_path: Path) -> AvatarVideo:
        start = time.monotonic()
        s = self.settings
        with FrameWriter(
            output_path, s.width, s.height, s.fps, audio_path=audio_path,
            audio_bitrate=s.audio_bitrate, crf=s.crf, preset=s.preset,
        ) as writer:  # fmt: skip
            for _ in range(writer.target_frames or 1):  # as many frames as the audio lasts
                writer.write(self.frame)
        return video_from_writer(writer, Path(output_path), self.name, s, start)

    def close(self) -> None:
        """Nothing to free."""
