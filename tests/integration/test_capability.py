"""This machine's speed for the dialogue workload, timed on the bundled SmolLM2-135M: measured once per machine and
kept, measured again when the machine (key) changes or the kept file is unreadable, and measured once when two
threads ask at the same time (the app's session and live stream resolve the profile together on a first start)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import assistant.capability as capability
from assistant.capability import CACHE_NAME, machine_key, measure_machine
from assistant.models import locate

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bundled() -> Path:
    return locate("smollm2-135m", Path("models"))


@pytest.fixture
def counted(monkeypatch) -> list[Path]:
    """Every real timing of a model, in order (the timing itself runs unchanged)."""
    calls: list[Path] = []
    real = capability.time_llm_workload

    def timing(path, n_threads=None, rounds=capability.ROUNDS):
        calls.append(path)
        return real(path, n_threads, rounds)

    monkeypatch.setattr(capability, "time_llm_workload", timing)
    return calls


def test_measured_once_and_kept(tmp_path, bundled, counted):
    speed = measure_machine(tmp_path, bundled)
    assert 0 < speed.workload.prompt_s < 30 and 0 < speed.workload.decode_s < 30
    assert speed.cores >= 1 and speed.key == machine_key() and "llama-cpp-python" in speed.key
    kept = json.loads((tmp_path / CACHE_NAME).read_text(encoding="utf-8"))
    assert kept["key"] == speed.key and kept["workload"]["prompt_s"] == speed.workload.prompt_s
    assert measure_machine(tmp_path, bundled) == speed and counted == [bundled]


@pytest.mark.parametrize("kept", ['{"version": 1, "key": "another CPU|9 cores", "workload": {}}', "not json"])
def test_another_machine_or_a_broken_file_is_measured_again(tmp_path, bundled, counted, kept):
    (tmp_path / CACHE_NAME).write_text(kept, encoding="utf-8")
    speed = measure_machine(tmp_path, bundled)
    assert counted == [bundled] and speed.key == machine_key()


def test_two_threads_at_once_measure_once(tmp_path, bundled, counted):
    results = []
    threads = [threading.Thread(target=lambda: results.append(measure_machine(tmp_path, bundled))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 2 and results[0] == results[1] and counted == [bundled]

