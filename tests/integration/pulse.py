"""A private PulseAudio daemon that acts as a virtual microphone: what is played into its null sink is what
PortAudio records from its default source (the sink's monitor).

Everything lives in one temporary folder (runtime dir, socket, state, HOME), so it never touches a user's
sound setup or another test run's daemon; it runs as root too (pulseaudio only warns). PortAudio records
through ALSA, and ALSA reaches the daemon through the `pulse` plugin (libasound2-plugins): Debian's
/etc/alsa/conf.d/99-pulse.conf already makes `pcm.!default` the pulse plugin whenever a PulseAudio server
answers, and every client (ALSA plugin, paplay, pactl) finds ours through PULSE_SERVER, so no ~/.asoundrc is
needed. A client.conf with `autospawn = no` keeps clients from starting a daemon of their own.

Needs the pulseaudio, pactl and paplay binaries (Debian: apt install pulseaudio pulseaudio-utils
libasound2-plugins).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REQUIRED_BINARIES = ("pulseaudio", "pactl", "paplay")
INSTALL_HINT = "apt install pulseaudio pulseaudio-utils libasound2-plugins"


@dataclass
class PulseServer:
    root: Path  # the private folder holding socket, state and log
    server: str  # "unix:<root>/run/native", the value for PULSE_SERVER
    sink: str  # the null sink: play into it
    source: str  # its monitor: the virtual microphone, also the default source
    process: subprocess.Popen
    log_path: Path

    def client_env(self) -> dict[str, str]:
        """What a client process needs to reach this daemon (and only this one)."""
        return {"PULSE_SERVER": self.server, "PULSE_CLIENTCONFIG": str(self.root / "client.conf")}

    def run(self, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a client command (pactl, paplay...) against this daemon; raise with its stderr on failure."""
        env = {**os.environ, **self.client_env()}
        done = subprocess.run(
            list(args), env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def play(self, wav_path: str | Path, timeout_s: float = 60.0) -> None:
        """Play a sound file into the virtual microphone; returns when it has been played."""
        self.run("paplay", f"--device={self.sink}", str(wav_path), timeout_s=timeout_s)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def missing_binaries() -> list[str]:
    return [b for b in REQUIRED_BINARIES if shutil.which(b) is None]


def start_pulse(
    root: str | Path,
    sink: str = "virtual_mic",
    rate_hz: int = 48000,
    channels: int = 2,
    timeout_s: float = 15.0,
) -> PulseServer:
    """Start the daemon in `root` and wait until it answers. The sink runs at 48 kHz stereo like real hardware,
    so the path to a 16 kHz mono recorder goes through the same conversions as a real microphone's."""
    missing = missing_binaries()
    if missing:
        raise RuntimeError(
            f"Cannot start the virtual microphone: {', '.join(missing)} not found; {INSTALL_HINT}"
        )
    root = Path(root)
    run_dir, home, state = root / "run", root / "home", root / "state"
    for d in (run_dir, home, state):
        d.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o700)  # pulseaudio refuses a runtime dir others can write to
    (root / "client.conf").write_text("autospawn = no\n")
    socket = run_dir / "native"
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(run_dir),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PULSE_RUNTIME_PATH": str(run_dir / "pulse"),
        "PULSE_STATE_PATH": str(state),
        "PULSE_CLIENTCONFIG": str(root / "client.conf"),
    }
    env.pop("PULSE_SERVER", None)
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    log_path = root / "pulseaudio.log"
    args = [
        "pulseaudio",
        "--daemonize=no",
        "--system=false",
        "-n",  # no default.pa: only the modules below
        "--exit-idle-time=-1",  # stay up while no client is connected
        "--use-pid-file=false",
        "--realtime=false",
        "--high-priority=false",
        "--log-target=stderr",
        f"--load=module-native-protocol-unix socket={socket} auth-anonymous=1",
        (
            f"--load=module-null-sink sink_name={sink} rate={rate_hz} channels={channels} "
            "sink_properties=device.description=Virtual_Microphone"
        ),
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    server = PulseServer(root, f"unix:{socket}", sink, f"{sink}.monitor", process, log_path)
    deadline = time.monotonic() + timeout_s
    while True:
        if not server.alive:
            raise RuntimeError(
                f"pulseaudio exited ({process.returncode}) at start-up:\n{log_path.read_text()}"
            )
        try:
            server.run("pactl", "info", timeout_s=5)
            break
        except (RuntimeError, subprocess.TimeoutExpired):
            if time.monotonic() > deadline:
                stop_pulse(server)
                raise RuntimeError(f"pulseaudio did not answer in {timeout_s:.0f} s:\n{log_path.read_text()}")
            time.sleep(0.1)
    server.run("pactl", "set-default-sink", server.sink)
    server.run("pactl", "set-default-source", server.source)
    return server


def stop_pulse(server: PulseServer, timeout_s: float = 5.0) -> None:
    """Stop the daemon (SIGTERM, then SIGKILL)."""
    if not server.alive:
        return
    server.process.terminate()
    try:
        server.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout_s)


def reinit_portaudio() -> None:
    """Make sounddevice re-read the device list (it is read once, when sounddevice is imported).

    A no-op when sounddevice is not imported yet: its import will see the current environment."""
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        sd._terminate()
        sd._initialize()
