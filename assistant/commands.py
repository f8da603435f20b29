"""Spoken commands: a transcript that asks the assistant itself for something ("new conversation") instead of
asking the language model a question. Needs nothing; the pipeline checks each turn's transcript here first.

A command is the whole utterance, give or take politeness ("Okay, let's start over, please."), in any case and
with whatever punctuation Whisper adds. The same words inside a question are a question: "How do I start over
in chess?" goes to the language model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SpokenCommand:
    name: str
    reply: str  # what the assistant says back, without asking the language model


NEW_CONVERSATION = SpokenCommand("new_conversation", "Okay, let's start a new conversation.")

_PHRASES = {
    NEW_CONVERSATION: (
        "new conversation", "start a new conversation", "start new conversation", "begin a new conversation",
        "start a fresh conversation", "start over", "start again", "begin again", "start from scratch",
        "forget everything", "forget everything we said", "reset the conversation", "clear the conversation",
    ),
}  # fmt: skip
# Politeness around a command, apostrophes dropped ("let's" -> "lets"); stripped from either end, longest first.
# Not "can you" / "could you": "Could you start again?" after a story asks to hear it again.
_BEFORE = (
    "okay", "ok", "alright", "all right", "right", "so", "well", "um", "uh", "hey", "please", "now",
    "can we", "could we", "lets", "let us", "i want to", "id like to", "i would like to",
    "we should", "i want a", "id like a", "a",
)  # fmt: skip
_AFTER = ("please", "now", "then", "thanks", "thank you", "okay", "ok")


def _normalised(transcript: str) -> str:
    """Lower case letters and single spaces: "Let's start over!" -> "lets start over"."""
    text = transcript.lower().replace("'", "").replace("\u2019", "")
    return " ".join(re.sub(r"[^a-z]+", " ", text).split())


def _strip(text: str, fillers: tuple[str, ...], at_start: bool) -> str:
    by_length = sorted(fillers, key=len, reverse=True)
    while True:
        for filler in by_length:
            if at_start and text.startswith(filler + " "):
                text = text[len(filler) + 1 :]
                break
            if not at_start and text.endswith(" " + filler):
                text = text[: -len(filler) - 1]
                break
        else:
            return text


def recognise_command(transcript: str) -> SpokenCommand | None:
    """The command `transcript` is, or None when it is something to answer."""
    core = _strip(_strip(_normalised(transcript), _BEFORE, at_start=True), _AFTER, at_start=False)
    for command, phrases in _PHRASES.items():
        if core in phrases:
            return command
    return None
