"""End to end under Xvfb: the real app (`python -m ui.app`, real Session on the bundled models, the live stream in
real VLC) hears spoken questions from a PulseAudio virtual microphone, and what it shows and says is recorded from
the virtual speaker and the screen (`assistant.bench.live`, the same harness `assistant bench live` runs).

The figures are judged from those recordings only: sound at the speaker, pixels on the screen. Recordings, the
app's log and screenshots are kept in test-artifacts/live/.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from assistant.bench.live import run_live

pytestmark = [pytest.mark.integration, pytest.mark.ui]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "live"


@pytest.fixture(scope="module", autouse=True)
def tools():
    missing = [t for t in ("Xvfb", "pulseaudio", "parec", "paplay", "ffmpeg", "espeak-ng", "xdotool") if not shutil.which(t)]
    assert not missing, f"missing {missing}: run make setup (scripts/setup.sh installs them)"


def test_sixty_seconds_of_the_running_app_with_two_spoken_questions():
    report = run_live(
        ["What is the capital of France?", "What color is the sky?"],
        ARTIFACTS,
        idle_s=8.0,
        min_record_s=60.0,
        progress=print,
    )
    s = report.summary()
    print(s)
    assert report.recorded_s >= 59.0, s["recorded_s"]
    assert len(report.turns) == 2 and all(t.transcript for t in report.turns), s["turns"]
    # Both replies were heard at the speaker and seen moving the mouth on screen.
    assert all(t.ttff_perceived_s is not None and t.first_motion_s is not None for t in report.turns), s["turns"]
    # The picture: never black after start-up, never frozen, alive before, between and after the replies.
    assert report.black_frames == 0
    assert report.frozen_s_max <= 0.5, s["frozen_s"]
    assert report.idle_motion == {"before": True, "between": True, "after": True}, report.idle_motion
    # The sound: no hole inside a reply that is not in the reply's own speech.
    assert all(t.speaker_gap_ms_max is not None and t.speaker_gap_ms_max <= 40 for t in report.turns), s["speaker_gap_ms"]
    # Lips and voice together, from the recordings (mouth opening on screen vs loudness at the speaker). Within
    # 80 ms: with VLC the offset differed from session to session (-47 to +72 ms in nine sessions on 2 cores); the
    # direct player measured -1..+17 ms; the 50 fps screen grab adds up to 20 ms; a frame or more of real drift (a
    # lost or doubled frame per reply) still fails it.
    for t in report.turns:
        assert t.av_offset_ms is not None and abs(t.av_offset_ms) <= 80, (t.av_offset_ms, t.av_correlation)
        assert t.av_correlation is not None and t.av_correlation > 0.5, t.av_correlation
    # One player for the whole session: no load per reply.
    assert report.media_loads == 1
    # The app's own use, read from /proc while it ran (figures for docs/benchmarks.md, not limits).
    assert report.app_usage["peak_rss_mb"] > 100 and report.app_usage["cpu_s_per_turn"] > 0, report.app_usage
    log = (Path(report.artifacts) / "app.log").read_text()
    assert len(re.findall(r"live stream on screen", log)) == 1
    assert "main window closed: microphone, live avatar and session released" in log


def test_stop_in_the_middle_of_a_reply():
    report = run_live(["How far away is the moon?"], ARTIFACTS, cancel_after_s=0.8, idle_s=4.0, progress=print)
    (turn,) = report.turns
    assert turn.ttff_perceived_s is not None, report.summary()
    # The sound stops at the speaker within 50 ms of the Stop click ...
    assert turn.cancel_silence_ms is not None and turn.cancel_silence_ms <= 50, turn.cancel_silence_ms
    # ... and the avatar keeps idling.
    assert report.idle_motion.get("after") is True, report.idle_motion
    assert report.black_frames == 0 and report.frozen_s_max <= 0.5
    # The history keeps only what was said: the app logs what it kept, and it is a cut-down reply.
    log = (Path(report.artifacts) / "app.log").read_text()
    said = re.search(r"turn \d+ interrupted after ([\d.]+) s of speech; said: (['\"])(.*)\2", log)
    assert said, log[-3000:]
    assert float(said.group(1)) < 2.0
    kept = re.search(r"history: the reply to .* was cut; kept what was said: (['\"])(.*)\1", log)
    if kept is None:  # a reply the history refused (another language) is not in it at all: nothing to cut
        assert "reply kept out of the conversation history" in log, log[-3000:]
    else:
        assert kept.group(2) == said.group(3)
        assert len(kept.group(2)) < len(turn.reply), (kept.group(2), turn.reply)
