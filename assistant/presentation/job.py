"""A presentation job: one folder per script, holding everything a run needs to stop and go on later.

    <jobs dir>/<script name>-<hash of its path>/
        input/       the script and the avatar photo, as used by the last run
        processing/  slide-<key>/ per slide: narration.wav, piece-NN.wav, avatar-NN.mp4, slide.mp4
        output/      the finished MP4 and .srt, before they are copied to where the user asked
        job.log      what every run did
        state.json   the finished slides by key (timings, engines, durations), written atomically after each one

A slide's key hashes what it shows and says plus every option that changes its video (size, fps, layout, engine,
voice, avatar, pauses, and for Wav2Lip its blend, precision, device and checkpoint), so a re-run reuses a slide exactly
when nothing about it changed, wherever it moved in the deck. A finished slide is filed under the key of the engine
that drew it: one the chain fell back to (light for a missing Wav2Lip) is never taken for the engine asked for. A lock file stops two runs of the same job from writing over each other.

Standard library only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.errors import PresentationError

log = logging.getLogger(__name__)

STATE_VERSION = 1


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def slide_key(content_key: str, options: dict[str, Any]) -> str:
    """16 hex digits naming a slide's video: its content and the options that shape it."""
    payload = json.dumps([content_key, options], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def job_name(script: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", script.stem).strip("-.") or "script"
    digest = hashlib.sha1(str(script.resolve()).encode("utf-8")).hexdigest()[:8]
    return f"{stem[:40]}-{digest}"


@dataclass(frozen=True)
class SlideRecord:
    """A finished slide as the state file keeps it."""

    key: str
    content: str  # the slide's content key (what it shows and says, without the options)
    title: str
    mp4: str  # relative to the job folder
    wav: str
    frames: int
    fps: float
    duration_s: float
    spans: list[list[Any]]  # [text, start_s, end_s] per sentence
    reveals: list[float]
    pieces: int
    tts_engine: str
    avatar_engine: str
    fallback_reasons: list[str]
    render_s: float
    finished_at: float


class Job:
    """The job folder of one script; use as a context manager (takes the lock)."""

    def __init__(self, jobs_dir: Path, script: Path) -> None:
        self.script = script
        self.dir = Path(jobs_dir) / job_name(script)
        self.input_dir = self.dir / "input"
        self.processing_dir = self.dir / "processing"
        self.output_dir = self.dir / "output"
        self.state_path = self.dir / "state.json"
        self.log_path = self.dir / "job.log"
        self._lock_file: Any = None
        self._handler: logging.Handler | None = None
        self.state: dict[str, Any] = {"version": STATE_VERSION, "script": str(script.resolve()), "slides": {}}

    # ---- life cycle ----
    def __enter__(self) -> Job:
        for d in (self.input_dir, self.processing_dir, self.output_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.dir / ".lock", "a+")  # noqa: SIM115 - held for the life of the job
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            self._lock_file.close()
            raise PresentationError(
                f"Another run is working on this script's job ({self.dir}); wait for it to finish"
            ) from e
        self._load_state()
        self._handler = logging.FileHandler(self.log_path, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self._handler.setLevel(logging.INFO)
        logging.getLogger("assistant").addHandler(self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handler is not None:
            logging.getLogger("assistant").removeHandler(self._handler)
            self._handler.close()
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()

    def _load_state(self) -> None:
        if not self.state_path.is_file():
            return
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            log.warning("Job state %s is unreadable (%s); starting the job afresh", self.state_path, e)
            return
        if data.get("version") != STATE_VERSION or not isinstance(data.get("slides"), dict):
            log.warning("Job state %s is from another version; starting the job afresh", self.state_path)
            return
        self.state = data

    def save(self) -> None:
        """Write the state atomically: a crash leaves the old file or the new one, never half of one."""
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.state, indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.state_path)

    # ---- inputs ----
    def keep_inputs(self, script_text: str, avatar: Path) -> Path:
        """Copy the script and the avatar into input/; returns the avatar copy (what the engines read)."""
        (self.input_dir / "script.md").write_text(script_text, encoding="utf-8")
        target = self.input_dir / f"avatar{avatar.suffix.lower() or '.png'}"
        if not target.exists() or file_sha256(target) != file_sha256(avatar):
            for old in self.input_dir.glob("avatar.*"):
                old.unlink()
            shutil.copyfile(avatar, target)
        return target

    # ---- slides ----
    def slide_dir(self, key: str) -> Path:
        return self.processing_dir / f"slide-{key}"

    def finished(self, key: str) -> SlideRecord | None:
        """The record of a finished slide with this key whose files are all still there; None otherwise."""
        data = self.state["slides"].get(key)
        if not data:
            return None
        try:
            record = SlideRecord(**data)
        except TypeError:
            return None
        if not (self.dir / record.mp4).is_file() or not (self.dir / record.wav).is_file():
            return None
        return record

    def record(self, record: SlideRecord) -> None:
        self.state["slides"][record.key] = record.__dict__
        self.save()

    def forget_others(self, contents: set[str]) -> list[str]:
        """Remove slides whose content is no longer in the script; returns their keys. The same content rendered with
        other options (another layout or quality) stays, so switching back and forth re-renders nothing."""
        gone = [k for k, v in self.state["slides"].items() if v.get("content") not in contents]
        for k in gone:
            del self.state["slides"][k]
        keep = set(self.state["slides"])
        for folder in self.processing_dir.glob("slide-*"):
            if folder.name.removeprefix("slide-") not in keep:
                shutil.rmtree(folder, ignore_errors=True)
        self.save()
        return gone

    def note_run(self, **fields: Any) -> None:
        self.state.setdefault("runs", []).append({"at": time.time(), **fields})
        self.state["runs"] = self.state["runs"][-20:]
        self.save()

    def rel(self, path: Path) -> str:
        return str(Path(path).relative_to(self.dir))
