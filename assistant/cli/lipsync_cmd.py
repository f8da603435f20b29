"""`assistant lipsync IMAGE AUDIO -o OUT.mp4`: make a talking-head video of a photo saying an audio file.

Runs the same fallback chain as the app (wav2lip_gan -> wav2lip -> light -> static, from the chosen engine down),
so the output always exists when any engine works; `--json` says which engine ran and why others did not.
Defaults (engine, quality, device, frame size, checkpoints) come from the config and gpu_profile.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2

from assistant.errors import TalkingHeadError
from assistant.inputs import MAX_LIPSYNC_AUDIO_S, check_audio_file, check_input_file, check_output_file
from assistant.talking_head.base import ENGINE_NAMES

if TYPE_CHECKING:
    from assistant.config import Settings
    from assistant.events import AvatarVideo
    from assistant.talking_head.base import RenderSettings
    from assistant.talking_head.chain import TalkingHeadChain


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("lipsync", help="make a lip-synced video of a photo saying an audio file")
    parser.add_argument("image", help="photo of a face (JPG/PNG)")
    parser.add_argument("audio", help="speech (WAV/MP3/FLAC/OGG)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.mp4", help="video to write")
    parser.add_argument(
        "--engine", choices=ENGINE_NAMES, help="first engine tried (default: from the config)"
    )
    parser.add_argument(
        "--quality", choices=("standard", "high"), help="720p or 1080p profile (default: config)"
    )
    parser.add_argument("--fps", type=float, help="frames per second (default: the quality profile's)")
    parser.add_argument(
        "--checkpoint", metavar="PATH", help="Wav2Lip weights for --engine wav2lip/wav2lip_gan"
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: config, auto = CUDA when present)")
    parser.add_argument("--no-fallback", action="store_true", help="fail instead of trying the next engine")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_lipsync)


def _lipsync(args: argparse.Namespace) -> int:
    from assistant.config import load_settings
    from assistant.storage import part_path

    image, audio, output = _checked_inputs(args)
    settings = load_settings(getattr(args, "config", None))
    engine, quality, device = _engine_quality_device(settings, args)
    chain = _chain(settings, args, image, engine, quality, device)
    start = time.monotonic()
    try:
        video = chain.render(audio, output)
    finally:
        chain.close()
        part_path(output).unlink(missing_ok=True)  # a failed encode leaves nothing behind
    elapsed = time.monotonic() - start
    if args.json:
        print(json.dumps(_to_json(video, engine, elapsed), indent=2))
        return 0
    print(
        f"Wrote {video.mp4_path}: {video.engine}, {video.width}x{video.height} @ {video.fps:g} fps, "
        f"{video.frames} frames, {video.duration_s:.2f} s of video in {elapsed:.2f} s"
    )
    for reason in video.fallback_reasons:
        print(f"  fell back: {reason}", file=sys.stderr)
    return 0


def _checked_inputs(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The image, audio and output paths; a bad input stops here, before any engine is tried."""
    image = check_input_file(args.image, "Image", TalkingHeadError)
    check_audio_file(args.audio, MAX_LIPSYNC_AUDIO_S)
    audio = Path(args.audio)
    output = check_output_file(args.output, {"image": image, "audio": audio})
    if cv2.imread(str(image)) is None:
        raise TalkingHeadError(f"Cannot decode image {image}: use a JPG or PNG photo of a face")
    if args.fps is not None and not 1 <= args.fps <= 120:
        raise TalkingHeadError(f"--fps must be between 1 and 120, got {args.fps}")
    return image, audio, output


def _engine_quality_device(settings: Settings, args: argparse.Namespace) -> tuple[str, str, str]:
    """The command line's choices, the rest resolved from the config and gpu_profile."""
    engine, quality, device = args.engine, args.quality, args.device
    if engine is None or quality is None or device is None:
        from assistant.profile import resolve  # probes CUDA (imports torch) only for "auto" values
        from assistant.talking_head.speed import measure_cpu_lipsync

        resolved = resolve(settings, cpu_lipsync_probe=measure_cpu_lipsync)
        engine = engine or resolved.talking_head_engine
        quality = quality or resolved.quality_mode
        device = device or resolved.talking_head_device
    return engine, quality, device


def _chain(
    settings: Settings, args: argparse.Namespace, image: Path, engine: str, quality: str, device: str
) -> TalkingHeadChain:
    """The app's fallback chain from `engine` down (only `engine` with --no-fallback), sized by the config."""
    import dataclasses

    from assistant.talking_head.chain import TalkingHeadChain, default_factories
    from assistant.talking_head.options import render_settings_from_config, wav2lip_config

    def sized(kind: str) -> RenderSettings:
        rs = render_settings_from_config(settings, quality, kind)
        return dataclasses.replace(rs, fps=args.fps) if args.fps else rs

    checkpoints, wav2lip_options = wav2lip_config(settings, quality)  # the app's: paths.models_dir included
    if args.checkpoint:
        for name in ("wav2lip", "wav2lip_gan") if engine not in ("wav2lip", "wav2lip_gan") else (engine,):
            checkpoints[name] = Path(args.checkpoint)
    factories = default_factories(
        image,
        sized("wav2lip"),
        device=device,
        checkpoints=checkpoints,
        wav2lip_options=wav2lip_options,
        light_settings=sized("light"),
    )
    if args.no_fallback:
        factories = {engine: factories[engine]}
    return TalkingHeadChain(engine, factories, on_oom="fallback")


def _to_json(video: AvatarVideo, requested_engine: str, elapsed_s: float) -> dict[str, Any]:
    return {
        "output": str(video.mp4_path),
        "engine": video.engine,
        "requested_engine": requested_engine,
        "frames": video.frames,
        "fps": video.fps,
        "width": video.width,
        "height": video.height,
        "resolution": f"{video.width}x{video.height}",
        "duration_s": round(video.duration_s, 3),
        "elapsed_s": round(elapsed_s, 3),
        "quality_mode": video.quality_mode,
        "device": video.device,
        "fallback_reasons": list(video.fallback_reasons),
    }
