"""SegmentPlayer's queue (with a recording backend) and the real VLC backend playing files back to back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from assistant.events import AvatarVideo, SegmentReady, SpeechAudio
from tests.ui.conftest import RecordingBackend
from ui.player import SegmentPlayer, VlcBackend

pytestmark = pytest.mark.ui


def segment(
    media: dict[str, Path], index: int, video: bool = True, turn_id: int = 1, reason: str | None = None
):
    speech = SpeechAudio(media["wav"], 16000, 0.3, "fake-tts", f"sentence {index}")
    avatar = AvatarVideo(media["mp4"], "light", 10, 25.0, 160, 120, 0.4, 0.01) if video else None
    return SegmentReady(turn_id, time.monotonic(), index, speech, avatar, None if video else reason)


def test_segments_play_in_order_one_after_another(qtbot, sample_media):
    backend = RecordingBackend(play_ms=50)
    player = SegmentPlayer(backend)
    player.enqueue(segment(sample_media, 0))
    assert backend.calls == [(sample_media["mp4"], True)]  # the first one starts at once
    player.enqueue(segment(sample_media, 1, video=False, reason="video ran out of memory"))
    player.enqueue(segment(sample_media, 2))
    assert len(backend.calls) == 1 and player.pending == 2  # the others wait for the end of the first
    with qtbot.waitSignal(player.idle, timeout=5_000):
        pass
    assert backend.calls == [
        (sample_media["mp4"], True),
        (sample_media["wav"], False),
        (sample_media["mp4"], True),
    ]
    assert [i for _t, i, _p in player.played] == [0, 1, 2]


def test_audio_only_segment_plays_the_wav_and_says_why(qtbot, sample_media):
    backend = RecordingBackend()
    player = SegmentPlayer(backend)
    with qtbot.waitSignal(player.audio_only, timeout=2_000) as blocker:
        player.enqueue(segment(sample_media, 0, video=False, reason="Video ran out of memory"))
    assert blocker.args[1] == "Video ran out of memory"
    assert backend.calls == [(sample_media["wav"], False)]


def test_a_video_that_will_not_play_falls_back_to_its_audio(qtbot, sample_media):
    backend = RecordingBackend(fail_suffixes=(".mp4",))
    player = SegmentPlayer(backend)
    with qtbot.waitSignal(player.audio_only, timeout=2_000) as blocker:
        player.enqueue(segment(sample_media, 0))
    assert "playing the audio only" in blocker.args[1]
    assert backend.calls == [(sample_media["mp4"], True), (sample_media["wav"], False)]


def test_a_new_turn_replaces_the_rest_of_the_old_reply(qtbot, sample_media):
    backend = RecordingBackend(play_ms=200)
    player = SegmentPlayer(backend)
    player.enqueue(segment(sample_media, 0, turn_id=1))
    player.enqueue(segment(sample_media, 1, turn_id=1))
    player.enqueue(segment(sample_media, 0, turn_id=2))
    assert backend.stops == 1
    with qtbot.waitSignal(player.idle, timeout=5_000):
        pass
    assert [(t, i) for t, i, _p in player.played] == [(1, 0), (2, 0)]


def test_real_vlc_plays_video_and_audio_back_to_back(qtbot, sample_media):
    # Offscreen there is no window to draw into: the backend decodes with the dummy video output.
    backend = VlcBackend(None, ["--aout=adummy"])
    assert not backend.embedded and "--vout=vdummy" in backend.vlc_args
    player = SegmentPlayer(backend)
    finished = []
    player.segment_finished.connect(lambda s: finished.append(s.index))
    try:
        with qtbot.waitSignal(player.idle, timeout=20_000):
            player.enqueue(segment(sample_media, 0))
            player.enqueue(segment(sample_media, 1, video=False, reason="test"))
            player.enqueue(segment(sample_media, 2))
        assert finished == [0, 1, 2]  # VLC's end-reached event started each next one
    finally:
        backend.release()
