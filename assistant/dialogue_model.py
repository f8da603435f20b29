"""The dialogue model a conversation or a livestream loads, built in one place from the settings: the resolved
model (or the bundled one when that is not downloaded), its GPU offload, the scripted replies a benchmark forces.

Needs llama-cpp-python (through `assistant.dialogue`, imported when a model is built).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from assistant.config import Settings
from assistant.models import ModelChoice, locate_or_bundled
from assistant.profile import ResolvedSettings
from assistant.recommend import BUNDLED_LLM

if TYPE_CHECKING:
    from assistant.dialogue import DialogueManager

log = logging.getLogger(__name__)


def _log_substitute(choice: ModelChoice) -> None:
    log.warning("Dialogue model: %s; using the bundled %s meanwhile", choice.why, choice.name)


def build_dialogue(
    settings: Settings,
    resolved: ResolvedSettings,
    on_substitute: Callable[[ModelChoice], None] = _log_substitute,
) -> DialogueManager:
    """Build and load the dialogue model; `on_substitute` hears when the bundled model stands in for the one
    asked for (the session shows a notice, the livestream logs it). Raises ModelError when none can load."""
    from assistant.dialogue import DialogueManager
    from assistant.forced_reply import load_forced_replies

    cfg = settings.dialogue
    choice = locate_or_bundled(resolved.dialogue_model, BUNDLED_LLM, settings.models_dir)
    if choice.replaced is not None:
        on_substitute(choice)
    manager = DialogueManager(
        choice.path, cfg.system_prompt, n_ctx=cfg.context_tokens, max_tokens=cfg.max_tokens,
        temperature=cfg.temperature, history_budget_tokens=cfg.history_budget_tokens,
        n_threads=cfg.threads, n_gpu_layers=resolved.dialogue_gpu_layers, name=choice.name,
        forced_replies=load_forced_replies(cfg.forced_replies) if cfg.forced_replies else None,
    )  # fmt: skip
    manager.load()
    return manager
