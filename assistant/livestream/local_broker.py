"""A private RabbitMQ broker in user space, for the tests and `assistant bench stream`: its own node name, its
own epmd, AMQP and distribution ports on 127.0.0.1, data and logs in a folder of its own. Started and stopped by
the caller; `restart()` keeps the data (durable queues and persistent messages survive it, as on a real broker).

    broker = LocalRabbitMQ(tmp_dir)
    broker.start()          # waits until AMQP answers (5-15 s on a small machine)
    broker.url              # amqp://guest:guest@127.0.0.1:PORT/%2F
    broker.stop()

Needs Debian's rabbitmq-server (`apt-get install rabbitmq-server`, which brings Erlang); its system service is
not used.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from assistant.livestream.messages import LivestreamError

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
INSTALL_HINT = "install RabbitMQ: sudo apt-get install rabbitmq-server (or run scripts/setup.sh)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing() -> str | None:
    """Why no local broker can run here, or None."""
    if not SERVER.is_file():
        return f"{SERVER} not found; {INSTALL_HINT}"
    if not shutil.which("epmd"):
        return f"Erlang's epmd not found; {INSTALL_HINT}"
    return None


class LocalRabbitMQ:
    def __init__(self, root: str | Path, port: int | None = None) -> None:
        self.root = Path(root)
        self.port = port or free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"assistant{self.port}@localhost"
        self._proc: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def env(self) -> dict[str, str]:
        r = self.root
        for sub in ("home", "mnesia", "log"):
            (r / sub).mkdir(parents=True, exist_ok=True)
        (r / "rabbitmq-env.conf").touch()
        (r / "enabled_plugins").write_text("[].\n")
        (r / "rabbitmq.conf").write_text(
            "loopback_users.guest = false\nlisteners.tcp.default = 127.0.0.1:%d\n"
            "disk_free_limit.absolute = 50MB\n" % self.port
        )
        env = dict(os.environ)
        env.update(
            HOME=str(r / "home"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_MNESIA_BASE=str(r / "mnesia"),
            RABBITMQ_LOG_BASE=str(r / "log"),
            RABBITMQ_FEATURE_FLAGS_FILE=str(r / "feature_flags"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(r / "enabled_plugins"),
            RABBITMQ_CONF_ENV_FILE=str(r / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(r / "rabbitmq"),  # rabbitmq.conf
            RABBITMQ_ADVANCED_CONFIG_FILE=str(r / "advanced.config"),
            RABBITMQ_PID_FILE=str(r / "rabbitmq.pid"),
            RABBITMQ_ALLOW_INPUT="",
            # Two schedulers are plenty for tests and keep the broker from spinning on small machines.
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+S 2:2 +sbwt none +sbwtdcpu none +sbwtdio none",
        )
        return env

    def start(self, timeout_s: float = 60.0) -> None:
        why = missing()
        if why:
            raise LivestreamError(why)
        env = self.env()
        if self._epmd is None or self._epmd.poll() is not None:
            self._epmd = subprocess.Popen(
                ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        log_path = self.root / "server.out"
        with open(log_path, "ab") as out:
            self._proc = subprocess.Popen(
                [str(SERVER)], env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LivestreamError(
                    f"RabbitMQ exited at start (code {self._proc.returncode}): {self._tail(log_path)}"
                )
            if self.ready():
                return
            time.sleep(0.25)
        self.stop()
        raise LivestreamError(f"RabbitMQ did not answer on port {self.port} within {timeout_s:.0f} s: "
                              f"{self._tail(log_path)}")  # fmt: skip

    def ready(self) -> bool:
        import pika
        import pika.exceptions

        try:
            connection = pika.BlockingConnection(
                pika.URLParameters(self.url + "?connection_attempts=1&socket_timeout=2")
            )
        except (pika.exceptions.AMQPError, OSError):
            return False
        connection.close()
        return True

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the node gracefully (messages on disk stay for the next start); epmd too unless restarting."""
        self._stop_server(timeout_s)
        if self._epmd is not None:
            self._epmd.terminate()
            try:
                self._epmd.wait(5)
            except subprocess.TimeoutExpired:
                self._epmd.kill()
                self._epmd.wait()
            self._epmd = None

    def _stop_server(self, timeout_s: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)  # the script's shell and the Erlang VM it started
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # erl_child_setup and friends share the session; make sure none outlives the node.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def restart(self, down_s: float = 0.0, timeout_s: float = 60.0) -> None:
        """Stop the node, stay down `down_s`, start it again on the same ports and data."""
        self._stop_server(30.0)
        time.sleep(down_s)
        self.start(timeout_s)

    def queue_counts(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) of a queue, by a passive declare."""
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            ok = connection.channel().queue_declare(queue, passive=True)
            return ok.method.message_count, ok.method.consumer_count
        finally:
            connection.close()

    def publish(self, queue: str, body: bytes | str, persistent: bool = True, message_id: str | None = None) -> None:
        """Publish one message to `queue` through the default exchange (persistent: it survives a restart)."""
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            props = pika.BasicProperties(delivery_mode=2 if persistent else 1, message_id=message_id,
                                         content_type="application/json")  # fmt: skip
            connection.channel().basic_publish("", queue, body, props)
        finally:
            connection.close()

    @staticmethod
    def _tail(path: Path, chars: int = 2000) -> str:
        try:
            return path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
