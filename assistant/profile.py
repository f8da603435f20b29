"""Resolve `gpu_profile` (auto/low/medium/high) and every "auto" setting into concrete choices, recording where each
value came from (the profile, the user's file or the shipped defaults).

Probing the GPU needs torch; it is imported only when the profile is auto or a device is auto.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

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


PROFILES: dict[str, ProfileChoice] = {
    "low": ProfileChoice("whisper-tiny.en", "piper", "coqui-vits", "light", "standard"),
    "medium": ProfileChoice("whisper-small", "coqui", "coqui-vits", "wav2lip", "standard"),
    "high": ProfileChoice("whisper-medium", "coqui", "coqui-xtts-v2", "wav2lip_gan", "high"),
}


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
    sources: dict[str, str] = field(default_factory=dict)

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


def profile_for_gpu(gpu: GPUInfo | None) -> str:
    if gpu is None:
        return "low"
    if gpu.free_bytes >= HIGH_MIN_FREE_BYTES:
        return "high"
    if gpu.free_bytes >= MEDIUM_MIN_FREE_BYTES:
        return "medium"
    return "low"


def resolve(settings: Settings, probe: Callable[[], GPUInfo | None] = probe_cuda) -> ResolvedSettings:
    sources: dict[str, str] = {}

    def origin(key: str) -> str:
        return "user config" if key in settings.user_keys else "default config"

    needs_probe = settings.gpu_profile == "auto" or "auto" in (
        settings.asr.device,
        settings.tts.device,
        settings.talking_head.device,
    )
    gpu = probe() if needs_probe else None
    if settings.gpu_profile == "auto":
        profile = profile_for_gpu(gpu)
        sources["profile"] = f"auto: {gpu.name} with {gpu.free_bytes / GIB:.1f} GiB free" if gpu else "auto: no CUDA GPU"
    else:
        profile = settings.gpu_profile
        sources["profile"] = origin("gpu_profile")
    choice = PROFILES[profile]

    def pick(key: str, configured: str | None, from_profile: str, sentinel: str | None = "auto") -> str:
        if configured is None or configured == sentinel:
            sources[key] = f"gpu_profile={profile}"
            return from_profile
        sources[key] = origin(key)
        return configured

    def pick_device(key: str, configured: str) -> str:
        if configured != "auto":
            sources[key] = origin(key)
            return configured
        sources[key] = "auto: CUDA found" if gpu else "auto: no CUDA"
        return "cuda" if gpu else "cpu"

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
        sources=sources,
    )
