"""What the server prepares once for every browser: the stream size it sends, the renderer each browser copies."""

from __future__ import annotations

from assistant.config import load_settings
from assistant.live.build import LiveSetup
from assistant.live.renderer import RenderRate
from assistant.live.stream import StreamSettings
from assistant.serve.hub import live_settings_for_serve, per_browser_renderer


def test_browsers_get_the_serve_size_and_rate_whatever_the_desktop_stream_uses() -> None:
    settings = load_settings()
    settings.live.fps = 30
    settings.serve.fps = 24
    live = live_settings_for_serve(settings).live
    assert (live.resolution.width, live.resolution.height, live.fps) == (640, 360, 24)
    assert settings.live.fps == 30  # the desktop's own settings are left alone


def test_wav2lip_is_not_copied_per_browser_its_light_rig_animates_them() -> None:
    class Rig:
        name = "light"

    class Wav2LipLive:
        rig = Rig()
        closed = False

        def close(self) -> None:
            self.closed = True

    wav2lip = Wav2LipLive()
    setup = LiveSetup(StreamSettings(64, 48), wav2lip, "wav2lip", RenderRate(5, 1.0, 1.0))  # type: ignore[arg-type]
    shared = per_browser_renderer(setup)
    assert shared.renderer is Wav2LipLive.rig and shared.engine == "light" and wav2lip.closed
    assert "not shared between browsers" in shared.notices[-1]
