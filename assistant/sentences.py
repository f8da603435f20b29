"""Streaming sentence splitter: turns LLM tokens into speakable pieces as soon as each one is complete.

Pure Python, no models. `SentenceSplitter.feed()` takes text as it streams in and returns the pieces that are
finished; `flush()` returns what is left when the stream ends. A piece ends at

- `.`, `!`, `?` or `…` (a run of them, plus closing quotes/brackets) followed by whitespace, but not after
  abbreviations ("Mr.", "e.g."), initials ("J. K."), list markers ("1.") or inside numbers ("3.5");
- a line break (LLMs write lists one item a line, often without a full stop);
- for the first piece only, a comma once the piece is long (`first_clause_chars`), or the start of a new clause
  ("... is that", "... because") after a few words (`first_clause_words`), so speech starts early.

A boundary is only taken once the next speakable character (a letter or digit) has arrived, because the next
word decides abbreviations ("etc. The" vs "etc. and") and because this keeps the last piece in the buffer
until
the stream ends, so the caller always knows which piece is the last one.

Pieces are cleaned for text-to-speech (`clean_for_speech`): markdown markers, links, code fences and emoji are
removed, whitespace is collapsed, and pieces with nothing speakable left are dropped.

The result is the same however the text is chunked (token by token or all at once): boundaries are decided
from the text alone, and the comma rule fires at the moment the buffer reaches the length limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Never a sentence end: titles and Latin abbreviations that are followed by more of the same sentence.
NEVER_SPLIT_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st sr jr vs e.g i.e cf fig approx ca mt gen col capt lt sgt rev hon dept vol".split()
)
# A sentence end only when the next word starts with a capital ("etc. The ..." but "etc. and ...").
SOFT_ABBREVIATIONS = frozenset(
    "etc inc ltd co corp a.m p.m jan feb mar apr jun jul aug sep sept oct nov dec".split()
)

# The first piece may end before these words (a new clause starts there), once it has first_clause_words words:
# the voice starts on the clause instead of waiting for the whole first sentence. Not "and"/"or": they join words
# ("salt and pepper") as often as clauses.
_CLAUSE_WORD = re.compile(r"\s(?:that|which|because|but|so|when|where|while|who|although|since|if|until|unless)\s")
FIRST_CLAUSE_CHARS = 30  # bench live: the first piece's tokens are the language model's share of the first word

_TERMINALS = ".!?…"
_CLOSERS = "\"'”’)]*_"  # closing quotes/brackets and markdown emphasis that may follow the punctuation
_LEADING_PUNCT = "\"'“‘([*_"

_IMAGE_RE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK_RE = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_URL_RE = re.compile(r"https?://\S+|www\.\S+")
_INLINE_CODE_RE = re.compile(r"`([^`]*)`")
_LINE_MARKER_RE = re.compile(r"^\s*(?:#{1,6}\s+|>\s?|[-*+•]\s+|\d{1,3}[.)]\s+)", re.MULTILINE)
_STRONG_RE = re.compile(r"\*\*|__|~~")
# Single * or _ used as emphasis: at the edge of a word, never inside one (snake_case stays intact).
_EMPHASIS_RE = re.compile(r"(?<!\w)[*_]+(?=\S)|(?<=\S)[*_]+(?!\w)")
_EMOJI_RE = re.compile(
    "["
    "\U0001f000-\U0001faff"  # pictographs, emoticons, transport, flags (regional indicators), symbols
    "\u2600-\u27bf"  # misc symbols and dingbats (☀ ✅ ✨)
    "\u2b00-\u2bff"  # arrows and stars (⭐)
    "\ufe00-\ufe0f"  # variation selectors (emoji presentation)
    "\u200d"  # zero-width joiner inside emoji sequences
    "\U000e0000-\U000e007f"  # tag characters (subdivision flags)
    "]+"
)
_SPACE_RE = re.compile(r"\s+")


def clean_for_speech(text: str) -> str:
    """Remove what a TTS engine should not read aloud; "" when nothing speakable is left."""
    text = _IMAGE_RE.sub("", text)
    text = _LINK_RE.sub(r"\1", text)
    text = _URL_RE.sub("", text)
    text = _INLINE_CODE_RE.sub(r"\1", text)
    text = text.replace("```", "")
    text = _LINE_MARKER_RE.sub("", text)
    text = _STRONG_RE.sub("", text)
    text = _EMPHASIS_RE.sub("", text)
    text = _EMOJI_RE.sub("", text)
    text = text.replace("|", " ").replace("#", " ")
    text = _SPACE_RE.sub(" ", text).strip()
    # A leftover space before punctuation (an emoji removed before the full stop) reads as a pause: close it.
    text = re.sub(r" ([.,!?;:])", r"\1", text)
    return text if any(ch.isalnum() for ch in text) else ""


@dataclass(frozen=True)
class _Boundary:
    cut: int  # the piece is buf[:cut]
    confirmed_at: int | None  # buffer length at which it is certain; None while still pending


def _first_alnum(buf: str, start: int) -> int | None:
    for k in range(start, len(buf)):
        if buf[k].isalnum():
            return k
    return None


def _word_before(buf: str, end: int) -> str:
    """The whitespace-delimited word ending at `end` (exclusive), without leading quotes/brackets."""
    start = end
    while start > 0 and not buf[start - 1].isspace():
        start -= 1
    return buf[start:end].lstrip(_LEADING_PUNCT)


def _is_full_stop(buf: str, dot: int, next_char: str | None) -> bool:
    """Whether the '.' at `dot` ends a sentence, given the first letter/digit after it (None: stream end)."""
    word = _word_before(buf, dot)
    lowered = word.lower()
    if next_char is None:
        return True
    if lowered in NEVER_SPLIT_ABBREVIATIONS:
        return False
    if len(word) == 1 and word.isalpha():
        return False  # initials: "J. K. Rowling"
    if word.isdigit() and not buf[: dot - len(word)].strip():
        return False  # a list marker "1." at the start of a piece
    if lowered in SOFT_ABBREVIATIONS or "." in word:  # "etc.", "U.S.", "p.m."
        return next_char.isupper()
    return True


class SentenceSplitter:
    """Feed streamed text, get back finished, cleaned pieces. One instance per reply (or call `reset()`)."""

    def __init__(
        self, first_clause_chars: int = FIRST_CLAUSE_CHARS, min_clause_chars: int = 20, first_clause_words: int = 6
    ) -> None:
        # first_clause_chars: once the first piece is this long without a sentence end, it is cut at a comma.
        # min_clause_chars: an early cut never leaves a piece shorter than this ("Well," alone sounds odd).
        # first_clause_words: a clause word ("that", "because") after this many words cuts the first piece too.
        self.first_clause_chars = first_clause_chars
        self.min_clause_chars = min_clause_chars
        self.first_clause_words = first_clause_words
        self.reset()

    def reset(self) -> None:
        self._buf = ""
        self._in_code = False
        self.pieces_released = 0

    @property
    def pending(self) -> str:
        """Text received but not released yet."""
        return self._buf

    def feed(self, text: str) -> list[str]:
        """Add streamed text; return the pieces completed by it (possibly none)."""
        self._buf = (self._buf + text).lstrip()
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """The stream has ended: return every piece still in the buffer; the splitter is then empty."""
        pieces = self._drain(final=True)
        rest, self._buf = self._buf, ""
        pieces.extend(self._emit(rest))
        return pieces

    def _drain(self, final: bool) -> list[str]:
        out: list[str] = []
        while self._buf:
            cut = self._find_cut(self._buf, final)
            if cut is None:
                break
            piece, self._buf = self._buf[:cut], self._buf[cut:].lstrip()
            out.extend(self._emit(piece))
        return out

    def _emit(self, piece: str) -> list[str]:
        if piece.strip().startswith("```"):
            self._in_code = not self._in_code  # code is not read aloud
            return []
        if self._in_code:
            return []
        cleaned = clean_for_speech(piece)
        if not cleaned:
            return []
        self.pieces_released += 1
        return [cleaned]

    def _find_cut(self, buf: str, final: bool) -> int | None:
        boundary = self._first_boundary(buf, final)
        if self.pieces_released == 0 and not self._in_code:
            clause = self._first_clause(buf, boundary.cut if boundary else len(buf))
            if clause is not None:
                fires_at, cut = clause
                sentence_first = (
                    boundary is not None
                    and boundary.confirmed_at is not None
                    and (boundary.confirmed_at < fires_at)
                )
                if fires_at <= len(buf) and not sentence_first:
                    return cut
        if boundary is not None and boundary.confirmed_at is not None:
            return boundary.cut
        return None

    def _first_clause(self, buf: str, before: int) -> tuple[int, int] | None:
        """The first piece's early cut as (buffer length when it fires, cut position), the earlier firing of:
        a comma (streamed char by char, it fires when the buffer reaches first_clause_chars, or when the comma
        and its space arrive, if later), and a clause word ("that", "because", ...) after first_clause_words
        words (it fires when the word and the space after it have arrived; the cut goes before it)."""
        candidates = []
        comma = self._first_clause_comma(buf, before)
        if comma is not None:
            candidates.append((max(comma + 1, self.first_clause_chars), comma))
        for m in _CLAUSE_WORD.finditer(buf, 0, before):
            head = buf[: m.start()].strip()
            if len(head.split()) >= self.first_clause_words and len(head) >= self.min_clause_chars:
                candidates.append((m.end(), m.start()))
                break
        return min(candidates) if candidates else None

    def _first_clause_comma(self, buf: str, before: int) -> int | None:
        """Cut position after the first ", " leaving at least min_clause_chars, searching before `before`."""
        start = 0
        while True:
            i = buf.find(",", start, before)
            if i < 0 or i + 1 >= len(buf):
                return None
            if buf[i + 1].isspace() and len(buf[: i + 1].strip()) >= self.min_clause_chars:
                return i + 1
            start = i + 1

    def _first_boundary(self, buf: str, final: bool) -> _Boundary | None:
        """The first sentence end by position, confirmed or still waiting for the next word."""
        i = 0
        n = len(buf)
        while i < n:
            ch = buf[i]
            if ch == "\n":
                nxt = _first_alnum(buf, i)
                if nxt is not None:
                    return _Boundary(i, nxt + 1)
                return _Boundary(i, n if final else None)
            if ch not in _TERMINALS:
                i += 1
                continue
            j = i
            while j < n and buf[j] in _TERMINALS:
                j += 1
            punct = buf[i:j]
            while j < n and buf[j] in _CLOSERS:
                j += 1
            if j < n and not buf[j].isspace():
                i = j  # "3.5", "example.com", "e.g.," - not an end
                continue
            nxt = _first_alnum(buf, j)
            if nxt is None:
                # Nothing speakable after it yet: the end of the stream, or wait for the next word.
                return _Boundary(j, n if final else None)
            next_char = buf[nxt]
            if punct == ".":
                is_end = _is_full_stop(buf, i, next_char)
            elif set(punct) <= {".", "…"}:  # an ellipsis: "Well... maybe" goes on, "Well... The" ends
                is_end = next_char.isupper()
            else:
                is_end = True
            if is_end:
                return _Boundary(j, nxt + 1)
            i = j
        return None


def ends_sentence(piece: str) -> bool:
    """Whether a piece ends with sentence punctuation (closing quotes/brackets after it allowed): "Yes." does,
    "It was built in" (a reply cut off by the token limit) does not."""
    return piece.rstrip().rstrip(_CLOSERS).endswith(tuple(_TERMINALS))


def split_sentences(text: str, first_clause_chars: int = FIRST_CLAUSE_CHARS, min_clause_chars: int = 20) -> list[str]:
    """Split a whole text the way the streaming splitter would."""
    splitter = SentenceSplitter(first_clause_chars, min_clause_chars)
    return splitter.feed(text) + splitter.flush()
