"""Resolve `gpu_profile` (auto/low/medium/high) and every "auto" setting into concrete choices, recording where each
value came from (the profile, the user's file or the shipped defaults).

The profile picks the speech recognition model, the voice, the talking head and the dialogue model. With a CUDA
GPU, its free memory picks the profile (PROFILES). Without one, the profiles are CPU tiers (assistant.recommend):
`auto` takes the highest tier this CPU keeps quick, measured (assistant.capability: a second, once per machine),
and of that tier's dialogue model and recogniser the best ones on disk, so a downloaded model is used without the
user naming it; a named `medium` or `high` runs its tier's models (the bundled ones stand in until they are
downloaded) and says when this CPU is too slow for it. Voice and talking head on a CPU stay Piper and the light
engine, with one exception, from a measurement given to `resolve`: when this CPU renders a named profile's Wav2Lip
at 720p25 faster than real time (with CPU_LIPSYNC_MIN_REALTIME to spare), the talking head stays Wav2Lip (at
`standard`). That measurement renders video, so it lives with the talking head
(`assistant.talking_head.speed.measure_cpu_lipsync`) and is passed in by the callers that build one; without it
the CPU keeps the light engine. The dialogue workload's timing runs once per machine (cached).

Probing the GPU needs torch; it is imported only when the profile or a device needs the answer. Whether
llama.cpp can offload layers (`dialogue.gpu_layers: auto`) is asked of llama_cpp, imported only then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from assistant.capability import MachineSpeed
from assistant.config import Settings

log = logging.getLogger(__name__)

GIB = 1024**3
HIGH_MIN_FREE_BYTES = 10 * GIB  # XTTS + Whisper medium + Wav2Lip-GAN 1080p + GFPGAN fit in about 8 GiB
MEDIUM_MIN_FREE_BYTES = 4 * GIB  # Whisper small + VITS + Wav2Lip 720p fit in about 3 GiB


@dataclass(frozen=True)
class GPUInfo:
    name: str
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True)
class ProfileChoice:
    asr_model: str
    tts_engine: str
    coqui_model: str
    talking_head_engine: str
    quality_mode: str
    dialogue_model: str  # a registry name; a bigger one falls back to the bundled model until downloaded


PROFILES: dict[str, ProfileChoice] = {
    "low": ProfileChoice("whisper-tiny.en", "piper", "coqui-vits", "light", "standard", "smollm2-135m"),
    "medium": ProfileChoice("whisper-small", "coqui", "coqui-vits", "wav2lip", "standard", "llama-3.2-1b"),
    "high": ProfileChoice("whisper-medium", "coqui", "coqui-xtts-v2", "wav2lip_gan", "high", "llama-3.2-3b"),
}
CPU_PROFILE = "low"  # the bundled demo set; its choices are the base of every CPU tier (assistant.recommend)
# Wav2Lip on a CPU only when it renders this much faster than real time: the margin is for the rest of a turn
# (speech recognition, the dialogue model and the voice share the cores) and for a machine busier than when measured.
CPU_LIPSYNC_MIN_REALTIME = 1.2
AUTO_CPU_LIPSYNC = "wav2lip"  # what `auto` tries on a CPU (the GAN variant costs the same; medium's choice)
CPU_LIPSYNC_QUALITY = "standard"  # 720p25: 1080p30 costs 2.7x the blend and encode and 1.2x the network
ALL_LAYERS = -1  # llama.cpp's n_gpu_layers for "every layer"


@dataclass(frozen=True)
class ResolvedSettings:
    """Concrete choices for one run; `sources` maps each setting to where its value came from."""

    profile: str
    gpu: GPUInfo | None
    asr_model: str
    asr_device: str
    tts_engine: str
    coqui_model: str
    tts_device: str
    talking_head_engine: str
    quality_mode: str
    talking_head_device: str
    dialogue_model: str = PROFILES[CPU_PROFILE].dialogue_model
    dialogue_gpu_layers: int = 0  # llama.cpp n_gpu_layers: 0 = CPU only, -1 = all
    requested_profile: str = ""  # the profile asked for (auto, or one named in the config)
    sources: dict[str, str] = field(default_factory=dict)
    notices: tuple[str, ...] = ()  # why a choice differs from what the config asked for
    cpu_speed: MachineSpeed | None = None  # without CUDA: how fast this CPU ran the dialogue workload
    gpu_probed: bool = False  # the CUDA probe ran: `gpu` None then means this machine has no CUDA GPU

    @property
    def stepped_down(self) -> bool:
        """The config named a profile this machine cannot run, and `profile` is what replaced it."""
        return self.requested_profile not in ("", "auto", self.profile)

    def describe(self) -> list[str]:
        return [f"{key} = {self.value_of(key)}  ({src})" for key, src in self.sources.items()]

    def value_of(self, key: str) -> str:
        """The resolved value of a setting named as in `sources` (e.g. "asr.model")."""
        return str(getattr(self, _ATTR_OF.get(key, key)))


_ATTR_OF = {
    "asr.model": "asr_model",
    "asr.device": "asr_device",
    "tts.engine": "tts_engine",
    "tts.coqui_model": "coqui_model",
    "tts.device": "tts_device",
    "talking_head.engine": "talking_head_engine",
    "talking_head.quality_mode": "quality_mode",
    "talking_head.device": "talking_head_device",
    "dialogue.model": "dialogue_model",
    "dialogue.gpu_layers": "dialogue_gpu_layers",
}


def probe_cuda() -> GPUInfo | None:
    """The first CUDA device and its free memory, or None without CUDA (or without torch)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    try:
        free, total = torch.cuda.mem_get_info(0)
        return GPUInfo(torch.cuda.get_device_name(0), int(total), int(free))
    except RuntimeError as e:  # a broken driver: treat as no GPU, say why
        log.warning("CUDA is present but unusable: %s", e)
        return None


def llama_gpu_offload() -> bool:
    """Whether the installed llama.cpp was built with GPU offload (CUDA, Metal, Vulkan...); False without it."""
    try:
        import llama_cpp
    except ImportError:
        return False
    try:
        return bool(llama_cpp.llama_supports_gpu_offload())
    except (AttributeError, OSError) as e:  # an old or broken build: run on the CPU, say why in the log
        log.warning("cannot ask llama.cpp whether it supports GPU offload: %s", e)
        return False


def profile_for_gpu(gpu: GPUInfo | None) -> str:
    if gpu is None:
        return "low"
    if gpu.free_bytes >= HIGH_MIN_FREE_BYTES:
        return "high"
    if gpu.free_bytes >= MEDIUM_MIN_FREE_BYTES:
        return "medium"
    return "low"


def measure_cpu_speed(settings: Settings) -> MachineSpeed | None:
    """This CPU's speed for the dialogue model's workload (assistant.capability; cached per machine), or None
    when the bundled model cannot be timed (then the CPU gets the `low` tier)."""
    from assistant.capability import measure_machine
    from assistant.errors import AssistantError
    from assistant.models import locate
    from assistant.recommend import BUNDLED_LLM

    try:
        bundled = locate(BUNDLED_LLM, settings.models_dir)
        return measure_machine(settings.cache_dir, bundled, settings.dialogue.threads)
    except AssistantError as e:
        log.warning("cannot time this CPU (%s): the low profile's models", e)
        return None


@dataclass
class _Resolution:
    """What resolve() decides step by step: the profile, its models, where each value came from, and why."""

    settings: Settings
    gpu: GPUInfo | None
    gpu_probed: bool = False
    profile: str = ""
    choice: ProfileChoice = PROFILES[CPU_PROFILE]
    sources: dict[str, str] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    lipsync_note: str = ""
    cpu_speed: MachineSpeed | None = None

    def origin(self, key: str) -> str:
        return "user config" if key in self.settings.user_keys else "default config"


def _gpu_profile(res: _Resolution) -> None:
    requested, gpu = res.settings.gpu_profile, res.gpu
    if requested == "auto":
        res.profile = profile_for_gpu(gpu)
        assert gpu is not None  # auto without a GPU is _cpu_profile's
        res.sources["profile"] = f"auto: {gpu.name} with {gpu.free_bytes / GIB:.1f} GiB free"
    else:
        res.profile = requested
        res.sources["profile"] = res.origin("gpu_profile")
    res.choice = PROFILES[res.profile]


def _cpu_profile(res: _Resolution, speed: MachineSpeed | None) -> None:
    """No CUDA GPU: the tier this CPU sustains (auto, with the best of its models on disk), or the one named."""
    from assistant.recommend import CPU_TIERS, TIER_BY_PROFILE, best_present, sustained_tier, tier_cost

    requested, models = res.settings.gpu_profile, res.settings.models_dir
    res.cpu_speed = speed
    if requested == "auto":
        tier = sustained_tier(speed) if speed else CPU_TIERS[0]
        llm, asr = best_present(tier, "llm", models), best_present(tier, "asr", models)
        timed = f"{speed.workload.total_s:.2f} s for the dialogue workload" if speed else "not timed"
        res.sources["profile"] = f"auto: no CUDA GPU, this CPU sustains {tier.profile} ({timed})"
    else:
        tier = TIER_BY_PROFILE[requested]
        llm, asr = tier.dialogue_model, tier.asr_model
        res.sources["profile"] = f"{res.origin('gpu_profile')}: {requested} on a CPU (no CUDA GPU)"
        cost = tier_cost(tier, speed) if speed else None
        if cost is not None and not cost.sustained and cost.llm_s is not None:
            res.notices.append(
                f"Profile {requested} on this CPU: its dialogue model needs about {cost.llm_s:.1f} s before the "
                "first sentence, so replies start late; gpu_profile auto picks what this CPU keeps quick"
            )
    res.profile = tier.profile
    res.choice = replace(PROFILES[CPU_PROFILE], asr_model=asr, dialogue_model=llm)


def _cpu_wav2lip(res: _Resolution, probe: Callable[[Settings, str], float | None]) -> None:
    """No GPU, the talking head left to the profile (auto, medium, high; not the demo's low): Wav2Lip when its
    weights are on disk (the probe says None without them, loading nothing) and this CPU keeps up with it."""
    requested = res.settings.gpu_profile
    if res.gpu is not None or requested == CPU_PROFILE or res.settings.talking_head.engine != "auto":
        return
    wanted = AUTO_CPU_LIPSYNC if requested == "auto" else PROFILES[requested].talking_head_engine
    rate = probe(res.settings, wanted)
    if rate is not None and rate >= CPU_LIPSYNC_MIN_REALTIME:
        res.choice = replace(res.choice, talking_head_engine=wanted, quality_mode=CPU_LIPSYNC_QUALITY)
        res.lipsync_note = f"{wanted} at {rate:.2f}x real time on this CPU"
        res.notices.append(
            f"The talking head stays {wanted} (at {CPU_LIPSYNC_QUALITY} quality): it renders at {rate:.2f}x "
            "real time on this CPU"
        )
    elif rate is not None:
        log.info("%s at %.2fx real time on this CPU (needs %.2fx): the light engine", wanted, rate,
                 CPU_LIPSYNC_MIN_REALTIME)  # fmt: skip


def resolve(
    settings: Settings,
    probe: Callable[[], GPUInfo | None] = probe_cuda,
    llm_gpu_probe: Callable[[], bool] = llama_gpu_offload,
    cpu_lipsync_probe: Callable[[Settings, str], float | None] | None = None,
    cpu_speed_probe: Callable[[Settings], MachineSpeed | None] | None = None,
) -> ResolvedSettings:
    """The concrete choices for `settings` on this machine. `probe` finds the CUDA GPU, `llm_gpu_probe` says
    whether llama.cpp can offload layers, `cpu_lipsync_probe` how fast Wav2Lip (settings, engine) renders on this
    CPU in seconds of video per second (`assistant.talking_head.speed.measure_cpu_lipsync`; asked only when the
    answer can change the talking head; None: not measured, a CPU keeps the light engine), `cpu_speed_probe`
    (default `measure_cpu_speed`) how fast this CPU runs the dialogue model; tests inject them."""
    needs_probe = settings.gpu_profile != "low" or "auto" in (
        settings.asr.device,
        settings.tts.device,
        settings.talking_head.device,
    )
    res = _Resolution(settings, probe() if needs_probe else None, gpu_probed=needs_probe)
    if res.gpu is not None or settings.gpu_profile == CPU_PROFILE:
        _gpu_profile(res)
    else:
        _cpu_profile(res, (cpu_speed_probe or measure_cpu_speed)(settings))
    if cpu_lipsync_probe is not None:
        _cpu_wav2lip(res, cpu_lipsync_probe)
    return _resolved(res, llm_gpu_probe)


def _resolved(res: _Resolution, llm_gpu_probe: Callable[[], bool]) -> ResolvedSettings:
    settings, sources, profile, choice, gpu = res.settings, res.sources, res.profile, res.choice, res.gpu

    def pick(key: str, configured: str | None, from_profile: str, sentinel: str | None = "auto") -> str:
        if configured is None or configured == sentinel:
            talking_head = key.startswith("talking_head.") and res.lipsync_note
            sources[key] = f"gpu_profile={profile}" + (f", {res.lipsync_note}" if talking_head else "")
            return from_profile
        sources[key] = res.origin(key)
        return configured

    def pick_device(key: str, configured: str) -> str:
        if configured != "auto":
            sources[key] = res.origin(key)
            return configured
        sources[key] = "auto: CUDA found" if gpu else "auto: no CUDA"
        return "cuda" if gpu else "cpu"

    def pick_gpu_layers(configured: int | str) -> int:
        if configured != "auto":
            sources["dialogue.gpu_layers"] = res.origin("dialogue.gpu_layers")
            return int(configured)
        if llm_gpu_probe():
            sources["dialogue.gpu_layers"] = "auto: llama.cpp built with GPU offload"
            return ALL_LAYERS
        sources["dialogue.gpu_layers"] = "auto: llama.cpp built without GPU offload"
        return 0

    th = settings.talking_head
    return ResolvedSettings(
        profile=profile,
        gpu=gpu,
        asr_model=pick("asr.model", settings.asr.model, choice.asr_model),
        asr_device=pick_device("asr.device", settings.asr.device),
        tts_engine=pick("tts.engine", settings.tts.engine, choice.tts_engine),
        coqui_model=pick("tts.coqui_model", settings.tts.coqui_model, choice.coqui_model),
        tts_device=pick_device("tts.device", settings.tts.device),
        talking_head_engine=pick("talking_head.engine", th.engine, choice.talking_head_engine),
        quality_mode=pick("talking_head.quality_mode", th.quality_mode, choice.quality_mode, sentinel=None),
        talking_head_device=pick_device("talking_head.device", th.device),
        dialogue_model=pick("dialogue.model", settings.dialogue.model, choice.dialogue_model),
        dialogue_gpu_layers=pick_gpu_layers(settings.dialogue.gpu_layers),
        requested_profile=settings.gpu_profile,
        sources=sources,
        notices=tuple(res.notices),
        cpu_speed=res.cpu_speed,
        gpu_probed=res.gpu_probed,
    )
