"""The speech stages of `assistant stream`, built from the settings the way a session builds them: the TTS chain
(loaded at once) and, for chat messages, the dialogue model (loaded on the first chat message: a stream that
only speaks text never pays for it). A model the profile wants but that is not downloaded is replaced by the
bundled one, with a warning.

Needs the TTS engines' packages; llama-cpp-python for chat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assistant.config import Settings
from assistant.errors import ModelError
from assistant.profile import ResolvedSettings

log = logging.getLogger(__name__)

BUNDLED_LLM = "smollm2-135m"


def build_tts(settings: Settings, resolved: ResolvedSettings) -> Any:
    from assistant.tts.select import build_tts as build_chain
    from assistant.tts.select import options_from_settings

    options = options_from_settings(settings, resolved)
    return build_chain(resolved.tts_engine, options, on_fallback=lambda name, why: log.warning("Speech: %s", why))


def dialogue_factory(settings: Settings, resolved: ResolvedSettings) -> Callable[[], Any]:
    """A function that builds and loads the dialogue model (called on the speaker's thread)."""

    def build() -> Any:
        from assistant.dialogue import DialogueManager
        from assistant.models import locate

        cfg = settings.dialogue
        wanted = cfg.model if cfg.model != "auto" else getattr(resolved, "dialogue_model", BUNDLED_LLM)
        if Path(wanted).expanduser().exists():
            path, name = Path(wanted).expanduser(), Path(wanted).name
        else:
            try:
                path, name = locate(wanted, settings.models_dir), wanted
            except ModelError as e:
                if wanted == BUNDLED_LLM:
                    raise
                log.warning("Dialogue model: %s; using the bundled %s meanwhile", e, BUNDLED_LLM)
                path, name = locate(BUNDLED_LLM, settings.models_dir), BUNDLED_LLM
        manager = DialogueManager(
            path, cfg.system_prompt, n_ctx=cfg.context_tokens, max_tokens=cfg.max_tokens,
            temperature=cfg.temperature, history_budget_tokens=cfg.history_budget_tokens,
            n_threads=cfg.threads, name=name,
        )  # fmt: skip
        manager.load()
        return manager

    return build
