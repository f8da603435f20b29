"""How fast this machine runs a language model: one short, fixed workload on the bundled SmolLM2-135M, timed.

The workload is what a turn costs the dialogue model before its first sentence can be spoken: a prompt of
PROMPT_TOKENS tokens evaluated at once, then SENTENCE_TOKENS tokens decoded one at a time (the first sentence of a
short answer). Its seconds on this machine, against the same workload's seconds on the reference machine where
every candidate's cost was measured (assistant.recommend), scale those costs to this machine.

The figure is the fastest of ROUNDS rounds (the least disturbed by whatever else runs) and is kept in
`<cache_dir>/machine_speed.json`, keyed by the CPU, its core count and the llama.cpp build, so it is measured once
per machine (about a second). Needs llama-cpp-python and the bundled model; any model file can be timed the same
way (`time_llm_workload`), which is how candidates and their speed twins are measured.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from assistant.config import usable_cores
from assistant.errors import ModelError

log = logging.getLogger(__name__)

PROMPT_TOKENS = 60  # system prompt + a spoken question, as the app's chat template lays them out
SENTENCE_TOKENS = 16  # the first sentence of a short answer
ROUNDS = 3
CACHE_NAME = "machine_speed.json"
CACHE_VERSION = 1
_MEASURING = threading.Lock()


@dataclass(frozen=True)
class WorkloadTime:
    """Seconds one model took for the workload on this machine (fastest round)."""

    prompt_s: float  # PROMPT_TOKENS evaluated in one batch
    decode_s: float  # SENTENCE_TOKENS evaluated one by one

    @property
    def total_s(self) -> float:
        return self.prompt_s + self.decode_s


@dataclass(frozen=True)
class MachineSpeed:
    """The bundled model's workload time here; `key` names the machine it was measured on."""

    workload: WorkloadTime
    cores: int
    key: str


def machine_key() -> str:
    """The CPU, its usable cores and the llama.cpp build: a measurement holds while these stay the same."""
    try:
        import llama_cpp

        build = getattr(llama_cpp, "__version__", "?")
    except ImportError:
        build = "none"
    return f"{_cpu_name()}|{usable_cores()} cores|llama-cpp-python {build}"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def open_for_workload(model_path: Path, n_threads: int | None = None) -> Any:
    """A llama.cpp model loaded to run the workload (any GGUF llama.cpp loads)."""
    from assistant.dialogue import open_llama

    try:
        from llama_cpp import Llama
    except ImportError as e:
        raise ModelError("llama-cpp-python is not installed: pip install llama-cpp-python") from e
    try:
        return open_llama(Llama, model_path, n_ctx=256, n_batch=256, n_threads=n_threads)
    except (ValueError, RuntimeError, OSError) as e:
        raise ModelError(f"cannot load {model_path} to time it: {e}") from e


def run_workload(llm: Any) -> WorkloadTime:
    """One round of the workload on a loaded model. Token ids are fixed and the same for every model (ids below
    every vocabulary's size), so only the model's shape sets the time."""
    prompt = [1000 + (7 * i) % 20000 for i in range(PROMPT_TOKENS)]
    sentence = [2000 + (11 * i) % 20000 for i in range(SENTENCE_TOKENS)]
    llm.reset()
    started = time.perf_counter()
    llm.eval(prompt)
    prompted = time.perf_counter()
    for token in sentence:
        llm.eval([token])
    return WorkloadTime(prompted - started, time.perf_counter() - prompted)


def time_llm_workload(model_path: Path, n_threads: int | None = None, rounds: int = ROUNDS) -> WorkloadTime:
    """The workload on `model_path`: the fastest of `rounds` after a warm-up round (the first one pages the
    weights in)."""
    llm = open_for_workload(model_path, n_threads)
    try:
        run_workload(llm)
        return min((run_workload(llm) for _ in range(rounds)), key=lambda w: w.total_s)
    finally:
        llm.close()


def measure_machine(cache_dir: Path, bundled_model: Path, n_threads: int | None = None) -> MachineSpeed:
    """This machine's speed: from the cache when measured before on the same CPU, cores and llama.cpp build,
    else measured now (about a second) and cached."""
    key = machine_key()
    cache = Path(cache_dir) / CACHE_NAME
    # One measurement at a time: the app's session and its live stream resolve the profile at once on the first
    # start, and two measurements side by side would each time the other's load.
    with _MEASURING:
        cached = _read_cache(cache, key)
        if cached is not None:
            return cached
        workload = time_llm_workload(bundled_model, n_threads)
        speed = MachineSpeed(workload, usable_cores(), key)
        log.info("this machine: %.3f s for the language-model workload (%s)", workload.total_s, key)
        _write_cache(cache, speed)
        return speed


def _read_cache(path: Path, key: str) -> MachineSpeed | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != CACHE_VERSION or data.get("key") != key:
            return None
        return MachineSpeed(WorkloadTime(**data["workload"]), int(data["cores"]), key)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(path: Path, speed: MachineSpeed) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"version": CACHE_VERSION, **asdict(speed)}, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:  # a read-only cache only costs a measurement next time
        log.info("cannot keep the machine's speed in %s: %s", path, e)
