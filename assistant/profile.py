"""Resolve `gpu_profile` (auto/low/medium/high) and every "auto" setting into concrete choices, recording where each
value came from (the profile, the user's file or the shipped defaults).

The profile picks the speech recognition model, the voice, the talking head and the dialogue model. A profile
never asks for work the machine cannot do in real time: `medium` or `high` on a machine without a CUDA GPU
steps down to `low` (1080p Wav2Lip on a CPU gave 4-17 s silences) and says so in `notices`. One exception, from
a measurement: when the profile's Wav2Lip checkpoint is on disk and this CPU renders Wav2Lip at 720p25 faster
than real time (with CPU_LIPSYNC_MIN_REALTIME to spare), the talking head stays Wav2Lip (at `standard`) instead
of the light engine. The measurement (a 2 s render, a few seconds with the model load) runs once per process.

Probing the GPU needs torch; it is imported only when the profile or a device needs the answer. Whether
llama.cpp can offload layers (`dialogue.gpu_layers: auto`) is asked of llama_cpp, imported only then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

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
CPU_PROFILE = "low"  # what medium/high step down to without a CUDA GPU
# Wav2Lip on a CPU only when it renders this much faster than real time: the margin is for the rest of a turn
# (speech recognition, the dialogue model and the voice share the cores) and for a machine busier than when measured.
CPU_LIPSYNC_MIN_REALTIME = 1.2
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


@lru_cache(maxsize=4)
def _measured_realtime(
    checkpoint: Path, mtime_ns: int, avatar: Path, options: tuple[tuple[str, object], ...]
) -> float | None:
    from assistant.errors import AssistantError
    from assistant.talking_head.wav2lip_engine import Wav2LipTalkingHead

    try:
        engine = Wav2LipTalkingHead(
            avatar, device="cpu", quality_mode=CPU_LIPSYNC_QUALITY, model_path=checkpoint, **dict(options)
        )
        try:
            return engine.measure_realtime()
        finally:
            engine.close()
    except (AssistantError, OSError, RuntimeError, ValueError) as e:  # no face, broken file, no torch...
        log.warning("cannot measure Wav2Lip on this CPU (%s); the light engine stands in", e)
        return None


def measure_cpu_lipsync(settings: Settings, engine: str) -> float | None:
    """Seconds of `engine` (wav2lip / wav2lip_gan) video rendered per second on this CPU at 720p25, end to end,
    with the config's Wav2Lip options; None when its checkpoint is not on disk (nothing is loaded then) or it
    cannot run. Measured once per process for a checkpoint file and options."""
    from assistant.talking_head.chain import wav2lip_config

    checkpoints, options = wav2lip_config(settings, CPU_LIPSYNC_QUALITY)
    checkpoint = checkpoints[engine]
    if not checkpoint.is_file():
        return None
    avatar = settings.project_path(settings.talking_head.avatar_image)
    key = tuple(sorted(options.items()))
    rate = _measured_realtime(checkpoint, checkpoint.stat().st_mtime_ns, avatar, key)
    if rate is not None:
        log.info("%s on this CPU at 720p25: %.2fx real time", engine, rate)
    return rate


def profile_for_gpu(gpu: GPUInfo | None) -> str:
    if gpu is None:
        return "low"
    if gpu.free_bytes >= HIGH_MIN_FREE_BYTES:
        return "high"
    if gpu.free_bytes >= MEDIUM_MIN_FREE_BYTES:
        return "medium"
    return "low"


def resolve(
    settings: Settings,
    probe: Callable[[], GPUInfo | None] = probe_cuda,
    llm_gpu_probe: Callable[[], bool] = llama_gpu_offload,
    cpu_lipsync_probe: Callable[[Settings, str], float | None] | None = None,
) -> ResolvedSettings:
    """The concrete choices for `settings` on this machine. `probe` finds the CUDA GPU, `llm_gpu_probe` says
    whether llama.cpp can offload layers, `cpu_lipsync_probe` (default `measure_cpu_lipsync`) how fast Wav2Lip
    runs on this CPU; tests inject them."""
    sources: dict[str, str] = {}
    notices: list[str] = []

    def origin(key: str) -> str:
        return "user config" if key in settings.user_keys else "default config"

    requested = settings.gpu_profile
    needs_probe = requested != "low" or "auto" in (
        settings.asr.device,
        settings.tts.device,
        settings.talking_head.device,
    )
    gpu = probe() if needs_probe else None
    if requested == "auto":
        profile = profile_for_gpu(gpu)
        sources["profile"] = (
            f"auto: {gpu.name} with {gpu.free_bytes / GIB:.1f} GiB free" if gpu else "auto: no CUDA GPU"
        )
    elif requested != CPU_PROFILE and gpu is None:
        # Without CUDA the profile's Wav2Lip, Coqui and bigger models run slower than real time: long silences.
        profile = CPU_PROFILE
        sources["profile"] = f"{origin('gpu_profile')}: {requested}, stepped down to {profile}: no CUDA GPU"
        notices.append(
            f"Profile {requested} needs a CUDA GPU and none was found (no CUDA device, or torch without CUDA); "
            f"using the {profile} profile's models and talking head, which keep up on a CPU"
        )
    else:
        profile = requested
        sources["profile"] = origin("gpu_profile")
    choice = PROFILES[profile]
    lipsync_note = ""
    # a stepped-down profile whose talking head is left to it: Wav2Lip stays if this CPU keeps up (measured)
    if (
        profile == CPU_PROFILE
        and requested not in ("auto", CPU_PROFILE)
        and settings.talking_head.engine == "auto"
    ):
        wanted = PROFILES[requested].talking_head_engine
        rate = (cpu_lipsync_probe or measure_cpu_lipsync)(settings, wanted)
        if rate is not None and rate >= CPU_LIPSYNC_MIN_REALTIME:
            choice = replace(choice, talking_head_engine=wanted, quality_mode=CPU_LIPSYNC_QUALITY)
            lipsync_note = f"{wanted} at {rate:.2f}x real time on this CPU"
            notices.append(
                f"The talking head stays {wanted} (at {CPU_LIPSYNC_QUALITY} quality): it renders at {rate:.2f}x "
                "real time on this CPU"
            )
        elif rate is not None:
            log.info("%s at %.2fx real time on this CPU (needs %.2fx): the light engine", wanted, rate,
                     CPU_LIPSYNC_MIN_REALTIME)  # fmt: skip

    def pick(key: str, configured: str | None, from_profile: str, sentinel: str | None = "auto") -> str:
        if configured is None or configured == sentinel:
            talking_head = key.startswith("talking_head.") and lipsync_note
            sources[key] = f"gpu_profile={profile}" + (f", {lipsync_note}" if talking_head else "")
            return from_profile
        sources[key] = origin(key)
        return configured

    def pick_device(key: str, configured: str) -> str:
        if configured != "auto":
            sources[key] = origin(key)
            return configured
        sources[key] = "auto: CUDA found" if gpu else "auto: no CUDA"
        return "cuda" if gpu else "cpu"

    def pick_gpu_layers(configured: int | str) -> int:
        if configured != "auto":
            sources["dialogue.gpu_layers"] = origin("dialogue.gpu_layers")
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
        requested_profile=requested,
        sources=sources,
        notices=tuple(notices),
    )
