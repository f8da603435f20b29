"""What a process uses, read while it runs: CPU seconds and peak resident memory (the benchmarks' guard rails).

Needs psutil (CPU) and Linux's /proc (peak memory; 0.0 elsewhere).
"""

from __future__ import annotations

from pathlib import Path


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system, all threads) the processes `pids` have used so far; a process gone counts 0."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (Linux VmHWM), MiB; 0.0 where it cannot be read."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    for line in lines:
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024.0, 1)
    return 0.0
