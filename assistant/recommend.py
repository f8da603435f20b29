"""Which models a CPU machine should run, from what it sustains: the tiers `low`/`medium`/`high` mean on a CPU, the
predicted cost of each tier on this machine, and the recommendation the app offers (what to download, how big,
under which licence, what it changes).

A tier's cost is measured, not guessed from its name: REFERENCE_LLM_S holds each dialogue model's seconds for the
workload of assistant.capability (a prompt, then a short first sentence), measured on the reference machine with
the model's speed twin (`assistant models twin NAME`; same shape, vocabulary size and quantisation, random
weights), and REFERENCE_ASR_S each recogniser's median seconds on `assistant bench asr`'s clips, measured the same
way. This machine's time for the workload on the bundled model, against the reference machine's, scales them.
A tier is sustained when its predicted dialogue and recognition times stay within the budgets of a quick turn.

Pure functions over dataclasses; the only measurement is assistant.capability's, injected by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from assistant.capability import MachineSpeed
from assistant.errors import AssistantError
from assistant.models import ModelSpec, get_spec, state

BUNDLED_LLM = "smollm2-135m"
BUNDLED_ASR = "whisper-tiny.en"


@dataclass(frozen=True)
class Tier:
    """What a profile gives on a machine without a CUDA GPU."""

    profile: str  # low | medium | high
    dialogue_model: str  # registry names
    asr_model: str
    gives: str  # what it gives, in a user's words (the settings dialog shows it)


CPU_TIERS: tuple[Tier, ...] = (
    Tier("low", BUNDLED_LLM, BUNDLED_ASR,
         "offline demo models (bundled): quick, but answers are often wrong and words are misheard"),
    Tier("medium", "llama-3.2-1b", "whisper-base.en",
         "Llama 3.2 1B and Whisper base.en: right answers to everyday questions far more often"),
    Tier("high", "llama-3.2-3b", "whisper-small.en",
         "Llama 3.2 3B and Whisper small.en: the best answers, for a fast CPU"),
)  # fmt: skip
TIER_BY_PROFILE = {t.profile: t for t in CPU_TIERS}

# The reference machine: 2 cores of an Intel Xeon with AMX, llama-cpp-python 0.3.36, load about 1.
# REFERENCE_MACHINE_S: the bundled model's workload seconds there (assistant.capability.time_llm_workload).
# REFERENCE_LLM_S: each model's workload seconds there, from its speed twin: `assistant bench tiers --rounds 7`
#   (ratio to the bundled model, interleaved, times REFERENCE_MACHINE_S). 1B-class twins measured at the same time:
#   qwen2.5-1.5b 1.73 s, gemma-3-1b 1.72 s, smollm2-1.7b 1.93 s: Llama 3.2 1B is the one that fits the budget.
# REFERENCE_ASR_S: each recogniser's median ASR seconds on `assistant bench asr`'s 65 clips, from its speed twin
#   forced to tiny.en's transcripts (`assistant bench asr --twin NAME`, load about 3); distil-small.en: 0.37 s.
REFERENCE_MACHINE_S = 0.30
REFERENCE_LLM_S: dict[str, float] = {
    BUNDLED_LLM: 0.30,
    "llama-3.2-1b": 1.35,
    "qwen2.5-1.5b": 1.73,
    "gemma-3-1b": 1.72,
    "smollm2-1.7b": 1.93,
    "llama-3.2-3b": 3.28,
}
REFERENCE_ASR_S: dict[str, float] = {
    BUNDLED_ASR: 0.13,
    "whisper-base.en": 0.20,
    "distil-small.en": 0.37,
    "whisper-small.en": 0.49,
}
# A quick turn, in the workload's seconds on this machine: the dialogue model's share before its first sentence
# exists, and the recogniser's. On the reference machine the demo set takes 0.30 + 0.13, the medium tier 1.35 + 0.20
# (its first word about 1.1 s later), the high tier 3.28 + 0.49 (too slow there; a CPU 2.2x as fast keeps it quick).
LLM_BUDGET_S = 1.5
ASR_BUDGET_S = 0.5
# Inside the app the stream's encoder, the player and the voice share the cores: on the reference machine the medium
# tier's first word came 1.7 s after the demo set's at the speaker (`bench live`, twin of llama-3.2-1b, + base.en's
# ASR), where the workload predicts 1.1 s. The offer scales the predicted difference by this much.
IN_APP_SLOWDOWN = 1.5


@dataclass(frozen=True)
class TierCost:
    """A tier's predicted seconds on this machine (scaled reference measurements: COMPUTED, not timed here)."""

    tier: Tier
    llm_s: float | None  # None: no reference measurement for its model
    asr_s: float | None

    @property
    def sustained(self) -> bool:
        return (
            self.llm_s is not None and self.asr_s is not None
            and self.llm_s <= LLM_BUDGET_S and self.asr_s <= ASR_BUDGET_S
        )  # fmt: skip


def speed_factor(speed: MachineSpeed) -> float:
    """How much slower than the reference machine this one runs the workload (2.0 = twice as slow)."""
    return speed.workload.total_s / REFERENCE_MACHINE_S


def tier_cost(tier: Tier, speed: MachineSpeed) -> TierCost:
    factor = speed_factor(speed)
    llm = REFERENCE_LLM_S.get(tier.dialogue_model)
    asr = REFERENCE_ASR_S.get(tier.asr_model)
    return TierCost(tier, None if llm is None else llm * factor, None if asr is None else asr * factor)


def sustained_tier(speed: MachineSpeed) -> Tier:
    """The highest tier this machine keeps quick; `low` always (it is the floor)."""
    best = CPU_TIERS[0]
    for tier in CPU_TIERS[1:]:
        if tier_cost(tier, speed).sustained:
            best = tier
    return best


def usable(name: str, models_dir: Path, registry: Mapping[str, ModelSpec] | None = None) -> bool:
    try:
        return state(name, models_dir, registry=registry).usable
    except AssistantError:
        return False


def best_present(
    tier: Tier, kind: str, models_dir: Path, registry: Mapping[str, ModelSpec] | None = None
) -> str:
    """The model of `kind` ("llm" or "asr") of `tier` if it is on disk, else that of the highest lower tier that
    is: a CPU machine uses the best downloaded model it sustains without the user naming it."""
    attr = "dialogue_model" if kind == "llm" else "asr_model"
    ladder = [t for t in CPU_TIERS if CPU_TIERS.index(t) <= CPU_TIERS.index(tier)]
    for candidate in reversed(ladder):
        name = getattr(candidate, attr)
        if usable(name, models_dir, registry):
            return name
    return getattr(CPU_TIERS[0], attr)


@dataclass(frozen=True)
class Recommendation:
    """The set this machine should run and what getting it takes; `demo_in_use`: the bundled demo models answer."""

    tier: Tier
    to_download: tuple[ModelSpec, ...]  # its models not on disk yet
    download_bytes: int
    extra_first_word_s: float | None  # predicted: how much later the first word comes than with the demo set
    demo_in_use: bool
    cost: TierCost

    @property
    def offer(self) -> bool:
        """There is something better to download for this machine."""
        return bool(self.to_download)

    def licences(self) -> list[str]:
        return [f"{spec.name}: {spec.licence}" for spec in self.to_download]


def recommend(
    speed: MachineSpeed,
    models_dir: Path,
    dialogue_in_use: str,
    asr_in_use: str,
    registry: Mapping[str, ModelSpec] | None = None,
) -> Recommendation:
    """What this machine should run (the highest sustained tier), what of it is missing, and what it changes."""
    tier = sustained_tier(speed)
    missing = [
        get_spec(name, registry)
        for name in (tier.dialogue_model, tier.asr_model)
        if not usable(name, models_dir, registry)
    ]
    size = sum(spec.size_bytes or 0 for spec in missing)
    cost, demo = tier_cost(tier, speed), tier_cost(CPU_TIERS[0], speed)
    extra = None
    if None not in (cost.llm_s, cost.asr_s, demo.llm_s, demo.asr_s):
        extra = IN_APP_SLOWDOWN * ((cost.llm_s + cost.asr_s) - (demo.llm_s + demo.asr_s))  # type: ignore[operator]
    in_demo = dialogue_in_use == BUNDLED_LLM or asr_in_use == BUNDLED_ASR
    return Recommendation(tier, tuple(missing), size, extra, in_demo, cost)
