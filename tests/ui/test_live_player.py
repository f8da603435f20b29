"""LivePlayer, the embedded VLC player of the session's live stream, on the offscreen platform: it plays a
real LiveStream through a real ffmpeg LiveEncoder pipe (VLC's dummy video output; its audio goes to callbacks
installed on the player, which stand in for the sound card and show what VLC really outputs), keeps one media
for the whole stream, ducks and unducks VLC's own mute, and reports a pipe it cannot read as `failed`.
"""

from __future__ import annotations

import ctypes
import resource
import threading

import numpy as np
import pytest

from assistant.live import LiveStream, StreamSettings
from assistant.video import LiveEncoder
from tests.ui.conftest import TEST_VLC_ARGS
from ui.live_player import LivePlayer

pytestmark = pytest.mark.ui

WAIT_MS = 20_000  # caps on waits for something that must happen; they do not measure anything
SETTINGS = StreamSettings(320, 180, 25.0, 48000)


class FlatRenderer:
    """A grey frame: the renderer is not what these tests are about."""

    name = "flat"
    width, height = SETTINGS.width, SETTINGS.height

    def render(self, pose, opening: float, wide: float) -> np.ndarray:
        return np.full((self.height, self.width, 3), 128, np.uint8)


class AudioOut:
    """VLC's audio output, replaced by callbacks (libvlc's amem): what VLC plays, and the mute it sets."""

    def __init__(self, player: LivePlayer) -> None:
        import vlc

        self.samples = 0
        self.peak = 0  # the loudest sample VLC has output
        self.mutes: list[bool] = []
        self._lock = threading.Lock()

        @vlc.CallbackDecorators.AudioPlayCb
        def play(_opaque, samples, count, _pts):
            data = np.ctypeslib.as_array(ctypes.cast(samples, ctypes.POINTER(ctypes.c_int16)), (count,))
            with self._lock:
                self.samples += count
                self.peak = max(self.peak, int(np.abs(data.astype(np.int32)).max(initial=0)))

        @vlc.CallbackDecorators.AudioSetVolumeCb
        def set_volume(_opaque, _volume, mute):
            with self._lock:
                self.mutes.append(bool(mute))

        self._callbacks = (play, set_volume)  # kept alive as long as VLC may call them
        vlc_player = player._player
        vlc_player.audio_set_callbacks(play, None, None, None, None, None)
        vlc_player.audio_set_volume_callback(set_volume)
        vlc_player.audio_set_format("S16N", SETTINGS.audio_rate_hz, 1)


@pytest.fixture
def live(qtbot):
    """A LivePlayer (offscreen: dummy video output) on a running LiveStream's MPEG-TS pipe."""
    player = LivePlayer(None, TEST_VLC_ARGS, caching_ms=120)
    audio = AudioOut(player)
    s = SETTINGS
    encoder = LiveEncoder([("mpegts", None)], s.width, s.height, s.fps, s.audio_rate_hz)
    stream = LiveStream(FlatRenderer(), SETTINGS)
    stream.add_sink(encoder)
    stream.start()
    try:
        yield player, audio, stream, encoder
    finally:
        stream.stop(close_sinks=True)
        player.release()


def test_plays_the_live_stream_from_a_pipe_with_one_media(qtbot, live):
    player, audio, stream, encoder = live
    # Offscreen there is no window to draw into: VLC decodes with its dummy video output.
    assert not player.embedded and "--vout=vdummy" in player.vlc_args
    assert "--file-caching=120" in player.vlc_args
    failures: list[str] = []
    player.failed.connect(failures.append)
    with qtbot.waitSignal(player.video_ready, timeout=WAIT_MS):
        assert encoder.read_fd is not None
        player.play_fd(encoder.read_fd)
    assert player.showing and player.media_loads == 1
    # The idle stream's audio (silence) flows through VLC's audio output...
    qtbot.waitUntil(lambda: audio.samples > SETTINGS.audio_rate_hz // 2, timeout=WAIT_MS)
    assert audio.peak < 100
    # ...and speech queued into the stream reaches it, on the same media.
    t = np.arange(SETTINGS.audio_rate_hz) / SETTINGS.audio_rate_hz
    stream.say(0.5 * np.sin(2 * np.pi * 440 * t), SETTINGS.audio_rate_hz, key="tone", text="tone")
    qtbot.waitUntil(lambda: audio.peak > 8000, timeout=WAIT_MS)  # 0.5 full scale is ~16000
    # After the tone the stream idles again; it is still the one media, and nothing failed.
    qtbot.waitUntil(lambda: not stream.speaking, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: audio.samples > 3 * SETTINGS.audio_rate_hz, timeout=WAIT_MS)
    assert player.media_loads == 1
    assert failures == [] and encoder.alive


def test_duck_and_unduck_toggle_vlcs_mute(qtbot, live):
    player, audio, _stream, encoder = live
    player.play_fd(encoder.read_fd)
    qtbot.waitUntil(lambda: audio.samples > 0, timeout=WAIT_MS)  # VLC's audio output exists
    player.duck()
    qtbot.waitUntil(lambda: audio.mutes[-1:] == [True], timeout=WAIT_MS)
    player.unduck()
    qtbot.waitUntil(lambda: audio.mutes[-1:] == [False], timeout=WAIT_MS)
    assert player.media_loads == 1


def test_a_pipe_vlc_cannot_read_reports_failed(qtbot):
    player = LivePlayer(None, TEST_VLC_ARGS)
    # No file descriptor can be numbered at or above the process's limit: VLC gets EBADF reading it.
    bad_fd = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        with qtbot.waitSignal(player.failed, timeout=WAIT_MS) as failed:
            player.play_fd(bad_fd)
        assert "live avatar stream" in failed.args[0]
        assert not player.showing and player.media_loads == 1
    finally:
        player.release()
