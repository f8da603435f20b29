"""Record the replies a speed twin is made to say (teacher forcing): a real model's answers to the bench questions.

Needs llama-cpp-python and the bundled SmolLM2-135M (or the model named). Run:

    .venv/bin/python -m assistant.bench.teacher [--model smollm2-135m] [--out FILE]

(FILE: assistant/bench/data/teacher_replies.yaml by default)

Each question is asked in a fresh conversation with the app's default system prompt and sampling settings (a
fixed seed), through the app's own DialogueManager.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from assistant.bench.turn import QUESTIONS
from assistant.config import DialogueSettings
from assistant.dialogue import DialogueManager
from assistant.models import locate

TEACHER_FILE = Path(__file__).parent / "data" / "teacher_replies.yaml"
MORE_QUESTIONS = (
    "Who wrote Romeo and Juliet?",
    "Why is the ocean salty?",
    "How do I boil an egg?",
    "What is the speed of light?",
)
SEED = 0


def record(model: str, models_dir: Path, questions: tuple[str, ...]) -> dict[str, str]:
    """{question: reply} from `model` with the default dialogue settings."""
    cfg = DialogueSettings()
    manager = DialogueManager(
        locate(model, models_dir), cfg.system_prompt, n_ctx=cfg.context_tokens, max_tokens=cfg.max_tokens,
        temperature=cfg.temperature, history_budget_tokens=cfg.history_budget_tokens, seed=SEED,
    )  # fmt: skip
    replies = {}
    for question in questions:
        manager.reset()
        replies[question] = manager.reply(question).text
    return replies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="registry name of the real model")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=TEACHER_FILE)
    args = parser.parse_args(argv)
    replies = record(args.model, args.models_dir, QUESTIONS + MORE_QUESTIONS)
    header = (
        f"# Replies said by the real {args.model} (default system prompt {DialogueSettings().system_prompt!r},\n"
        f"# temperature {DialogueSettings().temperature}, seed {SEED}), one fresh conversation per question.\n"
        "# Speed twins are made to say them token by token (dialogue.forced_replies; benchmarks only).\n"
        "# Recorded with: .venv/bin/python -m assistant.bench.teacher\n"
    )
    args.out.write_text(header + yaml.safe_dump(replies, sort_keys=False, allow_unicode=True, width=1000))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
