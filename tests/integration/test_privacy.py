"""Nothing leaves the machine at run time: a whole spoken turn under strace attempts no connection to any address
but loopback and no name lookup, and leaves nothing under ~/.cache/Microsoft (onnxruntime's telemetry store).

Needs strace (scripts/setup.sh installs it). A control run of Piper alone, without the switch that
assistant/privacy.py sets, shows the check catches onnxruntime's lookup of its telemetry host.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.models import locate

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# onnxruntime's uploader starts ~9 s after the first session (measured); the process stays that long and more.
LINGER_S = 20.0
TRACED = "connect,sendto,sendmsg,sendmmsg"

_ADDR = re.compile(r"sin6?_addr=inet_addr\(\"([^\"]+)\"\)|inet_pton\(AF_INET6, \"([^\"]+)\"")
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")


def network_attempts(trace: str) -> list[str]:
    """strace lines that reach beyond this machine: a non-loopback IP, port 53, or the name-service cache."""
    bad = []
    for line in trace.splitlines():
        if "nscd/socket" in line:
            bad.append(line)  # glibc asks nscd first for every getaddrinfo
            continue
        if "AF_INET" not in line:
            continue
        port = _PORT.search(line)
        if port and port.group(1) == "53":
            bad.append(line)
            continue
        for match in _ADDR.finditer(line):
            addr = ipaddress.ip_address(match.group(1) or match.group(2))
            if not (addr.is_loopback or addr.is_unspecified):
                bad.append(line)
    return bad


# onnxruntime turns its telemetry off by itself when one of these says it runs under CI (checked: with CI=true the
# control makes no lookup and writes no store). A user's desktop has none of them, so neither run may see them.
_CI_MARKERS = (
    "CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL", "CODEBUILD_BUILD_ID",
    "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER",
)  # fmt: skip


def _clean_env(home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("XDG_", "ORT_", "HF_", "DO_NOT_TRACK")) and k not in _CI_MARKERS
    }
    env["HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _traced(argv: list[str], env: dict[str, str], trace: Path, timeout_s: float) -> subprocess.CompletedProcess:
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed: sudo apt-get install strace", pytrace=False)
    return subprocess.run(
        ["strace", "-f", "-qq", "-e", f"trace={TRACED}", "-o", str(trace), *argv],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip


def test_a_spoken_turn_reaches_no_other_host_and_writes_no_telemetry(spoken_question, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "out"
    driver = (
        "import sys, time\n"
        "from assistant.cli.main import main\n"
        f"rc = main(['listen', {str(spoken_question)!r}, '--out', {str(out)!r}, '--json'])\n"
        f"time.sleep({LINGER_S})\n"
        "sys.exit(rc)\n"
    )
    trace = tmp_path / "strace.txt"
    proc = _traced([sys.executable, "-c", driver], _clean_env(home), trace, timeout_s=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"reply"' in proc.stdout and list(out.glob("*.mp4")), "the turn did not finish with a video"
    attempts = network_attempts(trace.read_text())
    assert not attempts, "the turn tried to reach the network:\n" + "\n".join(attempts[:20])
    assert not (home / ".cache" / "Microsoft").exists(), sorted(
        str(p.relative_to(home)) for p in (home / ".cache" / "Microsoft").rglob("*")
    )


def test_the_check_catches_onnxruntime_telemetry_without_the_switch(tmp_path):
    """Control: Piper alone, not through `assistant`, so onnxruntime keeps its default (telemetry on)."""
    home = tmp_path / "home"
    home.mkdir()
    voice = locate("piper-joe", ROOT / "models")
    script = (
        "import sys, time\n"
        "from piper import PiperVoice\n"
        f"voice = PiperVoice.load({str(voice)!r})\n"
        "list(voice.synthesize('Hello.'))\n"
        f"time.sleep({LINGER_S})\n"
    )
    trace = tmp_path / "strace.txt"
    proc = _traced([sys.executable, "-c", script], _clean_env(home), trace, timeout_s=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert network_attempts(trace.read_text()), "onnxruntime made no lookup: the control proves nothing now"
    assert (home / ".cache" / "Microsoft" / "DeveloperTools").is_dir()


def test_network_attempts_reads_strace_lines():
    lines = [
        '1 connect(3, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.0.53")}, 16) = 0',
        '2 connect(4, {sa_family=AF_INET, sin_port=htons(5672), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
        '3 connect(5, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), '
        'inet_pton(AF_INET6, "2603:1061::1", &sin6_addr), sin6_scope_id=0}, 28) = -1',
        '4 connect(6, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT',
        '5 connect(7, {sa_family=AF_UNIX, sun_path="/run/user/0/pulse/native"}, 110) = 0',
        '6 connect(8, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("13.69.239.72")}, 16) = 0',
    ]
    assert [line.split()[0] for line in network_attempts("\n".join(lines))] == ["1", "3", "4", "6"]
