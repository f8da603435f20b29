"""`assistant present` without models: the script format, bullet timing, cuts for lip sync, subtitles, chapters,
slide keys, slide pictures and the checks made before any work."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from assistant.errors import PresentationError
from assistant.presentation.job import slide_key
from assistant.presentation.present import PresentOptions, check_output
from assistant.presentation.script import parse_script, read_script
from assistant.presentation.slides import LAYOUTS, geometry, render_slide
from assistant.presentation.timing import (
    Chapter,
    SentenceSpan,
    plan_cuts,
    reveal_times,
    sentence_cues,
    to_ffmetadata,
    to_srt,
)

SCRIPT = """# Local assistants

Welcome to the talk.

## Why local
- **Privacy** first
- Works [offline](https://example.org)
Everything stays on your computer, so privacy comes first. It also works offline, on a train.

### A sub-heading
```
code line
```

## Silent slide
- only a bullet
"""


def test_script_format_title_card_slides_bullets_narration_and_warnings() -> None:
    deck = parse_script(SCRIPT)
    assert deck.title == "Local assistants"
    title, why, silent = deck.slides
    assert (title.kind, title.narration) == ("title", "Welcome to the talk.")
    assert why.title == "Why local" and why.bullets == ("Privacy first", "Works offline")
    # Unknown constructs are kept as narration text, with a warning naming the line.
    assert why.sentences[:2] == (
        "Everything stays on your computer, so privacy comes first.",
        "It also works offline, on a train.",
    )
    assert "A sub-heading" in why.narration and "code line" in why.narration
    assert any("'###' heading" in w and "line 10" in w for w in deck.warnings)
    assert any("code block" in w for w in deck.warnings)
    assert silent.narration == "" and any("'Silent slide' has no narration" in w for w in deck.warnings)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "is empty"), ("   \n\n", "is empty"), ("# Title only\nwords\n", "has no slides"), ("just text", "no slides")],
)
def test_script_without_slides_is_refused_with_the_format(text: str, message: str) -> None:
    with pytest.raises(PresentationError, match=message) as e:
        parse_script(text)
    assert "## Slide title" in str(e.value)


def test_script_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.md"
    path.write_bytes("## Slide\nCaf\xe9 au lait.\n".encode("latin-1"))
    with pytest.raises(PresentationError, match=r"not UTF-8 text .*line 2.*iconv"):
        read_script(path)
    with pytest.raises(PresentationError, match="Script not found"):
        read_script(tmp_path / "missing.md")
    with pytest.raises(PresentationError, match="is not a file"):
        read_script(tmp_path)


def _spans() -> list[SentenceSpan]:
    return [
        SentenceSpan("First, your speech becomes text.", 0.4, 2.4),
        SentenceSpan("Then a small language model writes the reply.", 2.75, 5.5),
        SentenceSpan("Finally a voice speaks it and a face moves.", 5.85, 8.6),
    ]


def test_bullets_appear_when_their_sentence_says_them_in_order() -> None:
    times = reveal_times(["Speech to text", "A small language model", "A voice and a face"], _spans(), 9.3)
    assert 0.4 <= times[0] < 2.4 and 2.75 <= times[1] < 5.5 and 5.85 <= times[2] < 8.6
    # Inside its sentence, a bullet waits for its first word: "voice" is in the middle of the third sentence.
    assert times[2] > 5.85 + 0.2


def test_two_bullets_said_in_one_sentence_appear_one_after_the_other() -> None:
    spans = [SentenceSpan("A voice speaks the answer, and a face moves its lips with the voice.", 0.4, 4.4)]
    first, second = reveal_times(["A voice speaks the answer", "A face moves its lips with the voice"], spans, 5.0)
    assert first < 1.0 and second > first + 1.0


def test_unmatched_bullets_are_spread_between_their_neighbours_and_never_go_back() -> None:
    times = reveal_times(["Speech to text", "xyzzy plugh", "A voice and a face"], _spans(), 9.3)
    assert times[0] < times[1] < times[2]
    # A later bullet matching an earlier sentence than the one before it still appears after it.
    back = reveal_times(["A voice and a face", "Speech to text"], _spans(), 9.3)
    assert back[1] >= back[0]
    assert reveal_times([], _spans(), 9.3) == []
    silent = reveal_times(["a", "b"], [], 4.0)
    assert silent == [0.0, 1.0]


def test_cuts_fall_in_pauses_on_frame_boundaries_within_the_limit() -> None:
    spans = [SentenceSpan(f"s{i}", 0.4 + 3.0 * i, 0.4 + 3.0 * i + 2.6) for i in range(10)]  # 30.4 s
    total = 31.0
    assert plan_cuts(spans, total, 300.0, 25.0) == []
    cuts = plan_cuts(spans, total, 7.0, 25.0)
    bounds = [0.0, *cuts, total]
    assert all(b - a <= 7.0 + 1e-9 for a, b in zip(bounds, bounds[1:], strict=False))
    assert all(abs(c * 25 - round(c * 25)) < 1e-6 for c in cuts)
    for c in cuts:  # never inside a sentence when a pause fits
        assert not any(s.start_s < c < s.end_s for s in spans)
    # One sentence longer than the limit is cut mid-speech rather than refused.
    long = plan_cuts([SentenceSpan("long", 0.0, 12.0)], 12.0, 5.0, 25.0)
    assert long == [5.0, 10.0]


def test_subtitles_follow_the_sentences_and_split_long_ones_evenly() -> None:
    text = (
        "A very long sentence that goes on about many things, covering the history of speech synthesis "
        "from the vocoder of the nineteen thirties to the neural voices of today."
    )
    cues = sentence_cues([SentenceSpan("Short one.", 0.4, 1.2), SentenceSpan(text, 1.5, 11.5)], offset_s=10.0)
    assert cues[0].start_s == 10.4 and cues[0].end_s == 11.2 and cues[0].text == "Short one."
    rest = cues[1:]
    assert len(rest) >= 2 and rest[0].start_s == 11.5 and rest[-1].end_s == pytest.approx(21.5, abs=0.01)
    assert all(len(line) <= 42 for c in rest for line in c.text.split("\n"))
    assert all(len(c.text.split("\n")) <= 2 for c in rest)
    assert " ".join(c.text.replace("\n", " ") for c in rest) == text
    srt = to_srt(cues[:1])
    assert srt == "1\n00:00:10,400 --> 00:00:11,200\nShort one.\n"


def test_chapters_file_escapes_titles() -> None:
    meta = to_ffmetadata([Chapter("Intro; part=1", 0.0, 5.04), Chapter("Next", 5.04, 9.0)], "Deck #1")
    assert meta.startswith(";FFMETADATA1\ntitle=Deck \\#1\n")
    assert "START=0\nEND=5040\ntitle=Intro\\; part\\=1" in meta and "START=5040\nEND=9000\ntitle=Next" in meta


def test_slide_key_follows_content_and_options_not_position() -> None:
    deck = parse_script(SCRIPT)
    moved = parse_script(SCRIPT.replace("# Local assistants\n\nWelcome to the talk.\n", ""))
    options = {"size": [1280, 720], "layout": "corner"}
    assert slide_key(deck.slides[1].content_key(), options) == slide_key(moved.slides[0].content_key(), options)
    assert slide_key(deck.slides[1].content_key(), options) != slide_key(
        deck.slides[1].content_key(), {**options, "layout": "side"}
    )
    edited = parse_script(SCRIPT.replace("on a train", "on a plane"))
    assert edited.slides[1].content_key() != deck.slides[1].content_key()


def test_wav2lip_slides_key_holds_blend_precision_device_and_checkpoint(tmp_path: Path) -> None:
    """Each of Wav2Lip's pixel options gives its slides another key; the light engine's key ignores them (it draws
    the same pixels whatever they are)."""
    gan, plain = tmp_path / "wav2lip_gan.pth", tmp_path / "wav2lip.pth"
    gan.write_bytes(b"w" * 10)
    plain.write_bytes(b"w" * 10)
    content = parse_script(SCRIPT).slides[1].content_key()
    base = PresentOptions(
        avatar=tmp_path / "face.png", engine="wav2lip_gan", blend="feather", half_precision=True, device="cuda",
        checkpoints=(("wav2lip", str(plain)), ("wav2lip_gan", str(gan))),
    )  # fmt: skip

    def key(options: PresentOptions) -> str:
        return slide_key(content, options.fingerprint("avatar-sha"))

    changed = {
        "blend": dataclasses.replace(base, blend="box"),
        "precision": dataclasses.replace(base, half_precision=False),
        "device": dataclasses.replace(base, device="cpu"),
        "checkpoint": dataclasses.replace(base, checkpoints=(("wav2lip", str(plain)), ("wav2lip_gan", str(plain)))),
        "engine": dataclasses.replace(base, engine="wav2lip"),
    }
    assert {name: key(o) != key(base) for name, o in changed.items()} == dict.fromkeys(changed, True)
    before = key(base)
    gan.write_bytes(b"w" * 11)  # other weights at the same path
    assert key(base) != before
    light = dataclasses.replace(base, engine="light")
    assert key(light) == key(dataclasses.replace(light, blend="box", half_precision=False, checkpoints=()))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_slide_pictures_one_per_bullet_inside_the_frame(layout: str, size: tuple[int, int]) -> None:
    w, h = size
    geo = geometry(w, h, layout, avatar_aspect=600 / 720)
    for box in (geo.avatar, geo.text):
        assert box.x >= 0 and box.y >= 0 and box.x + box.w <= w and box.y + box.h <= h
    assert geo.avatar.w % 2 == 0 and geo.avatar.h % 2 == 0
    deck = parse_script(SCRIPT)
    pictures = render_slide(deck.slides[1], deck.title, geo)
    assert len(pictures.states) == 3 and pictures.shown_bullets == 2
    assert all(s.shape == (h, w, 4) and s.dtype == np.uint8 for s in pictures.states)
    # Each state adds ink: the pictures differ, and only where text is.
    diff = np.abs(pictures.states[1].astype(int) - pictures.states[0].astype(int)).sum(axis=2)
    ys, xs = np.nonzero(diff)
    assert len(ys) > 0
    if layout != "full":
        assert xs.max() < geo.avatar.x  # bullets keep clear of the avatar


def test_too_many_bullets_shrink_then_are_cut_with_a_warning() -> None:
    many = "## Crowded\n" + "".join(f"- bullet number {i} with quite a few words in it\n" for i in range(30))
    deck = parse_script(many + "Narration.\n")
    pictures = render_slide(deck.slides[0], None, geometry(1280, 720, "corner"))
    assert 0 < pictures.shown_bullets < 30
    assert any("do not fit" in w for w in pictures.warnings)


def test_output_checks_before_any_work(tmp_path: Path) -> None:
    check_output(tmp_path / "ok.mp4")
    with pytest.raises(PresentationError, match="must be an .mp4"):
        check_output(tmp_path / "talk.avi")
    with pytest.raises(PresentationError, match="is a folder"):
        (tmp_path / "dir.mp4").mkdir()
        check_output(tmp_path / "dir.mp4")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PresentationError, match="does not exist"):
        check_output(blocker / "talk.mp4")
