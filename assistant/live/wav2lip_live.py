"""Wav2Lip in the live stream: the mouth from the network, everything else (breathing, blinks, sway, glances) from
the photo rig, so idle -> talking -> idle stays one continuous motion.

A clip's frames are generated ahead of its sound on a worker thread (`prepare`): Wav2Lip's face-box patches for every
frame of the clip, in batches that start small (FIRST_BATCH frames) and grow as the lead allows, up to the engine's
batch size (`plan`). The clip's sound is released to the stream (`on_ready`) once enough frames exist that
generation stays ahead of playback for the rest of the clip, from the speed of this machine (a network call's fixed
cost and its cost per frame: measured at start-up by `measure`, re-fitted after every clip from its own batches):
well above real time that is the first small batch, so the first sound waits about one short network call more
than the light engine's; at 0.65x real time about a third of the clip. So a slow engine
delays the start of a sentence, never stalls it. A frame whose patch is not there (a failed or late batch) is drawn
by the light rig instead, so the stream never waits.

At render time the patch is pasted into the photo and the rig warps that (sway, lids, irises) with its own mouth
closed. Needs torch and the Wav2Lip engine (`assistant.talking_head.wav2lip_engine`).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from assistant.audio.io import resample
from assistant.cancel import CancelToken
from assistant.errors import AssistantError, Cancelled
from assistant.live.motion import Pose
from assistant.live.renderer import RigRenderer

log = logging.getLogger(__name__)

MEL_RATE_HZ = 16000
FIRST_BATCH = 2  # frames in a clip's first network call: 80 ms of speech at 25 fps, its sound can start after it
SPEED_MARGIN = 1.5  # plan with calls this much slower than measured (two cores shared with the rest of the app)


@dataclass
class _Job:
    key: Any
    samples_16k: np.ndarray
    on_ready: Callable[[], None]
    generation: int


class Wav2LipLiveRenderer:
    takes_clip = True  # the stream passes (clip key, frame in clip) to render()

    def __init__(self, engine: Any, rig: RigRenderer, fps: float) -> None:
        if (engine.width, engine.height) != (rig.width, rig.height):
            raise ValueError(f"Wav2Lip renders {engine.width}x{engine.height}, the stream is {rig.width}x{rig.height}")
        self.engine = engine
        self.rig = rig
        self.fps = float(fps)
        self.name = engine.name
        self.width, self.height = rig.width, rig.height
        self.face_box = rig.face_box
        self._box = engine.face_box  # where patches go (Wav2Lip's padded box, same framing as the rig)
        self._source = rig.base.copy()
        self._lock = threading.Lock()
        self._patches: dict[Any, list[np.ndarray]] = {}
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._generation = 0
        self._cancel = CancelToken()
        self.frames_per_s = 0.0
        self._call_s, self._frame_s = 0.0, None  # a network call's fixed cost and cost per frame (fitted)
        self._observed: deque[tuple[int, float]] = deque(maxlen=24)  # (frames, seconds) of recent network calls
        self.frames_from_network = 0  # frames drawn with Wav2Lip's mouth (the rest: the rig's)
        self.failures: list[str] = []
        self._worker = threading.Thread(target=self._work, name="wav2lip-live", daemon=True)
        self._worker.start()

    # ---- speed ----
    def measure(self, seconds: float = 1.0) -> float:
        """Frames/s of patch generation on this machine, and the fixed cost of a network call and its cost per frame
        (fitted over one clip of `seconds` of quiet noise made in growing batches, after a short warm-up)."""
        rng = np.random.default_rng(0)
        wav = (0.01 * rng.standard_normal(int(seconds * MEL_RATE_HZ))).astype(np.float32)
        for _ in self.engine.face_patches(wav[: MEL_RATE_HZ // 5], self.fps):  # first-call set-up, not timed
            pass
        start = time.perf_counter()
        growing = [FIRST_BATCH * 2**k for k in range(8)]
        calls = list(self._timed(self.engine.face_patches(wav, self.fps, sizes=growing)))
        self.frames_per_s = sum(len(batch) for batch, _ in calls) / max(1e-6, time.perf_counter() - start)
        with self._lock:
            self._observed.extend((len(batch), seconds) for batch, seconds in calls)
        self._fit_costs()
        return self.frames_per_s

    @staticmethod
    def _timed(batches: Iterator[list[np.ndarray]]) -> Iterator[tuple[list[np.ndarray], float]]:
        """Each batch with the seconds it took."""
        last = time.perf_counter()
        for batch in batches:
            now = time.perf_counter()
            yield batch, now - last
            last = time.perf_counter()

    def _fit_costs(self) -> None:
        """A call's fixed cost and its cost per frame, least squares over the recent network calls (the measure's
        and the clips' own: the speed while the app runs, not only at start-up)."""
        with self._lock:
            calls = [(n, t) for n, t in self._observed if t > 1e-3]  # not the padding's repeated frames
        if len({n for n, _ in calls}) < 2 or self.frames_per_s <= 0:
            return
        frame_s, call_s = np.polyfit(*np.asarray(calls, float).T, 1)
        if frame_s > 0:
            self._call_s, self._frame_s = max(0.0, float(call_s)), float(frame_s)
        else:  # noise swamped the slope: the average cost, all of it per frame
            self._call_s, self._frame_s = 0.0, sum(t for _, t in calls) / sum(n for n, _ in calls)

    def _batch_s(self, size: int) -> float:
        """Planned seconds of one network call of `size` frames (with the margin)."""
        if self._frame_s is not None:
            return SPEED_MARGIN * (self._call_s + self._frame_s * size)
        return SPEED_MARGIN * size / self.frames_per_s

    def plan(self, n_frames: int) -> tuple[list[int], int]:
        """Batch sizes for a clip of `n_frames` and the frames to have before its sound starts (the lead).

        The sound may start after the first small batch when every later batch can still be made before the stream
        plays its first frame; the next batches are as large as that allows (larger ones make frames faster, but
        arrive later). When even the smallest does not fit, the sound waits for one more batch (each twice the
        last), and the plan is tried again from there. Speed unknown: one clip-long wait."""
        full = max(1, getattr(self.engine, "batch_size", 8))
        if self.frames_per_s <= 0:
            return [], n_frames
        pre = [min(FIRST_BATCH, full, n_frames)]
        while True:
            sizes, made = list(pre), sum(pre)
            t = release = sum(self._batch_s(s) for s in pre)
            while made < n_frames:
                room = release + made / self.fps - t  # seconds until the next frame is played
                fits = [s for s in range(min(full, n_frames - made), 0, -1) if self._batch_s(s) <= room]
                if not fits or fits[0] < min(FIRST_BATCH, n_frames - made):
                    break
                sizes.append(fits[0])
                made += fits[0]
                t += self._batch_s(fits[0])
            if made >= n_frames:
                return sizes, sum(pre)
            if sum(pre) >= n_frames:
                return pre, n_frames
            pre.append(min(2 * pre[-1], full, n_frames - sum(pre)))

    def lead_frames(self, n_frames: int) -> int:
        """Frames to have before the sound starts so generation never falls behind playback (`plan`)."""
        return self.plan(n_frames)[1]

    # ---- clips ----
    def prepare(self, key: Any, samples: np.ndarray, rate_hz: int, on_ready: Callable[[], None]) -> None:
        """Generate the frames of clip `key` (mono float audio) ahead; `on_ready()` (worker thread) when its sound
        may start."""
        samples = resample(np.asarray(samples, np.float32).reshape(-1), rate_hz, MEL_RATE_HZ)
        with self._lock:
            generation = self._generation
        self._jobs.put(_Job(key, samples, on_ready, generation))

    def cancel(self) -> None:
        """Drop the clips not yet released and stop the one being generated."""
        with self._lock:
            self._generation += 1
            self._cancel.cancel("cancelled")
            self._cancel = CancelToken()
            self._patches.clear()
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break

    def forget(self, key: Any) -> None:
        with self._lock:
            self._patches.pop(key, None)

    def close(self, timeout_s: float = 60.0) -> None:
        """Stop the worker and wait for it (it stops between two batches): a thread left inside torch when the
        interpreter exits aborts the process."""
        self.cancel()
        self._jobs.put(None)
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(timeout_s)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._lock:
                if job.generation != self._generation:
                    continue
                token = self._cancel
                store: list[np.ndarray] = []
                self._patches[job.key] = store
            n_frames = max(1, math.ceil(len(job.samples_16k) / MEL_RATE_HZ * self.fps - 1e-6))
            sizes, lead = self.plan(n_frames)
            released = False
            try:
                for batch, seconds in self._timed(self.engine.face_patches(job.samples_16k, self.fps, token, sizes)):
                    with self._lock:
                        if job.generation != self._generation:
                            break
                        store.extend(batch)
                        self._observed.append((len(batch), seconds))
                    if not released and len(store) >= lead:
                        released = True
                        job.on_ready()
            except Cancelled:
                continue
            except AssistantError as e:  # out of memory and the like: this clip's mouth comes from the rig
                self.failures.append(str(e))
                log.warning("Wav2Lip could not make live frames (%s); the light mouth stands in", e)
            with self._lock:
                stale = job.generation != self._generation
            if not released and not stale:
                job.on_ready()
            self._fit_costs()  # the next clip is planned from the speed seen now

    # ---- drawing ----
    def render(self, pose: Pose, opening: float, wide: float, clip: tuple[Any, int] | None = None) -> np.ndarray:
        patch = None
        if clip is not None:
            with self._lock:
                store = self._patches.get(clip[0])
                if store is not None and 0 <= clip[1] < len(store):
                    patch = store[clip[1]]
        if patch is None:  # idle, or a frame Wav2Lip has not made: the rig's own mouth
            return self.rig.render(pose, opening, wide)
        b = self._box
        self._source[b.y1 : b.y2, b.x1 : b.x2] = patch
        self.frames_from_network += 1
        return self.rig.render(pose, 0.0, 0.0, source=self._source)  # the rig's motion, the network's mouth
