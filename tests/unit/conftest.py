"""Unit tests load no model: the CPU's speed for the dialogue workload (assistant.capability) is the reference
machine's, so every CPU tier is decided by assistant.recommend's reference table alone."""

from __future__ import annotations

import pytest

import assistant.profile
from assistant.capability import MachineSpeed, WorkloadTime
from assistant.recommend import REFERENCE_MACHINE_S

REFERENCE_SPEED = MachineSpeed(WorkloadTime(REFERENCE_MACHINE_S / 2, REFERENCE_MACHINE_S / 2), 2, "reference")


@pytest.fixture(autouse=True)
def reference_cpu_speed(monkeypatch):
    monkeypatch.setattr(assistant.profile, "measure_cpu_speed", lambda settings: REFERENCE_SPEED)
    return REFERENCE_SPEED
