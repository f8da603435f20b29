"""A headless recording rig for `assistant bench live`: a virtual screen, a virtual microphone and speaker, and
recorders that capture what a user would see and hear, each stamped on this machine's `time.monotonic()` clock.

- `start_xvfb(w, h)` starts Xvfb on a free display (`-displayfd`, no TCP listener).
- `start_pulse(dir)` starts a private user-space PulseAudio daemon with two null sinks: `mic` (its monitor is the
  default source: an app's default microphone hears what `play()` plays into it) and `speaker` (the default sink:
  an app's output goes there). Clients reach it through `PulseRig.env` only; no system daemon is touched. The one
  start-up of a private PulseAudio: the benchmarks, the integration tests' virtual microphone and the UI tests.
- `use_pulse(rig)` points this process's PortAudio (sounddevice: the app's `LiveListener` and direct player) at it:
  PortAudio reaches PulseAudio through ALSA's `pulse` plugin (libasound2-plugins; Debian's
  /etc/alsa/conf.d/99-pulse.conf makes `pcm.!default` that plugin whenever a server answers), which finds the
  daemon through PULSE_SERVER, so the process's default input is the `mic` monitor and its default output `speaker`.
- `SpeakerRecorder` records the speaker's monitor (or any source) with `parec`: 16-bit mono 48 kHz WAV.
- `ScreenRecorder` records a screen region with `ffmpeg -f x11grab` to a lossless file, with a monotonic timestamp
  per frame.

Timing, audio: parec's raw output is read in a thread that notes `time.monotonic()` at each read and the number of
samples received so far. Sample k exists no earlier than (its render time), so every read i gives an upper bound
`t_i - n_i / rate` on the time of sample 0; the smallest bound is `started_at`. The null sink renders up to one block
ahead of its clock and parec is asked for 10 ms fragments, so the estimate sits within about one block (10 ms) of the
sink's render clock; `timing_spread_s` (median bound minus the smallest) shows the read jitter of the run. The null
sink is timed by the system clock, so there is no drift between sample count and `time.monotonic()`. Measured here
(5 runs, a click written with `pacat --latency-msec=5` at a noted time.monotonic()): the click's recorded time was
9.0-9.6 ms *before* the write, i.e. recorded times are early by the sink's render-ahead, 9-10 ms, steady to +-0.5 ms.
Read sound times as [t, t + 10 ms].

Timing, video: x11grab stamps each frame with the wall clock (`av_gettime()`) just before it asks the X server for
the image; ffmpeg prints the first stamp ("start: <seconds>") and writes the others relative to it (Matroska: 1 ms
resolution). The wall clock is mapped to `time.monotonic()` by reading both clocks back to back (< 10 us apart),
at start and at stop; `clock_step_s` is their disagreement (0 unless NTP stepped the clock meanwhile). A stamp comes
before the grab by the time the grab takes (about 1 ms for a 640x480 region under Xvfb). Measured here (5 runs,
`xsetroot -solid` at a noted time): the change always fell between the last old frame and the first new one (first
new frame 4-25 ms after the command started, which took 2.5 ms), so a change is timed to one frame period.

Processes are started from the calling thread; from the main thread they also get a parent-death signal
(`setpriv --pdeathsig`), so a killed benchmark leaves nothing behind. Every object is a context manager, and `stop()`
is idempotent. A missing tool raises `MissingToolError` naming the binary and the Debian package.

Needs Xvfb (xvfb), pulseaudio (pulseaudio), pactl/paplay/parec (pulseaudio-utils), ffmpeg/ffprobe (ffmpeg),
libasound2-plugins for PortAudio through ALSA. Linux only.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from assistant.errors import AssistantError

_APT_PACKAGE = {
    "Xvfb": "xvfb",
    "pulseaudio": "pulseaudio",
    "pactl": "pulseaudio-utils",
    "paplay": "pulseaudio-utils",
    "parec": "pulseaudio-utils",
    "ffmpeg": "ffmpeg",
    "ffprobe": "ffmpeg",
}
_LOG_TAIL_CHARS = 3000

SPEAKER_RATE_HZ = 48000  # what the null sinks and the speaker recording run at, like real hardware
PAREC_LATENCY_MS = 10  # parec's fragment size: bounds how late a sample is seen after the sink renders it


class RigError(AssistantError):
    """The recording rig could not start, or one of its processes failed; the message carries its log."""


class MissingToolError(RigError):
    """A binary the rig needs is not installed."""


def require(binary: str) -> str:
    """The path of `binary`, or MissingToolError naming the Debian package that provides it."""
    found = shutil.which(binary)
    if found is None:
        package = _APT_PACKAGE.get(binary, binary)
        raise MissingToolError(f"{binary} was not found on PATH; install it: sudo apt-get install {package}")
    return found


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return text if len(text) <= _LOG_TAIL_CHARS else "..." + text[-_LOG_TAIL_CHARS:]


def _spawn(args: list[str], env: Mapping[str, str] | None = None, **kwargs: object) -> subprocess.Popen:
    """Popen with a parent-death signal when called from the main thread.

    PR_SET_PDEATHSIG fires when the *thread* that forked exits, so it is only safe from the main thread (which lives
    as long as the process); elsewhere the context managers are the only cleanup."""
    setpriv = shutil.which("setpriv")
    if setpriv and threading.current_thread() is threading.main_thread():
        args = [setpriv, "--pdeathsig", "TERM", "--", *args]
    return subprocess.Popen(args, env=dict(env) if env is not None else None, **kwargs)  # type: ignore[call-overload]


def _terminate(
    process: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout_s: float = 5.0
) -> int | None:
    """Stop a child: `sig`, then SIGKILL after `timeout_s`; returns its exit status."""
    if process is None:
        return None
    if process.poll() is None:
        try:
            process.send_signal(sig)
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)
    return process.returncode


def realtime_minus_monotonic_s() -> float:
    """time.time() - time.monotonic(), from the tightest of a few back-to-back readings (error < 10 us)."""
    best_gap, best = float("inf"), 0.0
    for _ in range(7):
        m1 = time.monotonic()
        r = time.time()
        m2 = time.monotonic()
        if m2 - m1 < best_gap:
            best_gap, best = m2 - m1, r - (m1 + m2) / 2
    return best


class _Stoppable:
    def stop(self) -> object:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --- X server ------------------------------------------------------------------------------------------------


@dataclass
class XServer(_Stoppable):
    display: str  # ":5"
    width: int
    height: int
    process: subprocess.Popen
    log_path: Path

    @property
    def env(self) -> dict[str, str]:
        """What a child process needs to draw on this server."""
        return {"DISPLAY": self.display}

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        _terminate(self.process)


def start_xvfb(width: int, height: int, depth: int = 24, timeout_s: float = 15.0) -> XServer:
    """Start Xvfb on a display it picks itself (`-displayfd`), listening on its Unix socket only."""
    xvfb = require("Xvfb")
    log_path = Path(tempfile.mkstemp(prefix="xvfb-", suffix=".log")[1])
    read_fd, write_fd = os.pipe()
    args = [xvfb, "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x{depth}", "-nolisten", "tcp",
            "-noreset"]  # fmt: skip
    try:
        with open(log_path, "wb") as log:
            process = _spawn(args, pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    finally:
        os.close(write_fd)
    number = b""
    deadline = time.monotonic() + timeout_s
    try:
        # Xvfb writes "<n>\n" once it accepts connections; EOF means it died.
        while not number.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([read_fd], [], [], max(left, 0))
            if not ready:
                _terminate(process)
                raise RigError(f"Xvfb did not report a display in {timeout_s:.0f} s: {_tail(log_path)}")
            chunk = os.read(read_fd, 32)
            if not chunk:
                _terminate(process)
                raise RigError(f"Xvfb exited at start-up ({process.returncode}): {_tail(log_path)}")
            number += chunk
    finally:
        os.close(read_fd)
    return XServer(f":{number.decode().strip()}", width, height, process, log_path)


# --- PulseAudio ------------------------------------------------------------------------------------------------


@dataclass
class PulseRig(_Stoppable):
    root: Path  # runtime dir, socket, state, HOME and log of this daemon
    server: str  # "unix:<root>/run/native": the value of PULSE_SERVER
    process: subprocess.Popen
    log_path: Path
    mic_sink: str = "mic"  # play into it: the app's microphone hears it
    speaker_sink: str = "speaker"  # the default sink: the app plays into it
    _players: list[subprocess.Popen] = field(default_factory=list, repr=False)

    @property
    def mic_source(self) -> str:
        return f"{self.mic_sink}.monitor"  # the default source

    @property
    def speaker_monitor(self) -> str:
        return f"{self.speaker_sink}.monitor"

    @property
    def env(self) -> dict[str, str]:
        """The environment a child process needs to use this daemon (and only it), merged over os.environ by the
        caller. PULSE_CLIENTCONFIG's `autospawn = no` keeps a client from starting a daemon of its own."""
        return {"PULSE_SERVER": self.server, "PULSE_CLIENTCONFIG": str(self.root / "client.conf")}

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def run(self, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run a client (pactl, paplay, ...) against this daemon; RigError with its stderr on failure."""
        require(args[0])
        done = subprocess.run(
            list(args), env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout_s,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RigError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def play(self, wav_path: str | Path, sink: str | None = None, timeout_s: float = 120.0) -> None:
        """Play a sound file into `sink` (default: the microphone); returns once it has been played."""
        self.run("paplay", f"--device={sink or self.mic_sink}", str(wav_path), timeout_s=timeout_s)

    def play_async(self, wav_path: str | Path, sink: str | None = None) -> subprocess.Popen:
        """Start playing a sound file into `sink` (default: the microphone); `stop()` ends it if still running."""
        if not Path(wav_path).is_file():
            raise FileNotFoundError(f"Sound file not found: {wav_path}")
        player = _spawn(
            [require("paplay"), f"--device={sink or self.mic_sink}", str(wav_path)],
            env={**os.environ, **self.env}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        self._players.append(player)
        return player

    def stop(self) -> None:
        for player in self._players:
            _terminate(player)
            if player.stderr is not None:
                player.stderr.close()
        self._players.clear()
        _terminate(self.process)


def start_pulse(
    runtime_dir: str | Path, rate_hz: int = SPEAKER_RATE_HZ, channels: int = 2, timeout_s: float = 15.0
) -> PulseRig:
    """Start a private PulseAudio daemon in `runtime_dir` with the `mic` and `speaker` null sinks.

    Runs as the current user (root too: pulseaudio only warns), loads no default.pa (`-n`), never exits when idle
    and has no suspend-on-idle module, so both sinks keep their clocks running and their monitors deliver
    continuous (silent) audio from the start. Both sinks run at `rate_hz`, stereo, like real hardware."""
    for binary in ("pulseaudio", "pactl"):
        require(binary)
    root = Path(runtime_dir).resolve()  # HOME and the runtime paths must be absolute (a relative --out failed)
    run_dir, home, state = root / "run", root / "home", root / "state"
    for folder in (run_dir, home, state):
        folder.mkdir(parents=True, exist_ok=True)
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
    sinks = [
        f"--load=module-null-sink sink_name={name} rate={rate_hz} channels={channels} "
        f"sink_properties=device.description={description}"
        for name, description in (("mic", "Virtual_Microphone"), ("speaker", "Virtual_Speaker"))
    ]
    args = [
        "pulseaudio", "--daemonize=no", "--system=false", "-n", "--exit-idle-time=-1", "--use-pid-file=false",
        "--realtime=false", "--high-priority=false", "--log-target=stderr",
        f"--load=module-native-protocol-unix socket={socket} auth-anonymous=1", *sinks,
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = _spawn(args, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    rig = PulseRig(root, f"unix:{socket}", process, log_path)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if not rig.alive:
                raise RigError(f"pulseaudio exited ({process.returncode}) at start-up: {_tail(log_path)}")
            try:
                rig.run("pactl", "info", timeout_s=5)
                break
            except (RigError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise RigError(
                        f"pulseaudio did not answer in {timeout_s:.0f} s: {_tail(log_path)}"
                    ) from None
                time.sleep(0.05)
        rig.run("pactl", "set-default-sink", rig.speaker_sink)
        rig.run("pactl", "set-default-source", rig.mic_source)
    except BaseException:
        rig.stop()
        raise
    return rig


def reinit_portaudio() -> None:
    """Make sounddevice re-read the device list (PortAudio reads it once, when sounddevice is imported).

    A no-op when sounddevice is not imported yet: its import will see the current environment."""
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        sd._terminate()
        sd._initialize()


@contextmanager
def use_pulse(rig: PulseRig) -> Iterator[PulseRig]:
    """While inside, this process's PortAudio devices are `rig`'s (its default input the `mic` monitor, its default
    output the `speaker` sink); the environment and PortAudio's device list are restored on the way out. Open no
    PortAudio stream across the boundary: re-initialising PortAudio closes them."""
    saved = {key: os.environ.get(key) for key in rig.env}
    os.environ.update(rig.env)
    try:
        reinit_portaudio()
        yield rig
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reinit_portaudio()


# --- speaker recorder -------------------------------------------------------------------------------------------


class SpeakerRecorder(_Stoppable):
    """Record a PulseAudio source (default: the speaker's monitor) to a 16-bit mono WAV at 48 kHz.

    `started_at` is the time.monotonic() of the first sample (see the module docstring for the method); sample k is
    at `started_at + k / rate_hz`."""

    def __init__(
        self, pulse: PulseRig, path: str | Path, source: str | None = None, rate_hz: int = SPEAKER_RATE_HZ
    ) -> None:
        self.pulse = pulse
        self.path = Path(path)
        self.source = source or pulse.speaker_monitor
        self.rate_hz = rate_hz
        self._raw_path = self.path.with_name(self.path.name + ".raw")
        self._log_path = self.path.with_name(self.path.name + ".parec.log")
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._bounds: list[float] = []  # t_read - samples_so_far / rate, one per read
        self._bytes = 0
        self._first_read = threading.Event()
        self._error: BaseException | None = None
        self._stopped = False

    def start(self, timeout_s: float = 10.0) -> Self:
        """Start parec and return once its first samples have arrived."""
        parec = require("parec")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        args = [parec, f"--device={self.source}", "--raw", "--format=s16le", f"--rate={self.rate_hz}",
                "--channels=1", f"--latency-msec={PAREC_LATENCY_MS}"]  # fmt: skip
        with open(self._log_path, "wb") as log:
            self._process = _spawn(
                args, env={**os.environ, **self.pulse.env}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=log,
            )  # fmt: skip
        self._thread = threading.Thread(target=self._read, name="speaker-recorder", daemon=True)
        self._thread.start()
        if not self._first_read.wait(timeout_s):
            self.stop()
            raise RigError(
                f"parec delivered no audio from {self.source} in {timeout_s:.0f} s: {_tail(self._log_path)}"
            )
        if self._error is not None or not self._bounds:
            self.stop()
            raise RigError(f"parec failed on {self.source}: {_tail(self._log_path)}") from self._error
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        try:
            with open(self._raw_path, "wb") as raw:
                while True:
                    chunk = os.read(fd, 1 << 16)
                    now = time.monotonic()
                    if not chunk:
                        break
                    raw.write(chunk)
                    self._bytes += len(chunk)
                    self._bounds.append(now - (self._bytes // 2) / self.rate_hz)
                    self._first_read.set()
        except BaseException as e:  # noqa: BLE001 - kept for start()/stop() to raise on the caller's thread
            self._error = e
        finally:
            self._first_read.set()

    @property
    def started_at(self) -> float:
        """time.monotonic() of the first sample (the tightest upper bound over all reads so far)."""
        if not self._bounds:
            raise RigError("The speaker recorder has not received any audio yet")
        return min(self._bounds)

    @property
    def timing_spread_s(self) -> float:
        """Median minus smallest per-read bound: how much later than the estimate a typical read arrived."""
        return statistics.median(self._bounds) - min(self._bounds) if self._bounds else float("nan")

    @property
    def samples_recorded(self) -> int:
        return self._bytes // 2

    def stop(self) -> Path:
        """Stop parec, write the WAV and return its path."""
        if self._stopped:
            return self.path
        self._stopped = True
        early = self._process is not None and self._process.poll() is not None
        _terminate(self._process, signal.SIGINT)
        if self._thread is not None:
            self._thread.join(10)
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()
        if self._error is not None:
            raise RigError(f"Reading parec's output failed: {self._error}") from self._error
        if early:
            raise RigError(f"parec ended before stop() ({self._process.returncode}): {_tail(self._log_path)}")
        samples = self._bytes // 2
        with open(self._raw_path, "rb") as raw, wave.open(str(self.path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(self.rate_hz)
            out.writeframes(raw.read(samples * 2))
        self._raw_path.unlink(missing_ok=True)
        return self.path


# --- screen recorder --------------------------------------------------------------------------------------------

_START_RE = re.compile(r"Input #0, x11grab,.*?\n\s*Duration: [^,]*, start: (\d+(?:\.\d+)?)", re.DOTALL)


class ScreenRecorder(_Stoppable):
    """Record a region (x, y, w, h) of an X display with ffmpeg's x11grab into a lossless file.

    The default codec is libx264rgb at crf 0 (lossless RGB, cheapest to encode); `codec="ffv1"` is the alternative.
    Use a .mkv path: Matroska keeps each frame's own timestamp (`-fps_mode passthrough`), so late or dropped grabs
    show up as such. After `stop()`, `frame_times_s` holds every frame's time.monotonic() in presentation order."""

    def __init__(
        self,
        display: str,
        region: tuple[int, int, int, int],
        fps: float,
        path: str | Path,
        codec: str = "libx264rgb",
        draw_mouse: bool = False,
    ) -> None:
        self.display = display
        self.region = region
        self.fps = fps
        self.path = Path(path)
        self.codec = codec
        self.draw_mouse = draw_mouse
        self._log_path = self.path.with_name(self.path.name + ".ffmpeg.log")
        self._process: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None
        self._offset_start_s = 0.0  # realtime - monotonic at start
        self._offset_stop_s = 0.0
        self._first_wallclock_s: float | None = None
        self.frame_times_s: tuple[float, ...] = ()
        self._stopped = False

    def start(self, timeout_s: float = 15.0) -> Self:
        """Start ffmpeg and return once it has grabbed its first frame."""
        ffmpeg = require("ffmpeg")
        require("ffprobe")
        x, y, w, h = self.region
        codec_args = (["-c:v", "libx264rgb", "-crf", "0", "-preset", "ultrafast"] if self.codec == "libx264rgb"
                      else ["-c:v", self.codec] + (["-level", "3"] if self.codec == "ffv1" else []))  # fmt: skip
        args = [
            ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "info", "-f", "x11grab",
            "-draw_mouse", "1" if self.draw_mouse else "0", "-framerate", f"{self.fps:g}", "-video_size", f"{w}x{h}",
            "-i", f"{self.display}+{x},{y}", *codec_args, "-fps_mode", "passthrough", "-y", str(self.path),
        ]  # fmt: skip
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._offset_start_s = realtime_minus_monotonic_s()
        self._log = open(self._log_path, "wb")  # noqa: SIM115 - ffmpeg writes to it until stop()
        self._process = _spawn(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log)
        deadline = time.monotonic() + timeout_s
        while self._first_wallclock_s is None:
            found = _START_RE.search(self._log_path.read_text(errors="replace"))
            if found:
                self._first_wallclock_s = float(found.group(1))
            elif self._process.poll() is not None:
                self.stop_quietly()
                raise RigError(f"ffmpeg x11grab exited ({self._process.returncode}): {_tail(self._log_path)}")
            elif time.monotonic() > deadline:
                self.stop_quietly()
                raise RigError(f"ffmpeg x11grab did not start in {timeout_s:.0f} s: {_tail(self._log_path)}")
            else:
                time.sleep(0.01)
        return self

    @property
    def started_at(self) -> float:
        """time.monotonic() of the first frame's grab."""
        if self._first_wallclock_s is None:
            raise RigError("The screen recorder has not started")
        return self._first_wallclock_s - self._offset_start_s

    @property
    def clock_step_s(self) -> float:
        """How far the wall clock moved against the monotonic one during the recording (0 without NTP steps)."""
        return self._offset_stop_s - self._offset_start_s

    @property
    def frame_offsets_s(self) -> tuple[float, ...]:
        """Each frame's time after the first frame, in seconds."""
        return tuple(t - self.started_at for t in self.frame_times_s)

    def stop_quietly(self) -> None:
        _terminate(self._process, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
        self._stopped = True

    def stop(self) -> Path:
        """Stop ffmpeg (SIGINT: it finishes the file), read the frame times and return the file's path."""
        if self._stopped:
            return self.path
        self._stopped = True
        early = self._process is not None and self._process.poll() is not None
        # ffmpeg exits 255 after SIGINT once the file is finished; encoding may lag the grab, so allow time.
        rc = _terminate(self._process, signal.SIGINT, timeout_s=30.0)
        if self._log is not None:
            self._log.close()
        self._offset_stop_s = realtime_minus_monotonic_s()
        if early or rc not in (0, 255) or not self.path.is_file():
            raise RigError(f"ffmpeg x11grab failed or ended before stop() ({rc}): {_tail(self._log_path)}")
        self.frame_times_s = self._read_frame_times()
        return self.path

    def _read_frame_times(self) -> tuple[float, ...]:
        args = [require("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time",
                "-of", "csv=p=0", str(self.path)]  # fmt: skip
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RigError(f"ffprobe could not read the frame times of {self.path}: {done.stderr.strip()}")
        pts = sorted(float(v) for v in done.stdout.split() if v.strip() not in ("", "N/A"))
        # ffmpeg subtracted the input's start (the first grab's wall clock) from every stamp.
        return tuple(self.started_at + p for p in pts)


def stop_all(things: Sequence[_Stoppable]) -> None:
    """Stop several rig parts in reverse order, stopping the rest even when one fails; re-raise the first error."""
    first: BaseException | None = None
    for thing in reversed(things):
        try:
            thing.stop()
        except BaseException as e:  # noqa: BLE001 - every part must be stopped
            first = first or e
    if first is not None:
        raise first


# --- a virtual room (echo path) -------------------------------------------------------------------------------


def build_room(pulse: PulseRig, delay_ms: float, echo_gain_db: float) -> int:
    """Make the speaker audible to the microphone, as a laptop's own speakers are: module-loopback from the
    speaker's monitor into the mic sink, `delay_ms` late and `echo_gain_db` loud (its sink input's volume).
    Returns the loopback's module index. Room noise is played separately (`PulseRig.play_async`)."""
    done = pulse.run(
        "pactl", "load-module", "module-loopback", f"source={pulse.speaker_monitor}", f"sink={pulse.mic_sink}",
        f"latency_msec={max(1, int(delay_ms))}", "source_dont_move=true", "sink_dont_move=true",
        "adjust_time=0", "sink_input_properties=media.name=room-echo",
    )  # fmt: skip
    module = int(done.stdout.strip())
    deadline = time.monotonic() + 5.0
    while True:  # the loopback's sink input appears once its source delivers
        listing = pulse.run("pactl", "list", "sink-inputs").stdout
        inputs = re.findall(rf"Sink Input #(\d+)\n(?:\t.*\n)*?\tOwner Module: {module}\n", listing)
        if inputs or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if not inputs:
        raise RigError(f"the room's loopback (module {module}) has no sink input: {listing}")
    pulse.run("pactl", "set-sink-input-volume", inputs[0], f"{echo_gain_db:+.1f}dB")
    return module
