"""`assistant present SCRIPT.md -o OUT.mp4`: a narrated slide video from a written script, resumable per slide.

The script format is in `assistant/presentation/script.py` and docs/presentation.md. Progress goes to
stderr (one updating line on a terminal, a line per step otherwise); `--json` prints the result on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from assistant.talking_head.base import ENGINE_NAMES


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("present", help="make a presentation video (slides + talking avatar) from a script")
    parser.add_argument("script", type=Path, help="the script: Markdown with '## Slide' headings, bullets, narration")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.mp4", help="video to write")
    parser.add_argument("--avatar", type=Path, metavar="IMAGE", help="photo of the narrator (default: the config's)")
    parser.add_argument("--engine", choices=ENGINE_NAMES, help="first talking-head engine tried (default: config)")
    parser.add_argument("--quality", choices=("standard", "high"), help="1280x720 or 1920x1080 (default: config)")
    parser.add_argument("--layout", choices=("corner", "side", "full"), help="where the avatar goes (default: config)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the time estimate; render nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_present)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = max(0, round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _bar(fraction: float, width: int = 20) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


class _Progress:
    """Prints PresentProgress events: a redrawn line on a terminal, one line per step otherwise."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last: tuple[int, str] | None = None
        self._drawn = 0.0

    def __call__(self, p) -> None:
        if p.stage in ("assemble", "done"):
            self._line(f"{'joining slides, adding chapters and subtitles' if p.stage == 'assemble' else 'done'}")
            return
        head = f"[{p.slide}/{p.slides}] {p.title[:32]:<32}"
        if p.reused:
            self._line(f"{head} unchanged, reused")
            return
        if self.tty:
            now = time.monotonic()
            if p.stage != "slide_done" and now - self._drawn < 0.2:
                return
            self._drawn = now
            text = (
                f"\r{head} {_bar(p.slide_fraction, 12)} {p.stage:<10} overall {_bar(p.overall_fraction)} "
                f"{p.overall_fraction:4.0%}  ~{_clock(p.eta_s)} left"
            )
            self.stream.write(text + ("\n" if p.stage == "slide_done" else ""))
            self.stream.flush()
        elif (p.slide, p.stage) != self._last:
            self._last = (p.slide, p.stage)
            self._line(f"{head} {p.stage:<10} overall {p.overall_fraction:4.0%}  ~{_clock(p.eta_s)} left")

    def _line(self, text: str) -> None:
        print(("\r" if self.tty else "") + text, file=self.stream, flush=True)


def _present(args: argparse.Namespace) -> int:
    from assistant.config import load_settings
    from assistant.presentation.build import chain_factory, jobs_dir, present_options, speaker_factory
    from assistant.presentation.present import render_presentation
    from assistant.profile import resolve
    from assistant.talking_head.speed import measure_cpu_lipsync

    settings = load_settings(getattr(args, "config", None))
    resolved = resolve(settings, cpu_lipsync_probe=measure_cpu_lipsync)
    options = present_options(settings, resolved, args.avatar, args.layout, args.quality, args.engine)
    show = not args.json or sys.stderr.isatty()
    try:
        result = render_presentation(
            args.script, args.output, options, jobs_dir(settings),
            speaker_factory(settings, resolved), chain_factory(settings, resolved, options),
            on_progress=_Progress() if show and not args.dry_run else None, dry_run=args.dry_run,
        )  # fmt: skip
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the finished slides are kept; run the same command again to go on from there",
            file=sys.stderr,
        )
        return 130
    if args.json:
        print(json.dumps(_to_json(result), indent=2))
        return 0
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    o = result.options
    what = f"{o.width}x{o.height} @ {o.fps:g} fps, {o.layout} layout, {o.engine} engine first"
    if result.dry_run:
        print(f"Plan for {args.script} -> {args.output} ({what}):")
        for p in result.plan:
            kind = "title card" if p.slide.kind == "title" else f"{len(p.slide.bullets)} bullets"
            state = "reuse" if p.reused else "render"
            print(f"  {p.index:>2}. {p.slide.title[:40]:<40} {kind:<11} {p.slide.words:>4} words  "
                  f"~{_clock(p.estimate_s)}  {state}")  # fmt: skip
        print(f"About {_clock(result.duration_s)} of video; about {_clock(result.estimate_s)} of work on this "
              f"machine. Job folder: {result.job_dir}")  # fmt: skip
        return 0
    print(
        f"Wrote {result.output} ({_clock(result.duration_s)}, {len(result.slides)} slides: {result.rendered} rendered, "
        f"{result.reused} reused) in {result.elapsed_s:.1f} s ({what}); subtitles {result.srt}"
    )
    print(f"Job folder: {result.job_dir}")
    for s in result.slides:
        for reason in s.fallback_reasons:
            print(f"  {s.title}: fell back: {reason}", file=sys.stderr)
    return 0


def _to_json(result) -> dict:
    o = result.options
    return {
        "output": str(result.output) if result.output else None,
        "srt": str(result.srt) if result.srt else None,
        "job_dir": str(result.job_dir),
        "dry_run": result.dry_run,
        "duration_s": round(result.duration_s, 3),
        "elapsed_s": round(result.elapsed_s, 3),
        "estimate_s": round(result.estimate_s, 1),
        "rendered": result.rendered,
        "reused": result.reused,
        "seconds_per_video_s": round(result.seconds_per_video_s, 3) if result.seconds_per_video_s else None,
        "options": {**dataclasses.asdict(o), "avatar": str(o.avatar)},
        "slides": [dataclasses.asdict(s) for s in result.slides],
        "plan": [
            {"index": p.index, "title": p.slide.title, "kind": p.slide.kind, "bullets": list(p.slide.bullets),
             "words": p.slide.words, "estimate_s": round(p.estimate_s, 2), "reuse": p.reused is not None}
            for p in result.plan
        ],  # fmt: skip
        "warnings": list(result.warnings),
    }
