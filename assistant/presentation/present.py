"""From a script to a finished presentation video: plan, speak, animate, compose, assemble, per slide, resumable.

`render_presentation` checks everything it can before any work (script, avatar face, output folder), then for each
slide not already finished in the job folder: synthesizes the narration sentence by sentence (`narrate.py`), renders
the talking head for each piece of at most `max_segment_s` through the engine chain, and composes it with the slide
(`compose.py`). Each finished slide is recorded at once, so Ctrl-C or a crash loses at most the slide in progress.
Then the slides are joined (no re-encode), and chapters (one per slide) and a subtitle track (the narration, timed to
the speech) are added; the result is copied to the output path only when complete, with an `.srt` beside it.

Progress goes to a callback as `PresentProgress` events, with an estimate of the time left from this machine's
measured speed (kept in `<jobs dir>/speed.json`). Needs the TTS chain, the talking-head chain and ffmpeg.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import NoFaceError, PresentationError
from assistant.presentation.compose import compose_slide
from assistant.presentation.job import Job, SlideRecord, file_sha256, slide_key
from assistant.presentation.narrate import NarrationTiming, SlideSound, Speaker, synthesize_slide
from assistant.presentation.script import Deck, Slide, read_script
from assistant.presentation.slides import THEME_VERSION, Geometry, geometry, render_slide
from assistant.presentation.timing import (
    Chapter,
    Cue,
    SentenceSpan,
    reveal_times,
    sentence_cues,
    to_ffmetadata,
    to_srt,
)
from assistant.storage import OUTPUT_HINT, atomic_path, check_writable

log = logging.getLogger(__name__)

WORDS_PER_S = 2.9  # the bundled Piper voice speaks about 2.9-3.2 words a second: used only for estimates
DEFAULT_SPEED = 1.5  # seconds of work per second of video before this machine has measured its own


WAV2LIP_ENGINES = ("wav2lip", "wav2lip_gan")


@dataclass(frozen=True)
class PresentOptions:
    """Everything that shapes the video; the fields in `fingerprint` are part of every slide's key."""

    avatar: Path
    width: int = 1280
    height: int = 720
    fps: float = 25.0
    quality_mode: str = "standard"
    layout: str = "corner"
    engine: str = "light"  # the first talking-head engine tried
    voice: str = "piper:piper-joe"  # the TTS engine and voice, for the key
    timing: NarrationTiming = NarrationTiming()
    title_card_s: float = 3.0
    crf: int = 20
    preset: str = "veryfast"
    audio_bitrate: str = "192k"
    # Wav2Lip's options that change its pixels (the chain is built from these, so the key and the render agree)
    blend: str = "feather"
    half_precision: bool = True  # fp16 on CUDA, bf16 where a CPU does it natively; fp32 otherwise
    device: str = "cpu"
    checkpoints: tuple[tuple[str, str], ...] = ()  # (engine, weights file) for wav2lip and wav2lip_gan

    def checkpoint(self, engine: str) -> Path | None:
        path = dict(self.checkpoints).get(engine)
        return Path(path) if path else None

    def fingerprint(self, avatar_sha: str) -> dict[str, Any]:
        return {
            "size": [self.width, self.height], "fps": self.fps, "layout": self.layout, "engine": self.engine,
            "voice": self.voice, "timing": dataclasses.asdict(self.timing), "title_card_s": self.title_card_s,
            "crf": self.crf, "preset": self.preset, "audio_bitrate": self.audio_bitrate, "avatar": avatar_sha,
            "theme": THEME_VERSION, **self._lipsync_fingerprint(),
        }  # fmt: skip

    def _lipsync_fingerprint(self) -> dict[str, Any]:
        """Wav2Lip's pixel options, only when the engine is a Wav2Lip (the light and static engines ignore them, so
        a slide they drew stays valid whatever these are). The checkpoint counts by name and size: hashing 400 MB of
        weights on every run would cost more than it guards against."""
        if self.engine not in WAV2LIP_ENGINES:
            return {}
        weights = self.checkpoint(self.engine)
        size = weights.stat().st_size if weights is not None and weights.is_file() else None
        return {
            "blend": self.blend, "precision": "half" if self.half_precision else "full", "device": self.device,
            "checkpoint": [weights.name if weights is not None else None, size],
        }  # fmt: skip


@dataclass(frozen=True)
class PresentProgress:
    """One progress report. `slide` counts from 1; `eta_s` is None until there is something to estimate from."""

    stage: str  # "plan", "speech", "avatar", "compose", "slide_done", "assemble", "done"
    slide: int
    slides: int
    title: str
    slide_fraction: float
    overall_fraction: float
    eta_s: float | None
    reused: bool = False


@dataclass(frozen=True)
class SlidePlan:
    index: int  # from 1
    slide: Slide
    key: str
    reused: SlideRecord | None
    estimate_s: float  # of video


@dataclass(frozen=True)
class SlideResult:
    title: str
    kind: str
    start_s: float
    duration_s: float
    reused: bool
    tts_engine: str
    avatar_engine: str
    bullets_at_s: tuple[float, ...]  # when each bullet appears, on the whole video's clock
    segments: int  # lip-sync calls (more than one when the narration was longer than max_segment_s)
    fallback_reasons: tuple[str, ...]


@dataclass(frozen=True)
class PresentationResult:
    """What a run made, and how (the options are recorded with it)."""

    output: Path | None  # None for a dry run
    srt: Path | None
    job_dir: Path
    duration_s: float  # of video (estimated for a dry run)
    elapsed_s: float
    estimate_s: float  # the render time estimated before starting
    slides: tuple[SlideResult, ...]
    plan: tuple[SlidePlan, ...]
    warnings: tuple[str, ...]
    options: PresentOptions
    dry_run: bool = False
    rendered: int = 0
    reused: int = 0
    seconds_per_video_s: float | None = None  # this run's speed over the slides it rendered
    extra: dict[str, Any] = field(default_factory=dict)


# ---- checks before any work ----
def check_output(output: Path) -> None:
    if output.suffix.lower() != ".mp4":
        raise PresentationError(f"Output {output} must be an .mp4 file (e.g. -o talk.mp4)")
    if output.is_dir():
        raise PresentationError(f"Output {output} is a folder; give a file name (e.g. {output / 'talk.mp4'})")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise PresentationError(f"Cannot write {output}: the folder {parent} does not exist; create it first")
    check_writable(parent, OUTPUT_HINT)  # names a read-only file system, a full disk, a missing permission


def check_subtitles(output: Path, job: Job) -> None:
    """Refuse, before any work, to overwrite an .srt beside the output that this presentation did not write (the
    subtitles go to OUTPUT.srt); the one an earlier run of the same script wrote is replaced as the video is."""
    srt = output.with_suffix(".srt")
    ours = job.output_dir / srt.name
    if srt.exists() and not (ours.is_file() and srt.is_file() and srt.read_bytes() == ours.read_bytes()):
        raise PresentationError(
            f"{srt} already exists and was not written by this presentation; the subtitles of {output.name} go "
            f"there: move it away, or choose another output name (-o)"
        )


def check_avatar(avatar: Path, engine: str) -> None:
    from assistant.inputs import check_input_file
    from assistant.talking_head.base import load_avatar
    from assistant.talking_head.face import detect_faces, pick_face

    check_input_file(avatar, "Avatar image", PresentationError)  # missing, a folder, a FIFO: says which
    try:
        image = load_avatar(avatar)
    except Exception as e:  # noqa: BLE001 - unreadable in any way: one message
        raise PresentationError(f"Cannot read the avatar image {avatar}: {e}") from e
    if engine != "static":
        try:
            pick_face(detect_faces(image), f"the avatar image {avatar}")
        except NoFaceError as e:  # none, or two of a size
            raise NoFaceError(f"{e} (or --engine static to show the photo without lip sync)") from e


def _aspect(avatar: Path) -> float:
    from PIL import Image

    from assistant.talking_head.base import exif_orientation

    with Image.open(avatar) as im:
        width, height = im.width, im.height
    return height / width if exif_orientation(avatar) >= 5 else width / height  # 5-8: shown turned a quarter


# ---- the speed of this machine ----
class SpeedBook:
    """Seconds of work per second of video, per kind of render, averaged over the runs of this machine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, float] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.data = {}

    @staticmethod
    def kind(options: PresentOptions) -> str:
        return f"{options.engine}-{options.width}x{options.height}-{options.layout}"

    def get(self, options: PresentOptions) -> float:
        return float(self.data.get(self.kind(options), DEFAULT_SPEED))

    def update(self, options: PresentOptions, seconds_per_s: float) -> None:
        k = self.kind(options)
        old = self.data.get(k)
        self.data[k] = seconds_per_s if old is None else 0.5 * old + 0.5 * seconds_per_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:
            log.debug("could not save %s: %s", self.path, e)


def estimate_video_s(slide: Slide, options: PresentOptions) -> float:
    t = options.timing
    if not slide.narration:
        return options.title_card_s if slide.kind == "title" else t.silent_s
    n = max(1, len(slide.sentences))
    return slide.words / WORDS_PER_S + (n - 1) * t.pause_s + t.lead_s + t.tail_s


def plan_deck(deck: Deck, options: PresentOptions, job: Job | None, avatar_sha: str) -> list[SlidePlan]:
    fp = options.fingerprint(avatar_sha)
    plans = []
    for i, slide in enumerate(deck.slides, start=1):
        key = slide_key(slide.content_key(), fp)
        record = job.finished(key) if job is not None else None
        plans.append(SlidePlan(i, slide, key, record, record.duration_s if record else estimate_video_s(slide, options)))
    return plans


# ---- the run ----
ProgressCallback = Callable[[PresentProgress], None]
SpeakerFactory = Callable[[], Speaker]
# (geometry, avatar photo) -> something with render(audio, out) -> AvatarVideo, and close()
ChainFactory = Callable[[Geometry, Path], Any]


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst, size_bytes=src.stat().st_size) as part:
        shutil.copyfile(src, part)


def render_presentation(
    script: Path,
    output: Path,
    options: PresentOptions,
    jobs_dir: Path,
    speaker_factory: SpeakerFactory,
    chain_factory: ChainFactory,
    on_progress: ProgressCallback | None = None,
    dry_run: bool = False,
) -> PresentationResult:
    """Make `output` from `script` (see the module docstring). Raises PresentationError (or NoFaceError) for bad
    input before any work; KeyboardInterrupt leaves the finished slides in the job for the next run."""
    start = time.monotonic()
    script, output = Path(script), Path(output)
    deck = read_script(script)
    check_output(output)
    check_avatar(options.avatar, options.engine)
    avatar_sha = file_sha256(options.avatar)
    speed = SpeedBook(jobs_dir / "speed.json")
    job = Job(jobs_dir, script)
    check_subtitles(output, job)
    if dry_run:
        return _dry_run(deck, options, job, avatar_sha, speed, start)
    with job:
        run = _Run(deck, options, job, avatar_sha, speed, speaker_factory, chain_factory, on_progress)
        run.log_plan(script, output)
        run.render_slides()
        return run.assemble(output, start)


def _dry_run(
    deck: Deck, options: PresentOptions, job: Job, avatar_sha: str, speed: SpeedBook, start: float
) -> PresentationResult:
    """The plan and its estimate, without taking the job's lock or writing anything."""
    job_for_plan = job if job.state_path.is_file() else None
    if job_for_plan is not None:
        job._load_state()
    plans = plan_deck(deck, options, job_for_plan, avatar_sha)
    todo_s = sum(p.estimate_s for p in plans if p.reused is None)
    return PresentationResult(
        output=None, srt=None, job_dir=job.dir, duration_s=sum(p.estimate_s for p in plans),
        elapsed_s=time.monotonic() - start, estimate_s=todo_s * speed.get(options), slides=(),
        plan=tuple(plans), warnings=tuple(deck.warnings), options=options, dry_run=True,
    )  # fmt: skip


class _Run:
    """One run inside a locked job: the slides rendered or reused in order, then assembled. Holds the voice and the
    talking-head chain (built on first need) and the progress figures the estimate of the time left comes from."""

    def __init__(
        self,
        deck: Deck,
        options: PresentOptions,
        job: Job,
        avatar_sha: str,
        speed: SpeedBook,
        speaker_factory: SpeakerFactory,
        chain_factory: ChainFactory,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.deck, self.options, self.job, self.avatar_sha, self.speed = deck, options, job, avatar_sha, speed
        self.speaker_factory, self.chain_factory = speaker_factory, chain_factory
        self.report: ProgressCallback = on_progress or (lambda p: None)
        self.geo = geometry(options.width, options.height, options.layout, _aspect(options.avatar))
        self.avatar = job.keep_inputs(job.script.read_text(encoding="utf-8-sig"), options.avatar)
        self.plans = plan_deck(deck, options, job, avatar_sha)
        self.warnings = list(deck.warnings)
        self.total_s = sum(p.estimate_s for p in self.plans) or 1.0
        self.rate = speed.get(options)
        self.estimate_s = sum(p.estimate_s for p in self.plans if p.reused is None) * self.rate
        self.done_s = 0.0  # estimated video seconds behind us
        self.left_work_s = self.estimate_s
        self.rendered_video_s = self.rendered_work_s = 0.0
        self.speaker: Speaker | None = None
        self.chain: Any = None
        self.records: list[SlideRecord] = []

    @property
    def rendered(self) -> int:
        return sum(1 for p in self.plans if p.reused is None)

    def log_plan(self, script: Path, output: Path) -> None:
        todo_s = sum(p.estimate_s for p in self.plans if p.reused is None)
        log.info(
            "Presenting %s -> %s: %d slides, %d to render (about %.0f s of video, %.0f s of work), %d reused",
            script, output, len(self.plans), self.rendered, todo_s, self.estimate_s, len(self.plans) - self.rendered,
        )  # fmt: skip
        for w in self.warnings:
            log.warning("%s", w)

    def emit(self, plan: SlidePlan, stage: str, frac: float, reused: bool = False) -> None:
        overall = (self.done_s + frac * plan.estimate_s) / self.total_s
        eta = None if reused else max(0.0, self.left_work_s - frac * plan.estimate_s * self.rate)
        self.report(PresentProgress(
            stage, slide=plan.index, slides=len(self.plans), title=plan.slide.title, slide_fraction=frac,
            overall_fraction=min(1.0, overall), eta_s=eta, reused=reused,
        ))  # fmt: skip

    # ---- the slides ----
    def render_slides(self) -> None:
        """Each slide reused or rendered and recorded at once; the voice and the chain closed whatever happens."""
        try:
            for plan in self.plans:
                again = plan.reused or self.job.finished(plan.key)  # or the same slide twice in one script
                if again is not None:
                    self.records.append(again)
                    log.info("Slide %d/%d %r: unchanged, reused", plan.index, len(self.plans), plan.slide.title)
                    self.emit(plan, "slide_done", 1.0, reused=True)
                else:
                    self.records.append(self._render(plan))
                    self.emit(plan, "slide_done", 1.0)
                self.done_s += plan.estimate_s
        except KeyboardInterrupt:
            log.warning(
                "Interrupted: %d of %d slides finished and kept in %s; run the same command again to go on",
                len(self.records), len(self.plans), self.job.dir,
            )  # fmt: skip
            raise
        finally:
            if self.chain is not None:
                self.chain.close()
            if self.speaker is not None and hasattr(self.speaker, "close"):
                self.speaker.close()  # type: ignore[union-attr]
            if self.rendered_video_s > 0:
                self.speed.update(self.options, self.rendered_work_s / self.rendered_video_s)

    def _render(self, plan: SlidePlan) -> SlideRecord:
        """Speak, animate and compose one slide in its own folder, and record it under the key of the engine that
        ran (a fallback's pixels are not the asked engine's: a later run asking for that engine renders again)."""
        t0 = time.monotonic()
        folder = self.job.slide_dir(plan.key)
        if folder.exists():
            shutil.rmtree(folder)  # leftovers of an interrupted try
        sound = self._speak(plan, folder)
        pictures = render_slide(plan.slide, self.deck.title, self.geo)
        for w in pictures.warnings:
            if w not in self.warnings:
                self.warnings.append(w)
                log.warning("%s", w)
        reveals = reveal_times(plan.slide.bullets[: pictures.shown_bullets], list(sound.spans), sound.duration_s)
        avatar_paths, engine, reasons = self._animate(plan, sound, folder)
        composed = compose_slide(
            pictures, reveals, avatar_paths, sound.wav_path, folder / "slide.mp4", self.options.fps,
            crf=self.options.crf, preset=self.options.preset, audio_bitrate=self.options.audio_bitrate,
            on_progress=lambda f: self.emit(plan, "compose", 0.6 + 0.4 * f),
        )  # fmt: skip
        for p in avatar_paths:  # the composed slide holds them; keep the job folder small
            Path(p).unlink(missing_ok=True)
        key = self._key_of_engine_that_ran(plan, engine)
        if key != plan.key:
            folder = self._move(folder, self.job.slide_dir(key))
        render_s = time.monotonic() - t0
        record = SlideRecord(
            key=key, content=plan.slide.content_key(), title=plan.slide.title,
            mp4=self.job.rel(folder / composed.mp4_path.name), wav=self.job.rel(folder / sound.wav_path.name),
            frames=composed.frames, fps=composed.fps, duration_s=composed.duration_s,
            spans=[[s.text, s.start_s, s.end_s] for s in sound.spans], reveals=reveals,
            pieces=len(sound.piece_paths), tts_engine=sound.engine, avatar_engine=engine, fallback_reasons=reasons,
            render_s=round(render_s, 3), finished_at=time.time(),
        )  # fmt: skip
        self.job.record(record)
        self._count(plan, composed.duration_s, render_s)
        log.info(
            "Slide %d/%d %r: %.2f s of video in %.2f s (%s, %s, %d piece(s))", plan.index, len(self.plans),
            plan.slide.title, composed.duration_s, render_s, sound.engine, engine, record.pieces,
        )  # fmt: skip
        return record

    def _speak(self, plan: SlidePlan, folder: Path) -> SlideSound:
        self.emit(plan, "speech", 0.0)
        if plan.slide.sentences and self.speaker is None:
            self.speaker = self.speaker_factory()
        timing = self.options.timing
        if plan.slide.kind == "title":
            timing = dataclasses.replace(timing, silent_s=self.options.title_card_s)
        return synthesize_slide(
            plan.slide.sentences, folder, self.speaker, self.options.fps, timing,
            on_sentence=lambda i, k: self.emit(plan, "speech", 0.1 * i / k),
        )  # fmt: skip

    def _animate(self, plan: SlidePlan, sound: SlideSound, folder: Path) -> tuple[list[Path], str, list[str]]:
        """The talking head for each piece of the narration: the clips, the engine that ran (several joined by "+"
        when a piece fell back and another did not) and the fallback reasons."""
        self.emit(plan, "avatar", 0.1)
        if self.chain is None:
            self.chain = self.chain_factory(self.geo, self.avatar)
        avatar_paths: list[Path] = []
        engines: list[str] = []
        reasons: list[str] = []
        for k, piece in enumerate(sound.piece_paths):
            video = self.chain.render(piece, folder / f"avatar-{k:02d}.mp4")
            avatar_paths.append(video.mp4_path)
            if video.engine not in engines:
                engines.append(video.engine)
            reasons.extend(r for r in video.fallback_reasons if r not in reasons)
            self.emit(plan, "avatar", 0.1 + 0.5 * (k + 1) / len(sound.piece_paths))
        return avatar_paths, "+".join(engines) or "none", reasons

    def _key_of_engine_that_ran(self, plan: SlidePlan, engine: str) -> str:
        if engine in (self.options.engine, "none"):
            return plan.key
        ran = dataclasses.replace(self.options, engine=engine)
        return slide_key(plan.slide.content_key(), ran.fingerprint(self.avatar_sha))

    @staticmethod
    def _move(folder: Path, target: Path) -> Path:
        if target.exists():
            shutil.rmtree(target)
        folder.rename(target)
        return target

    def _count(self, plan: SlidePlan, video_s: float, work_s: float) -> None:
        """This run's measured speed replaces the stored one in the estimate of the time left."""
        self.rendered_video_s += video_s
        self.rendered_work_s += work_s
        self.rate = self.rendered_work_s / self.rendered_video_s
        self.left_work_s = sum(p.estimate_s for p in self.plans[plan.index :] if p.reused is None) * self.rate

    # ---- the whole video ----
    def assemble(self, output: Path, start: float) -> PresentationResult:
        """Join the slides (no re-encode), add chapters and subtitles, copy the result where the user asked."""
        from assistant.video import concat_segments, mux_presentation

        n = len(self.plans)
        self.report(PresentProgress("assemble", n, n, "", 1.0, 1.0, 0.0))
        chapters, cues, slide_results, total = self._timeline()
        job, name = self.job, output.stem
        srt_path = job.output_dir / f"{name}.srt"
        srt_path.write_text(to_srt(cues), encoding="utf-8")
        meta_path = job.output_dir / "chapters.txt"
        meta_path.write_text(to_ffmetadata(chapters, self.deck.title), encoding="utf-8")
        joined_wav, joined_mp4 = job.processing_dir / "joined.wav", job.processing_dir / "joined.mp4"
        concat_segments(
            [job.dir / r.wav for r in self.records], [job.dir / r.mp4 for r in self.records], joined_wav,
            joined_mp4, audio_bitrate=self.options.audio_bitrate,
        )  # fmt: skip
        final = job.output_dir / f"{name}.mp4"
        mux_presentation(joined_mp4, final, meta_path, srt_path if cues else None)
        joined_wav.unlink(missing_ok=True)
        joined_mp4.unlink(missing_ok=True)
        _copy_atomic(final, output)
        srt_out = output.with_suffix(".srt")
        _copy_atomic(srt_path, srt_out)
        gone = job.forget_others({p.slide.content_key() for p in self.plans})
        if gone:
            log.info("Removed %d slide(s) no longer in the script from the job", len(gone))
        elapsed = time.monotonic() - start
        job.note_run(output=str(output), elapsed_s=round(elapsed, 3), duration_s=round(total, 3),
                     rendered=self.rendered, reused=n - self.rendered)  # fmt: skip
        self.report(PresentProgress("done", n, n, "", 1.0, 1.0, 0.0))
        log.info("Wrote %s (%.1f s of video) in %.1f s", output, total, elapsed)
        return PresentationResult(
            output=output, srt=srt_out, job_dir=job.dir, duration_s=round(total, 3), elapsed_s=elapsed,
            estimate_s=self.estimate_s, slides=tuple(slide_results), plan=tuple(self.plans),
            warnings=tuple(self.warnings), options=self.options, rendered=self.rendered, reused=n - self.rendered,
            seconds_per_video_s=self.rendered_work_s / self.rendered_video_s if self.rendered_video_s else None,
        )  # fmt: skip

    def _timeline(self) -> tuple[list[Chapter], list[Cue], list[SlideResult], float]:
        """Chapters, subtitle cues and the per-slide results on the whole video's clock; and its length."""
        chapters: list[Chapter] = []
        cues: list[Cue] = []
        slide_results: list[SlideResult] = []
        t = 0.0
        for plan, rec in zip(self.plans, self.records, strict=True):
            spans = [SentenceSpan(str(a), float(b), float(c)) for a, b, c in rec.spans]
            chapters.append(Chapter(rec.title or f"Slide {plan.index}", t, t + rec.duration_s))
            cues.extend(sentence_cues(spans, t))
            slide_results.append(
                SlideResult(
                    title=rec.title, kind=plan.slide.kind, start_s=round(t, 3), duration_s=rec.duration_s,
                    reused=plan.reused is not None, tts_engine=rec.tts_engine, avatar_engine=rec.avatar_engine,
                    bullets_at_s=tuple(round(t + r, 3) for r in rec.reveals), segments=rec.pieces,
                    fallback_reasons=tuple(rec.fallback_reasons),
                )
            )
            t += rec.duration_s
        return chapters, cues, slide_results, t
