"""`assistant present` and `assistant video encode` with the real components: the bundled Piper voice, the light
talking head, ffmpeg/ffprobe and Whisper tiny.en to hear the result back.

One module-scoped render of a three-slide script (plus its title card) through the CLI is checked several ways;
the resume tests drive `render_presentation` directly to stop it after one slide.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from assistant.cli.main import main
from assistant.config import DEFAULT_CONFIG_PATH, load_settings
from assistant.models import locate
from assistant.video import extract_audio, probe, read_frames

pytestmark = pytest.mark.integration

AVATAR = Path(__file__).resolve().parents[2] / "assets" / "avatars" / "astronaut.png"
SILENT_S = 2.0
MAX_SEGMENT_S = 4.0  # far below the real 5 minutes, so the long slide's narration is split into pieces

SCRIPT = """# Local assistants

## Why run it locally
- Privacy comes first
- It works offline
Everything runs on your own computer, so privacy comes first. It also works offline, on a train or a plane.

## Only bullets
- A slide without narration

## How it works
- Speech becomes text
- A voice speaks the reply
First your speech becomes text. Then a small model writes a reply. Finally a voice speaks the reply to you.
"""


def _config(tmp: Path) -> Path:
    """The shipped config on this machine's CPU path, with the job folders in `tmp` and short limits."""
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["gpu_profile"] = "low"
    for section in ("asr", "tts", "talking_head"):
        data[section]["device"] = "cpu"  # no CUDA probe
    data["paths"]["data_dir"] = str(tmp / "data")
    data["paths"]["cache_dir"] = str(tmp / "cache")
    data["presentation"].update(silent_slide_s=SILENT_S, max_segment_s=MAX_SEGMENT_S)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _present(config: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:
    rc = main(["--config", str(config), "present", *args, "--json"])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if rc == 0 else {}), out.err


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("present")
    config = _config(tmp)
    script = tmp / "talk.md"
    script.write_text(SCRIPT)
    out = tmp / "talk.mp4"
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(["--config", str(config), "present", str(script), "-o", str(out), "--json"])
    assert rc == 0
    return {"tmp": tmp, "config": config, "script": script, "out": out, "result": json.loads(stdout.getvalue())}


def test_one_mp4_with_a_chapter_per_slide_a_subtitle_track_and_matching_durations(rendered: dict) -> None:
    out, result = rendered["out"], rendered["result"]
    info = probe(out)
    assert (info.video_codec, info.audio_codec, info.width, info.height) == ("h264", "aac", 1280, 720)
    assert abs(info.video_duration_s - info.audio_duration_s) < 0.1
    assert info.duration_s == pytest.approx(result["duration_s"], abs=0.1)
    probed = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-print_format", "json", "-show_chapters", "-show_streams", str(out)],
            check=True, capture_output=True,
        ).stdout
    )  # fmt: skip
    titles = [c["tags"]["title"] for c in probed["chapters"]]
    assert titles == ["Local assistants", "Why run it locally", "Only bullets", "How it works"]
    ends = [float(c["end_time"]) for c in probed["chapters"]]
    assert ends[-1] == pytest.approx(info.duration_s, abs=0.1)
    subs = [s for s in probed["streams"] if s["codec_type"] == "subtitle"]
    assert len(subs) == 1 and subs[0]["codec_name"] == "mov_text" and subs[0]["tags"]["language"] == "eng"
    # The title card and the slide without narration last their default times; the others as long as their speech.
    slides = result["slides"]
    assert slides[0]["duration_s"] == pytest.approx(3.0, abs=0.05)
    assert slides[2]["duration_s"] == pytest.approx(SILENT_S, abs=0.05)
    assert any("'Only bullets' has no narration" in w for w in result["warnings"])
    for chapter, slide in zip(probed["chapters"], slides, strict=True):
        assert float(chapter["start_time"]) == pytest.approx(slide["start_s"], abs=0.01)
    assert all(s["tts_engine"] in ("piper", "none") and s["avatar_engine"] == "light" for s in slides)


def test_a_narration_longer_than_the_lip_sync_limit_is_split_not_refused(rendered: dict) -> None:
    long = rendered["result"]["slides"][1]
    assert long["duration_s"] > MAX_SEGMENT_S and long["segments"] >= 2


def test_srt_beside_the_video_is_timed_to_the_speech_and_heard_back(rendered: dict) -> None:
    out, result = rendered["out"], rendered["result"]
    srt = out.with_suffix(".srt").read_text()
    times = re.findall(r"(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)", srt)
    assert len(times) >= 5  # five narration sentences, none on the title card or the silent slide

    def secs(h: str, m: str, s: str, ms: str) -> float:
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    cues = [(secs(*t[:4]), secs(*t[4:])) for t in times]
    assert all(a < b for a, b in cues) and all(b <= c for (_, b), (c, _) in zip(cues, cues[1:], strict=False))
    # The first cue starts with the voice of the first narrated slide (after its short lead-in).
    first_spoken = result["slides"][1]["start_s"]
    assert first_spoken < cues[0][0] < first_spoken + 1.0
    assert "privacy comes first" in srt.replace("\n", " ")

    # The audio says the narration: Whisper tiny.en hears its words.
    from faster_whisper import WhisperModel

    wav = extract_audio(out, rendered["tmp"] / "heard.wav")
    model = WhisperModel(str(locate("whisper-tiny.en", Path("models"))), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(str(wav), beam_size=1, language="en")
    heard = " ".join(s.text for s in segments).lower()
    for word in ("computer", "privacy", "offline", "speech", "reply"):
        assert word in heard, heard


def test_bullets_appear_as_the_narration_reaches_them(rendered: dict) -> None:
    out, result = rendered["out"], rendered["result"]
    slide = result["slides"][3]  # "How it works": two bullets, tied to the first and third sentences
    first, second = slide["bullets_at_s"]
    assert slide["start_s"] < first < second < slide["start_s"] + slide["duration_s"]
    fps = probe(out).fps
    wanted = {round((first - 0.3) * fps): "before", round((first + 0.6) * fps): "one", round((second + 0.6) * fps): "two"}
    frames = {}
    for i, frame in enumerate(read_frames(out)):
        if i in wanted:
            frames[wanted[i]] = frame[150:450, 60:900].astype(int)  # the bullet area of the 720p corner layout
        if len(frames) == len(wanted):
            break
    # Ink appears in the bullet area with each bullet, nowhere before the first.
    ink = {k: int((v.mean(axis=2) < 128).sum()) for k, v in frames.items()}
    assert ink["before"] < 50 < ink["one"] < ink["two"], ink


def test_encode_presets_give_h264_and_a_smaller_file_at_low(rendered: dict, tmp_path: Path) -> None:
    src = rendered["out"]
    sizes = {}
    for quality in ("low", "high"):
        dst = tmp_path / f"{quality}.mp4"
        rc = main(["video", "encode", str(src), "-o", str(dst), "--quality", quality])
        assert rc == 0
        info = probe(dst)
        assert (info.video_codec, info.audio_codec) == ("h264", "aac")
        assert info.duration_s == pytest.approx(probe(src).duration_s, abs=0.1)
        sizes[quality] = dst.stat().st_size
    assert sizes["low"] < sizes["high"]
    assert main(["video", "encode", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "x.mp4")]) == 2
    assert not (tmp_path / "x.mp4").exists()


def test_bad_input_gives_a_clear_message_and_leaves_the_output_alone(
    rendered: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = rendered["config"]
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"an earlier video")
    (tmp_path / "empty.md").write_text("")
    (tmp_path / "title.md").write_text("# Only a title\n\nSome words.\n")
    (tmp_path / "latin1.md").write_bytes("## Caf\xe9\n- x\n".encode("latin-1"))
    noface = tmp_path / "wall.png"
    import cv2

    cv2.imwrite(str(noface), np.full((480, 400, 3), 128, np.uint8))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases = [
        ([str(tmp_path / "missing.md"), "-o", str(out)], "Script not found"),
        ([str(tmp_path / "empty.md"), "-o", str(out)], "is empty"),
        ([str(tmp_path / "title.md"), "-o", str(out)], "has no slides"),
        ([str(tmp_path / "latin1.md"), "-o", str(out)], "not UTF-8"),
        ([str(rendered["script"]), "-o", str(out), "--avatar", str(noface)], "No face found"),
        ([str(rendered["script"]), "-o", str(blocker / "talk.mp4")], "does not exist"),
    ]
    for args, message in cases:
        rc, _, err = _present(config, *args, capsys=capsys)
        assert rc == 2 and message in err, (args, err)
        assert out.read_bytes() == b"an earlier video"


def _settings_and_factories(config: Path):
    from assistant.presentation.build import chain_factory, jobs_dir, present_options, speaker_factory
    from assistant.profile import resolve

    settings = load_settings(config)
    resolved = resolve(settings)
    # A smaller frame: these tests are about which slides are redone, not about the picture.
    options = present_options(settings, resolved)
    import dataclasses

    options = dataclasses.replace(options, width=640, height=360)
    return (options, jobs_dir(settings), speaker_factory(settings, resolved), chain_factory(settings, resolved, options))


RESUME = """## One
- First point
The first slide says one thing.

## Two
- Second point
The second slide says another thing.

## Three
- Third point
The third slide ends the talk.
"""


def test_an_interrupted_job_resumes_reusing_finished_slides_and_redoes_only_changed_ones(rendered: dict, tmp_path: Path) -> None:
    from assistant.presentation.present import render_presentation

    options, jobs, speaker, chain = _settings_and_factories(rendered["config"])
    script = tmp_path / "resume.md"
    script.write_text(RESUME)
    out = tmp_path / "resume.mp4"

    def stop_after_first(p) -> None:
        if p.stage == "slide_done" and p.slide == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render_presentation(script, out, options, jobs, speaker, chain, on_progress=stop_after_first)
    assert not out.exists()  # nothing half-written where the user asked
    job_dirs = [d for d in jobs.iterdir() if d.name.startswith("resume-")]
    assert len(job_dirs) == 1
    job = job_dirs[0]
    state = json.loads((job / "state.json").read_text())
    assert [s["title"] for s in state["slides"].values()] == ["One"]
    first_mp4 = job / next(iter(state["slides"].values()))["mp4"]
    first_mtime = first_mp4.stat().st_mtime_ns
    assert (job / "input" / "script.md").read_text() == RESUME and (job / "job.log").is_file()

    result = render_presentation(script, out, options, jobs, speaker, chain)
    assert (result.reused, result.rendered) == (1, 2)
    assert [s.reused for s in result.slides] == [True, False, False]
    assert first_mp4.stat().st_mtime_ns == first_mtime
    assert probe(out).duration_s == pytest.approx(result.duration_s, abs=0.1)
    state = json.loads((job / "state.json").read_text())
    mtimes = {s["title"]: (job / s["mp4"]).stat().st_mtime_ns for s in state["slides"].values()}

    script.write_text(RESUME.replace("ends the talk", "closes the talk"))
    again = render_presentation(script, out, options, jobs, speaker, chain)
    assert [s.reused for s in again.slides] == [True, True, False]
    state = json.loads((job / "state.json").read_text())
    now = {s["title"]: (job / s["mp4"]).stat().st_mtime_ns for s in state["slides"].values()}
    assert now["One"] == mtimes["One"] and now["Two"] == mtimes["Two"] and now["Three"] != mtimes["Three"]
    assert len(list((job / "processing").glob("slide-*"))) == 3  # the old "Three" was removed

    # Another layout is another video of each slide; going back to the first one re-renders nothing.
    import dataclasses

    side = dataclasses.replace(options, layout="side")
    assert render_presentation(script, out, side, jobs, speaker, chain).rendered == 3
    assert render_presentation(script, out, options, jobs, speaker, chain).reused == 3


def test_a_slide_drawn_by_a_fallback_is_filed_under_the_engine_that_ran(tmp_path: Path) -> None:
    """Wav2Lip asked for, its weights missing: the chain falls back to the light engine. The slide is the light
    engine's, so a run asking for Wav2Lip again draws it again and a run asking for the light engine reuses it."""
    import dataclasses

    from assistant.presentation.build import chain_factory
    from assistant.presentation.present import render_presentation
    from assistant.profile import resolve

    config = _config(tmp_path)
    options, jobs, speaker, _ = _settings_and_factories(config)
    missing = str(tmp_path / "no-weights.pth")
    wav2lip = dataclasses.replace(options, engine="wav2lip", checkpoints=(("wav2lip", missing),))
    light = dataclasses.replace(wav2lip, engine="light")
    settings = load_settings(config)
    resolved = resolve(settings)
    script = tmp_path / "one.md"
    script.write_text("## One\n- A point\nOne short sentence.\n")
    out = tmp_path / "one.mp4"

    first = render_presentation(script, out, wav2lip, jobs, speaker, chain_factory(settings, resolved, wav2lip))
    assert first.slides[0].avatar_engine == "light" and first.slides[0].fallback_reasons
    state = json.loads(next(jobs.glob("one-*/state.json")).read_text())
    assert [s["avatar_engine"] for s in state["slides"].values()] == ["light"]

    again = render_presentation(script, out, wav2lip, jobs, speaker, chain_factory(settings, resolved, wav2lip))
    assert (again.rendered, again.reused) == (1, 0)  # not taken for Wav2Lip's picture
    as_light = render_presentation(script, out, light, jobs, speaker, chain_factory(settings, resolved, light))
    assert (as_light.rendered, as_light.reused) == (0, 1) and as_light.slides[0].avatar_engine == "light"
    assert probe(out).duration_s == pytest.approx(as_light.duration_s, abs=0.1)
