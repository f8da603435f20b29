"""Read a presentation script (a small Markdown dialect) into a `Deck` of `Slide`s.

    # Deck title            optional: a title card (paragraphs before the first slide are its narration)
    ## Slide title          starts a slide
    - a bullet              the slide's key points (also `*`, `+`, `1.`)
    Any other paragraph is narration: what the avatar says while the slide is shown.

Anything else Markdown can hold (a `###` heading, a quote, a code block, a table) is kept as narration text with a
warning, never dropped. Pure Python; no models. Errors are `PresentationError`s naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from assistant.errors import PresentationError
from assistant.sentences import clean_for_speech, split_sentences

MAX_SCRIPT_BYTES = 2_000_000  # a script is text a person wrote; anything larger is almost surely the wrong file

_DECK_RE = re.compile(r"^#\s+(.*\S)\s*#*\s*$")
_SLIDE_RE = re.compile(r"^##\s+(.*\S)\s*#*\s*$")
_BULLET_RE = re.compile(r"^\s{0,3}(?:[-*+•]|\d{1,3}[.)])\s+(.*\S)\s*$")
_OTHER_HEADING_RE = re.compile(r"^#{3,6}\s+(.*\S)\s*$")
_FENCE_RE = re.compile(r"^\s*(```|~~~)")
_RULE_RE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_LINK_RE = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MARKS_RE = re.compile(r"\*\*|__|`|~~")


@dataclass(frozen=True)
class Slide:
    """One slide: what is shown (title, bullets) and what the avatar says (narration, as sentences)."""

    title: str
    bullets: tuple[str, ...]
    narration: str  # the paragraphs, cleaned for speech, joined with spaces
    line: int  # 1-based line of the heading in the script (0 for a title card with no heading line)
    kind: str = "slide"  # "slide" or "title" (the deck's title card)

    @property
    def sentences(self) -> tuple[str, ...]:
        """The narration cut into sentences, the unit the voice is synthesized and timed in."""
        if not self.narration:
            return ()
        # A huge first_clause_chars: the splitter's early comma cut is for streaming replies, not for a script.
        return tuple(split_sentences(self.narration, first_clause_chars=1_000_000))

    @property
    def words(self) -> int:
        return len(self.narration.split())

    def content_key(self) -> str:
        """A hash of everything the slide shows and says (its position in the deck does not count)."""
        payload = json.dumps([self.kind, self.title, self.bullets, self.narration], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Deck:
    """A parsed script: the slides in order (the title card first, when there is one)."""

    title: str | None
    slides: tuple[Slide, ...]
    source: Path
    warnings: tuple[str, ...] = field(default=())


def display_text(text: str) -> str:
    """Inline Markdown stripped for showing on a slide: links become their text, ** ` ~~ markers go."""
    text = _LINK_RE.sub(r"\1", text)
    text = _MARKS_RE.sub("", text)
    return re.sub(r"\s+", " ", text).strip()


def read_script(path: str | Path) -> Deck:
    """Read and parse a script file; PresentationError when it is missing, not UTF-8, empty or has no slide."""
    path = Path(path)
    if not path.exists():
        raise PresentationError(f"Script not found: {path}")
    if not path.is_file():
        raise PresentationError(f"Script {path} is not a file; give the path of a Markdown script (SCRIPT.md)")
    size = path.stat().st_size
    if size > MAX_SCRIPT_BYTES:
        raise PresentationError(
            f"Script {path} is {size / 1e6:.1f} MB; a script is at most {MAX_SCRIPT_BYTES / 1e6:.0f} MB of text"
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PresentationError(
            f"Script {path} is not UTF-8 text (byte {e.start}, line {line}: {data[e.start:e.start + 4]!r}); "
            "save it as UTF-8 (e.g. iconv -f latin1 -t utf-8 IN > OUT)"
        ) from e
    return parse_script(text, path)


def parse_script(text: str, source: Path = Path("<script>")) -> Deck:
    """Parse script text. See the module docstring for the format."""
    if not text.strip():
        raise PresentationError(
            f"Script {source} is empty; write at least one slide: a '## Slide title' line, '- bullet' lines and "
            "a paragraph of narration"
        )
    reader = _Reader()
    for number, raw in enumerate(text.splitlines(), start=1):
        reader.feed(number, raw.rstrip())
    reader.close()
    return reader.deck(source)


def _narration_of(paragraph_lines: list[str]) -> str:
    spoken = [clean_for_speech(part) for part in paragraph_lines]
    return " ".join(part for part in spoken if part)


@dataclass
class _Draft:
    """A slide being read: its heading's line, title and bullets so far, and its narration's lines."""

    title: str
    line: int
    bullets: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def slide(self) -> Slide:
        return Slide(title=self.title, bullets=tuple(self.bullets), narration=_narration_of(self.text), line=self.line)


class _Reader:
    """The script line by line: inside a code block or not, before the first slide (the title card's narration)
    or inside a slide. Whatever is not part of the format goes to the narration, with a warning."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.deck_title: str | None = None
        self.deck_line = 0
        self.intro: list[str] = []  # narration before the first slide: the title card's
        self.slides: list[Slide] = []
        self.current: _Draft | None = None
        self.in_fence = False

    @property
    def target(self) -> list[str]:
        """Where narration goes now: the slide being read, or the title card's before the first slide."""
        return self.current.text if self.current is not None else self.intro

    def feed(self, number: int, line: str) -> None:
        if _FENCE_RE.match(line):
            self.in_fence = not self.in_fence
            if self.in_fence:
                self.warnings.append(f"line {number}: a code block is not part of the script format; kept as narration")
        elif self.in_fence:
            if line.strip():
                self.target.append(line.strip())
        elif not line.strip() or _RULE_RE.match(line):
            return
        elif m := _SLIDE_RE.match(line):
            self._finish_slide()
            self.current = _Draft(title=display_text(m.group(1)), line=number)
        elif m := _DECK_RE.match(line):
            self._deck_heading(number, m.group(1))
        elif m := _BULLET_RE.match(line):
            self._bullet(number, m.group(1))
        elif m := _OTHER_HEADING_RE.match(line):
            self.warnings.append(f"line {number}: a '###' heading is not part of the script format; kept as narration")
            self.target.append(m.group(1))
        else:
            if line.lstrip().startswith("|") or line.lstrip().startswith(">"):
                self.warnings.append(f"line {number}: a table row or quote is kept as narration text")
            self.target.append(line.strip().lstrip(">").strip())

    def _deck_heading(self, number: int, title: str) -> None:
        if self.deck_title is None and self.current is None:
            self.deck_title, self.deck_line = display_text(title), number
        else:
            self.warnings.append(f"line {number}: a second '# title' is kept as narration; start slides with '##'")
            self.target.append(title)

    def _bullet(self, number: int, text: str) -> None:
        if self.current is None:
            self.warnings.append(f"line {number}: a bullet before the first '## slide' is kept as narration")
            self.intro.append(text)
        else:
            self.current.bullets.append(display_text(text))

    def _finish_slide(self) -> None:
        if self.current is not None:
            self.slides.append(self.current.slide())

    def close(self) -> None:
        self._finish_slide()
        if self.in_fence:
            self.warnings.append("a code block is never closed (```); its lines were kept as narration")

    def deck(self, source: Path) -> Deck:
        """The slides read, the title card first; PresentationError when there is no slide."""
        if not self.slides:
            hint = " (it has a '# title' but no '## slide')" if self.deck_title else ""
            raise PresentationError(
                f"Script {source} has no slides{hint}; start each slide with a '## Slide title' line, then its "
                "'- bullet' lines and a paragraph of narration"
            )
        out: list[Slide] = []
        if self.deck_title is not None:
            out.append(Slide(self.deck_title, (), _narration_of(self.intro), self.deck_line, kind="title"))
        elif self.intro:
            self.warnings.append(
                "text before the first '## slide' has no title card to belong to and is not spoken; "
                "add a '# Deck title' line above it"
            )
        for slide in self.slides:
            if not slide.narration:
                self.warnings.append(
                    f"line {slide.line}: slide {slide.title!r} has no narration; it is shown for a default time, "
                    "silent"
                )
            if not slide.title:
                self.warnings.append(f"line {slide.line}: a slide has an empty title")
        out.extend(self.slides)
        return Deck(title=self.deck_title, slides=tuple(out), source=source, warnings=tuple(self.warnings))
