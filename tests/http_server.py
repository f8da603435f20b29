"""A small threaded HTTP server for download tests: serves in-memory files on 127.0.0.1 (ephemeral port).

It answers Range requests with 206 (unless told to ignore Range, then 200 with the whole file), can drop the
connection part-way through a file a given number of times, and records every request's path, Range header and
status so a test can assert what the client asked for.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Seen:
    path: str
    range: str | None
    status: int


@dataclass
class ServerState:
    files: dict[str, bytes]
    ignore_range: bool = False
    drop_after: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (bytes sent, times left)
    stall_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before the body stops coming
    released: threading.Event = field(default_factory=threading.Event)  # set on shutdown: stalled bodies end
    requests: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def _record(self, status: int) -> None:
        with self.server.state.lock:
            self.server.state.requests.append(Seen(self.path, self.headers.get("Range"), status))

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        st = self.server.state
        body = st.files.get(self.path)
        if body is None:
            self._record(404)
            self.send_error(404, "Not Found")
            return
        start, end = 0, len(body) - 1
        status = 200
        wanted = self.headers.get("Range")
        if wanted and not st.ignore_range:
            m = _RANGE.match(wanted.strip())
            if not m or int(m.group(1)) >= len(body):
                self._record(416)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(m.group(1))
            end = min(int(m.group(2)), len(body) - 1) if m.group(2) else len(body) - 1
            status = 206
        chunk = body[start : end + 1]
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(chunk)))
        self.send_header("Accept-Ranges", "none" if st.ignore_range else "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
        self.end_headers()
        with st.lock:
            drop = st.drop_after.get(self.path)
            if drop and drop[1] > 0:
                st.drop_after[self.path] = (drop[0], drop[1] - 1)
            else:
                drop = None
        stall = st.stall_after.get(self.path)
        if stall is not None:
            # A link that slows to nothing: the first bytes, then silence while the connection stays open.
            self.wfile.write(chunk[:stall])
            self.wfile.flush()
            st.released.wait()
            self.close_connection = True
            return
        if drop:
            # Send the first bytes, then cut the TCP connection mid-body, as a flaky network would.
            self.wfile.write(chunk[: drop[0]])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(chunk)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: ServerState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class LocalHTTPServer:
    """`with LocalHTTPServer({"/a/b.bin": data}) as srv:` then fetch `srv.url("/a/b.bin")`."""

    def __init__(self, files: dict[str, bytes], *, ignore_range: bool = False) -> None:
        self.state = ServerState(dict(files), ignore_range=ignore_range)
        self._server = _Server(self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, name="test-http", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def drop_connection(self, path: str, after_bytes: int, times: int = 1) -> None:
        """The next `times` requests for `path` are cut after `after_bytes` bytes of the body."""
        with self.state.lock:
            self.state.drop_after[path] = (after_bytes, times)

    def stall(self, path: str, after_bytes: int) -> None:
        """Requests for `path` get `after_bytes` bytes of the body, then nothing until the server stops."""
        with self.state.lock:
            self.state.stall_after[path] = after_bytes

    @property
    def requests(self) -> list[Seen]:
        with self.state.lock:
            return list(self.state.requests)

    def __enter__(self) -> LocalHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
