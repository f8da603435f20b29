"""`assistant bench lipsync`: frames per second of every talking-head engine at each quality mode on this machine,
and the time to render 5 s of speech (video encoding included, as in the app).

Wav2Lip runs the real network; without a downloaded checkpoint it uses the spec's formula weights (same network,
same cost, meaningless faces), so the speed figure is true either way. The audio is synthetic speech-like sound
(voiced syllables with pauses and fricatives), so no TTS model is needed. Needs ffmpeg; torch for Wav2Lip.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assistant.audio.io import write_wav
from assistant.errors import AssistantError
from assistant.talking_head.base import ENGINE_NAMES, TalkingHeadEngine

if TYPE_CHECKING:
    from assistant.talking_head.wav2lip_fast import PrecisionError

log = logging.getLogger(__name__)

QUALITIES = ("standard", "high")


@dataclass(frozen=True)
class LipsyncBenchRow:
    engine: str
    quality_mode: str
    width: int
    height: int
    fps: float
    device: str
    weights: str  # "checkpoint", "formula" or "none"
    audio_s: float
    frames: int
    setup_s: float  # building the engine: model load, face detection, precomputation (once per avatar)
    render_s: float  # audio file -> finished MP4
    frames_per_s: float
    realtime_factor: float  # seconds of video per second of work; >= 1 keeps up with speech
    error: str | None = None
    # Wav2Lip's arithmetic: fp32 / bf16 on a CPU (float16 on CUDA); "" for the other engines
    precision: str = ""
    # A reduced precision's distance from the exact fp32 network on this speech, over the face rows the blend shows
    max_diff_255: float | None = None  # largest difference of a pixel, levels of 255
    psnr_db: float | None = None


def speech_like_wav(
    path: str | Path, seconds: float = 5.0, sample_rate_hz: int = 22050, seed: int = 0
) -> Path:
    """Write a speech-like test signal: ~4 syllables/s of voiced vowels (110-150 Hz pitch, shifting formants),
    some hissing consonants and short pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate_hz)
    t = np.arange(n) / sample_rate_hz
    f0 = 130 + 20 * np.sin(2 * np.pi * 0.4 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate_hz
    out = np.zeros(n, np.float64)
    pos = 0.2
    while pos < seconds - 0.3:
        dur = rng.uniform(0.12, 0.28)
        a, b = int(pos * sample_rate_hz), int(min(seconds, pos + dur) * sample_rate_hz)
        env = np.sin(np.linspace(0, np.pi, b - a)) ** 0.7
        f1, f2 = rng.uniform(300, 850), rng.uniform(900, 2400)  # vowel formants
        k = np.arange(1, 30)[:, None]
        gain = np.exp(-(((k * f0[a:b] - f1) / 150) ** 2)) + 0.5 * np.exp(-(((k * f0[a:b] - f2) / 250) ** 2))
        out[a:b] += env * (gain * np.sin(k * phase[a:b])).sum(0) * rng.uniform(0.5, 1.0)
        if rng.random() < 0.3:  # a fricative after the vowel
            m = int(0.08 * sample_rate_hz)
            hiss = np.diff(rng.standard_normal(m + 1)) * 0.08
            out[b : b + m] += hiss[: max(0, min(m, n - b))]
        pos += dur + rng.choice([0.03, 0.06, 0.25], p=[0.6, 0.3, 0.1])
    out /= max(1e-9, np.abs(out).max()) / 0.6
    return write_wav(path, out.astype(np.float32), sample_rate_hz)


def run_lipsync_bench(
    avatar_image: str | Path,
    engines: Sequence[str] = ENGINE_NAMES,
    qualities: Sequence[str] = QUALITIES,
    seconds: float = 5.0,
    device: str = "cpu",
    checkpoints: dict[str, Path] | None = None,
    workdir: str | Path | None = None,
    progress: Callable[[LipsyncBenchRow], None] | None = None,
    wav2lip_options: dict[str, object] | None = None,
) -> list[LipsyncBenchRow]:
    """Build and time each engine at each quality mode; a failure becomes a row with `error` set.
    `wav2lip_options` go to Wav2LipTalkingHead (e.g. use_half_precision=False for the exact fp32 network)."""
    from assistant.talking_head.base import RenderSettings
    from assistant.talking_head.chain import default_factories

    rows: list[LipsyncBenchRow] = []
    with tempfile.TemporaryDirectory(prefix="bench-lipsync-") as tmp:
        work = Path(workdir) if workdir is not None else Path(tmp)
        audio = speech_like_wav(work / "speech.wav", seconds)
        weights: dict[str, str] = {}
        ckpts: dict[str, Path] = {}
        for name in ("wav2lip", "wav2lip_gan"):
            given = (checkpoints or {}).get(name)
            if name not in engines:
                continue
            if given is not None and Path(given).is_file():
                ckpts[name], weights[name] = Path(given), "checkpoint"
            else:
                from assistant.talking_head.formula_weights import save_formula_checkpoint

                ckpts[name], weights[name] = save_formula_checkpoint(work / f"{name}-formula.pth"), "formula"
        for quality in qualities:
            settings = RenderSettings.for_quality(quality)
            factories = default_factories(
                avatar_image, settings, device=device, checkpoints=ckpts, wav2lip_options=wav2lip_options
            )
            for name in engines:
                runs_on = device if name.startswith("wav2lip") else "cpu"
                row_base = {
                    "engine": name, "quality_mode": quality, "width": settings.width, "height": settings.height,
                    "fps": settings.fps, "device": runs_on, "weights": weights.get(name, "none"), "audio_s": seconds,
                }  # fmt: skip
                engine: TalkingHeadEngine | None = None
                try:
                    t0 = time.perf_counter()
                    engine = factories[name]()
                    setup = time.perf_counter() - t0
                    t1 = time.perf_counter()
                    video = engine.render(audio, work / f"{name}-{quality}.mp4")
                    render = time.perf_counter() - t1
                    precision, err = _precision(engine, audio)
                    row = LipsyncBenchRow(
                        **row_base, frames=video.frames, setup_s=round(setup, 3), render_s=round(render, 3),  # type: ignore[arg-type]
                        frames_per_s=round(video.frames / render, 2), realtime_factor=round(seconds / render, 2),
                        precision=precision, max_diff_255=round(err.max_diff_255, 2) if err else None,
                        psnr_db=round(err.psnr_db, 1) if err else None,
                    )  # fmt: skip
                except (AssistantError, OSError, RuntimeError, ValueError) as e:
                    log.warning("bench lipsync: %s at %s failed: %s", name, quality, e)
                    row = LipsyncBenchRow(
                        **row_base, frames=0, setup_s=0.0, render_s=0.0, frames_per_s=0.0,  # type: ignore[arg-type]
                        realtime_factor=0.0, error=f"{type(e).__name__}: {e}",
                    )  # fmt: skip
                finally:
                    closer = getattr(engine, "close", None) or getattr(engine, "cleanup", None)
                    if closer is not None:
                        closer()
                rows.append(row)
                if progress is not None:
                    progress(row)
    return rows


def _precision(engine: TalkingHeadEngine, audio: Path) -> tuple[str, PrecisionError | None]:
    """A Wav2Lip engine's precision and, when reduced, its error against fp32 on the bench's speech."""
    info = getattr(engine, "get_model_info", None)
    if info is None:
        return "", None
    from assistant.audio.io import load_audio

    measure = getattr(engine, "precision_error", None)
    err = measure(load_audio(audio, 16000)) if measure is not None else None
    return str(info().get("precision", "")), err


def format_table(rows: Sequence[LipsyncBenchRow]) -> str:
    head = (
        f"{'engine':<12}{'quality':<10}{'size':>10}{'fps':>5}  {'weights':<10}{'setup s':>8}{'5 s audio':>10}"
    )
    head += f"{'frames/s':>10}{'x real time':>12}  {'precision':<10}{'vs fp32':<16}"
    lines = [
        head.replace("5 s audio", f"{rows[0].audio_s:g} s audio" if rows else "render s"),
        "-" * len(head),
    ]
    for r in rows:
        if r.error:
            lines.append(f"{r.engine:<12}{r.quality_mode:<10}failed: {r.error}")
            continue
        lines.append(
            f"{r.engine:<12}{r.quality_mode:<10}{f'{r.width}x{r.height}':>10}{r.fps:>5g}  {r.weights:<10}"
            f"{r.setup_s:>8.2f}{r.render_s:>10.2f}{r.frames_per_s:>10.1f}{r.realtime_factor:>12.2f}"
            f"  {r.precision or '-':<10}"
            + (f"max {r.max_diff_255:g}/255, {r.psnr_db:g} dB" if r.max_diff_255 is not None else "-")
        )
    return "\n".join(lines)


def register(bench_sub: argparse._SubParsersAction) -> None:
    parser = bench_sub.add_parser("lipsync", help="frames/s of each talking-head engine at each quality mode")
    parser.add_argument("--engines", nargs="+", choices=ENGINE_NAMES, default=list(ENGINE_NAMES))
    parser.add_argument("--quality", nargs="+", choices=QUALITIES, default=list(QUALITIES), dest="qualities")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the test speech (default 5)")
    parser.add_argument(
        "--avatar", metavar="IMAGE", help="photo to animate (default: talking_head.avatar_image)"
    )
    parser.add_argument("--device", default="cpu", help="Wav2Lip device: cpu, cuda or cuda:N (default cpu)")
    parser.add_argument(
        "--fp32",
        action="store_true",
        help="Wav2Lip in exact fp32 (default: bf16 on CPUs that have it, fp16 on CUDA)",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    from assistant.config import load_settings

    settings = load_settings(getattr(args, "config", None))
    th = settings.talking_head
    avatar = Path(args.avatar) if args.avatar else settings.project_path(th.avatar_image)
    if not avatar.is_file():
        raise AssistantError(
            f"Avatar image not found: {avatar}; pass --avatar PHOTO or set talking_head.avatar_image"
        )
    if not 0.5 <= args.seconds <= 300:
        raise AssistantError(f"--seconds must be between 0.5 and 300, got {args.seconds}")
    checkpoints = {
        "wav2lip": settings.project_path(th.models.wav2lip),
        "wav2lip_gan": settings.project_path(th.models.wav2lip_gan),
    }

    def show(row: LipsyncBenchRow) -> None:
        if not args.json:
            state = row.error or f"{row.frames_per_s:.1f} frames/s, {row.realtime_factor:.2f}x real time"
            print(f"  {row.engine} {row.quality_mode}: {state}", flush=True)

    options = {"use_half_precision": False} if args.fp32 else None
    rows = run_lipsync_bench(
        avatar, args.engines, args.qualities, args.seconds, args.device, checkpoints, progress=show,
        wav2lip_options=options,
    )  # fmt: skip
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(format_table(rows))
    return 1 if all(r.error for r in rows) else 0
