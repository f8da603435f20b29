"""`assistant video encode INPUT -o OUTPUT [--quality high|medium|low|fast] [--crf N] [--codec NAME] [--json]`.

Re-encodes a video with one of the quality presets of `assistant.video.ENCODE_PRESETS` (high: slow/CRF 18,
medium: medium/23, low: fast/28, fast: veryfast/23), keeping its audio and chapters. Registered under `video` by
`video_cmd.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from assistant.errors import VideoEncodeError
from assistant.inputs import check_input_file


def register_encode(vsub: argparse._SubParsersAction) -> None:
    from assistant.video import ENCODE_PRESETS

    enc = vsub.add_parser("encode", help="re-encode a video with a quality preset (audio kept)")
    enc.add_argument("input", type=Path, help="video to re-encode")
    enc.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.mp4", help="MP4 to write")
    enc.add_argument(
        "--quality", choices=tuple(ENCODE_PRESETS), default="medium",
        help="; ".join(f"{k}: {p}/CRF {c}" for k, (p, c) in ENCODE_PRESETS.items()) + " (default: medium)",
    )  # fmt: skip
    enc.add_argument(
        "--crf", type=int, metavar="N", help="constant rate factor 0-51 (overrides the preset's)"
    )
    enc.add_argument("--codec", default="libx264", help="libx264 (h264, default) or libx265 (h265, hevc)")
    enc.add_argument("--json", action="store_true", help="one JSON object")
    enc.set_defaults(func=_encode)


def _encode(args: argparse.Namespace) -> int:
    from assistant.video import encode_file

    src, out = check_input_file(args.input, "Input video", VideoEncodeError), args.output
    if out.resolve() == src.resolve():
        raise VideoEncodeError(f"Output {out} is the input file; write to another name")
    if out.suffix.lower() != ".mp4":
        raise VideoEncodeError(f"Output {out} must be an .mp4 file")
    if not out.parent.is_dir():
        raise VideoEncodeError(f"Cannot write {out}: the folder {out.parent} does not exist")
    tty = sys.stderr.isatty() and not args.json

    def progress(fraction: float) -> None:
        if tty:
            print(f"\rencoding {fraction:6.1%}", end="", file=sys.stderr, flush=True)

    try:
        result = encode_file(src, out, args.quality, args.crf, args.codec, on_progress=progress)
    except ValueError as e:
        raise VideoEncodeError(str(e)) from e
    finally:
        if tty:
            print(file=sys.stderr)
    if args.json:
        data = dataclasses.asdict(result)
        data["path"] = str(result.path)
        print(json.dumps(data, indent=2))
        return 0
    ratio = result.size_bytes / max(1, result.input_size_bytes)
    print(
        f"Wrote {result.path}: {result.codec} {result.preset}/CRF {result.crf}, audio {result.audio}, "
        f"{result.size_bytes / 1e6:.2f} MB ({ratio:.0%} of the input) in {result.elapsed_s:.1f} s"
    )
    return 0
