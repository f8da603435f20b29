"""`assistant video info FILE [--json]`: what ffprobe says about a video (duration, size, fps, codecs, audio rate)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("video", help="inspect and re-encode video files")
    vsub = parser.add_subparsers(dest="video_command", metavar="ACTION", required=True)
    info = vsub.add_parser("info", help="duration, resolution, fps, codecs and audio rate of a file")
    info.add_argument("file", help="video (or audio) file")
    info.add_argument("--json", action="store_true", help="one JSON object")
    info.set_defaults(func=_info)
    from assistant.cli.encode_cmd import register_encode

    register_encode(vsub)


def _info(args: argparse.Namespace) -> int:
    from assistant.video import probe

    try:
        info = probe(args.file)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        data = dataclasses.asdict(info)
        data["path"] = str(info.path)
        print(json.dumps(data, indent=2))
        return 0
    print(f"{info.path}")
    print(f"  duration     {info.duration_s:.3f} s")
    if info.has_video:
        print(
            f"  video        {info.video_codec} {info.width}x{info.height} @ {info.fps:g} fps, {info.frames} frames"
        )
    else:
        print("  video        none")
    if info.has_audio:
        print(
            f"  audio        {info.audio_codec} {info.audio_sample_rate_hz} Hz, {info.audio_duration_s:.3f} s"
        )
    else:
        print("  audio        none")
    return 0
