"""A local RTMP server that records what it receives, for the tests and `assistant bench stream`: ffmpeg listening
on 127.0.0.1 (`-listen 1`: one publisher per run; it exits when that publisher goes away), copying the stream
into an FLV file untouched. With `mouth_box`, the same process also decodes the video and hands this side the mean
luma of the mouth region of every frame, stamped with when it arrived (`time.monotonic()`), which is how the
benchmark sees the first talking frame at the receiver.

Needs ffmpeg with RTMP (Debian's has it).
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import numpy as np

from assistant.livestream.local_broker import free_port


class RtmpReceiver:
    def __init__(
        self,
        out_path: str | Path,
        port: int | None = None,
        mouth_box: tuple[int, int, int, int] | None = None,  # (x, y, w, h) in stream pixels, even
    ) -> None:
        self.port = port or free_port()
        self.out_path = Path(out_path)
        self.mouth_box = mouth_box
        self.arrivals_s: list[float] = []  # time.monotonic() of each decoded frame
        self.mouth_luma: list[float] = []  # mean luma of its mouth region
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._stderr = self.out_path.with_suffix(".log")

    @property
    def url(self) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/stream"

    def start(self) -> None:
        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        args = [
            "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-listen", "1", "-i", self.url,
            "-map", "0", "-c", "copy", "-f", "flv", str(self.out_path),
        ]  # fmt: skip
        if self.mouth_box is not None:
            x, y, w, h = self.mouth_box
            args += ["-map", "0:v:0", "-vf", f"crop={w}:{h}:{x}:{y}", "-pix_fmt", "gray", "-f", "rawvideo", "pipe:1"]
        with open(self._stderr, "ab") as err:
            self._proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stderr=err,
                stdout=subprocess.PIPE if self.mouth_box is not None else subprocess.DEVNULL,
            )  # fmt: skip
        if self.mouth_box is not None:
            self._reader = threading.Thread(target=self._read, name="rtmp-receiver", daemon=True)
            self._reader.start()
        self._wait_listening()

    def _wait_listening(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # ffmpeg binds the port only once it is set up; a probe connection would be taken as the publisher,
            # so look at the kernel's table of listening sockets instead of connecting.
            if self._listening():
                return
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"the RTMP receiver exited: {self.log()}")
            time.sleep(0.05)
        raise RuntimeError(f"the RTMP receiver did not listen on {self.port} within {timeout_s:.0f} s")

    def _listening(self) -> bool:
        hex_port = f"{self.port:04X}"
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                cols = line.split()
                if cols[1].endswith(":" + hex_port) and cols[3] == "0A":  # 0A: LISTEN
                    return True
        return False

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None and self.mouth_box is not None
        _, _, w, h = self.mouth_box
        size = w * h
        while True:
            buf = self._proc.stdout.read(size)
            if len(buf) < size:
                return
            now = time.monotonic()
            self.arrivals_s.append(now)
            self.mouth_luma.append(float(np.frombuffer(buf, np.uint8).mean()))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """End the recording (ffmpeg finishes the file) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()  # ffmpeg ends cleanly on SIGTERM: the FLV is complete
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(5.0)
        if proc.stdout is not None:
            proc.stdout.close()

    def log(self) -> str:
        try:
            return self._stderr.read_text(errors="replace")[-2000:]
        except OSError:
            return ""
