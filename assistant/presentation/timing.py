"""Time on a presentation's clock: when each bullet appears, where a long narration is cut for lip sync, the subtitle
cues (SRT) and the chapter list (ffmetadata).

Everything here works on sentence spans measured from the synthesized speech (`SentenceSpan`: where each sentence's
audio starts and ends in the slide's sound), so bullets and subtitles follow the voice, not a words-per-second
guess. Pure Python; no models, no files.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_WORD_RE = re.compile(r"[\w']+", re.UNICODE)
_STOPWORDS = frozenset(
    "the a an and or of to in on for with by at from as is are was were be been it its this that these those "
    "we you they our your their can will how what why when which who not but so than then into over about".split()
)
STEM_CHARS = 5  # "reveals" ~ "revealed" ~ "reveal": a crude stem is enough to tie a bullet to its sentence
MATCH_THRESHOLD = 0.25  # a bullet sharing less than a quarter of its words with every sentence is "not matched"
SUBTITLE_LINE_CHARS = 42  # the usual broadcast limit: two lines of this fit a 720p frame at a readable size
SUBTITLE_LINES = 2


@dataclass(frozen=True)
class SentenceSpan:
    """One narration sentence in a slide's sound: text and where it is, in seconds from the slide's start."""

    text: str
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Cue:
    """A subtitle: text (lines joined by \\n) shown from start_s to end_s on the whole video's clock."""

    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Chapter:
    title: str
    start_s: float
    end_s: float


def _stems(text: str) -> list[tuple[str, int]]:
    """(stem, character offset) of each content word."""
    out = []
    for m in _WORD_RE.finditer(text.lower()):
        word = m.group(0).strip("'")
        if len(word) < 3 and not word.isdigit() or word in _STOPWORDS:
            continue
        out.append((word[:STEM_CHARS], m.start()))
    return out


def _match(bullet: str, sentence: str, shared: frozenset[str] = frozenset()) -> tuple[float, float]:
    """(share of the bullet's content words found in the sentence, where in the sentence it starts, 0..1).

    Where it starts: the first word found that no other bullet has (`shared`), else the first word found; so two
    bullets said in one sentence ("a voice speaks, and a face moves with the voice") appear one after the other.
    """
    wanted = {stem for stem, _ in _stems(bullet)}
    if not wanted:
        return 0.0, 0.0
    found = [(stem, at) for stem, at in _stems(sentence) if stem in wanted]
    if not found:
        return 0.0, 0.0
    share = len({stem for stem, _ in found}) / len(wanted)
    own = [at for stem, at in found if stem not in shared]
    return share, (own[0] if own else found[0][1]) / max(1, len(sentence))


def reveal_times(bullets: list[str] | tuple[str, ...], spans: list[SentenceSpan], end_s: float) -> list[float]:
    """When each bullet appears, in seconds from the slide's start, in order (never earlier than the one before).

    Each bullet is tied to the narration sentence that says it: the in-order assignment of bullets to sentences that
    shares the most words (a small dynamic programme, so one greedy early match cannot starve the later bullets).
    A matched bullet appears when its sentence reaches the first shared word (the position inside the sentence,
    scaled to the sentence's duration); an unmatched one is spread evenly between its neighbours. With no narration
    the bullets appear one after another over the first half of the slide.
    """
    n = len(bullets)
    if n == 0:
        return []
    if not spans:
        return [end_s * 0.5 * i / n for i in range(n)]
    m = len(spans)
    stems = [{stem for stem, _ in _stems(b)} for b in bullets]
    others = [frozenset().union(*(stems[k] for k in range(n) if k != i)) for i in range(n)]
    scores = [[_match(b, s.text, others[i]) for s in spans] for i, b in enumerate(bullets)]
    # best[i][j]: best total share for bullets 0..i with bullet i on sentence j (assignments non-decreasing in j)
    best = [[0.0] * m for _ in range(n)]
    back = [[0] * m for _ in range(n)]
    for i in range(n):
        run_best, run_arg = -1.0, 0
        for j in range(m):
            if i > 0 and best[i - 1][j] > run_best:
                run_best, run_arg = best[i - 1][j], j
            best[i][j] = scores[i][j][0] + (run_best if i > 0 else 0.0)
            back[i][j] = run_arg
    j = max(range(m), key=lambda k: (best[n - 1][k], -k))
    chosen = [0] * n
    for i in range(n - 1, -1, -1):
        chosen[i] = j
        j = back[i][j]

    times: list[float | None] = []
    for i, j in enumerate(chosen):
        share, where = scores[i][j]
        span = spans[j]
        times.append(span.start_s + where * span.duration_s if share >= MATCH_THRESHOLD else None)
    # Unmatched bullets: evenly between the matched neighbours (the slide's start and the narration's end at the ends).
    narration_end = spans[-1].end_s
    i = 0
    while i < n:
        if times[i] is not None:
            i += 1
            continue
        k = i
        while k < n and times[k] is None:
            k += 1
        lo = times[i - 1] if i > 0 else spans[0].start_s
        hi = times[k] if k < n else narration_end
        gap = k - i
        for step, idx in enumerate(range(i, k), start=1):
            # Before the first match, the first unmatched bullet appears at the start; otherwise share the gap.
            frac = (step - 1) / gap if i == 0 else step / (gap + 1)
            times[idx] = lo + (hi - lo) * frac  # type: ignore[operator]
        i = k
    out: list[float] = []
    for t in times:
        t = max(0.0, min(float(t), end_s))  # type: ignore[arg-type]
        out.append(max(t, out[-1]) if out else t)
    return out


def plan_cuts(spans: list[SentenceSpan], total_s: float, max_segment_s: float, fps: float) -> list[float]:
    """Where to cut a slide's sound into pieces of at most `max_segment_s` (the lip-sync limit per call).

    Returns the cut times (seconds, excluding 0 and the end), each on a frame boundary so the pieces' videos join
    with no drift. Cuts fall in the pause between two sentences where one fits; a single sentence longer than the
    limit is cut mid-speech, which lip sync does not notice.
    """
    if max_segment_s <= 0:
        raise ValueError(f"max_segment_s must be > 0, got {max_segment_s}")
    frame = 1.0 / fps
    limit = math.floor(max_segment_s * fps + 1e-9) * frame  # whole frames within the limit
    if limit < frame:
        raise ValueError(f"max_segment_s {max_segment_s} is shorter than one frame at {fps} fps")
    gaps = [(spans[i].end_s + spans[i + 1].start_s) / 2 for i in range(len(spans) - 1)]
    cuts: list[float] = []
    start = 0.0
    while total_s - start > limit + 1e-9:
        candidates = [g for g in gaps if start + frame < g <= start + limit]
        cut = candidates[-1] if candidates else start + limit
        cut = math.floor(cut * fps + 1e-9) * frame  # down to a frame boundary keeps the piece within the limit
        if cut <= start:
            cut = start + limit
        cuts.append(round(cut, 6))
        start = cut
    return cuts


def wrap_lines(text: str, width: int = SUBTITLE_LINE_CHARS) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _balanced(words: list[str]) -> list[str]:
    """One line when it fits, else the two-line split with the shortest longer line (or a plain wrap past two)."""
    text = " ".join(words)
    if len(text) <= SUBTITLE_LINE_CHARS:
        return [text]
    best = min(
        range(1, len(words)),
        key=lambda i: max(len(" ".join(words[:i])), len(" ".join(words[i:]))),
        default=None,
    )
    if best is None:
        return [text]
    lines = [" ".join(words[:best]), " ".join(words[best:])]
    return lines if max(map(len, lines)) <= SUBTITLE_LINE_CHARS else wrap_lines(text)


def _cue_groups(text: str) -> list[list[str]]:
    """The sentence as cues of at most two lines, balanced: "a long sentence / end." reads worse than two halves."""
    words = text.split()
    n = max(1, math.ceil(len(text) / (SUBTITLE_LINES * SUBTITLE_LINE_CHARS)))
    while True:
        target = len(text) / n
        chunks: list[list[str]] = [[]]
        used = 0
        for word in words:
            if chunks[-1] and used + len(word) / 2 > target * len(chunks) and len(chunks) < n:
                chunks.append([])
            chunks[-1].append(word)
            used += len(word) + 1
        groups = [_balanced(c) for c in chunks if c]
        if all(len(g) <= SUBTITLE_LINES for g in groups) or n >= len(words):
            return groups
        n += 1


def sentence_cues(spans: list[SentenceSpan], offset_s: float) -> list[Cue]:
    """Subtitle cues for a slide's sentences, shifted by the slide's start. A sentence longer than two subtitle lines
    becomes several cues, its time shared out by characters (speech rate is near constant within a sentence)."""
    cues: list[Cue] = []
    for span in spans:
        groups = _cue_groups(span.text)
        chars = [sum(len(line) for line in g) for g in groups]
        total = sum(chars) or 1
        t = span.start_s
        for group, n in zip(groups, chars, strict=True):
            dur = span.duration_s * n / total
            cues.append(Cue(round(offset_s + t, 3), round(offset_s + t + dur, 3), "\n".join(group)))
            t += dur
    return cues


def _srt_time(seconds: float) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def to_srt(cues: list[Cue]) -> str:
    """SubRip text: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, a blank line after each."""
    blocks = [
        f"{i}\n{_srt_time(c.start_s)} --> {_srt_time(c.end_s)}\n{c.text}\n" for i, c in enumerate(cues, start=1)
    ]
    return "\n".join(blocks)


def _ffmeta_escape(text: str) -> str:
    return re.sub(r"([=;#\\\n])", r"\\\1", text)


def to_ffmetadata(chapters: list[Chapter], title: str | None = None) -> str:
    """ffmpeg's metadata file format with one [CHAPTER] per entry (millisecond timebase)."""
    lines = [";FFMETADATA1"]
    if title:
        lines.append(f"title={_ffmeta_escape(title)}")
    for ch in chapters:
        lines += [
            "[CHAPTER]",
            "TIMEBASE=1/1000",
            f"START={round(ch.start_s * 1000)}",
            f"END={round(ch.end_s * 1000)}",
            f"title={_ffmeta_escape(ch.title)}",
        ]
    return "\n".join(lines) + "\n"
