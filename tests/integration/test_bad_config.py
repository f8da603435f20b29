"""Bad configuration, secrets and livestream input, the way a user meets them: the real `assistant` command in a
private HOME (config, data, logs and temp files all under tmp_path), checked on its exit code, on a message that
names what, where and what to do, and on every output and log file never holding the password.

The matrix (issue #26 items 2, 3, 5, 9, 11): config files that are alias bombs, devices, FIFOs, folders, too large,
with duplicate keys, `true` for a number, a history larger than the context, too many threads; an AMQP password
holding '#' or '/'; a URL typo; `config show --json`; and against a private RabbitMQ broker, a queue made without
dead-lettering and messages nested too deep or dated 1e20.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from assistant.config import CONFIG_MAX_BYTES, PROJECT_ROOT
from tests.integration.json_log import JsonLog
from tests.integration.rabbitmq import rabbitmq_broker  # noqa: F401

pytestmark = pytest.mark.integration

ASSISTANT = str(Path(sys.executable).parent / "assistant")
PASSWORD = "S3cret#Pa55/w0rd"
PASSWORD_PIECES = ("S3cret", "Pa55", "w0rd")


def user_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "XDG_"))}
    env.update(
        HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_DATA_HOME=str(home / ".local/share"),
        XDG_STATE_HOME=str(home / ".local/state"), XDG_CACHE_HOME=str(home / ".cache"), TMPDIR=str(home / "tmp"),
    )  # fmt: skip
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env.update(extra)
    return env


def run(home: Path, *args: str, timeout_s: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ASSISTANT, *args], check=False, env=user_env(home, **env), capture_output=True, text=True, timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def user_config(home: Path) -> Path:
    return home / ".config" / "avatar-assistant" / "config.yaml"


def assert_no_secret(home: Path, *outputs: str) -> None:
    """No piece of the password in any output, nor in any file the run left under HOME (logs included)."""
    texts = list(outputs)
    for path in home.rglob("*"):
        if path.is_file() and path != user_config(home):
            texts.append(path.read_text(errors="replace"))
    for text in texts:
        for piece in PASSWORD_PIECES:
            assert piece not in text, f"{piece!r} leaked: ...{text[max(0, text.find(piece) - 200) :][:400]}"


# ---- config files that must be refused quickly, with a small message ----
def alias_bomb(path: Path) -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']  # nine levels of nine: 9**9 values, in 1 KB
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    path.write_text("\n".join(lines) + "\n")


CASES = {
    "alias bomb": (alias_bomb, "expands to more than", "remove the anchors"),
    "duplicate key": (
        lambda p: p.write_text("asr:\n  beam_size: 1\n  beam_size: 2\n"),
        "appears twice",
        "line 3",
    ),
    "beam_size true": (
        lambda p: p.write_text("asr:\n  beam_size: true\n"),
        "asr.beam_size",
        "not true/false",
    ),
    "history over context": (
        lambda p: p.write_text("dialogue:\n  history_budget_tokens: 4000\n"),
        "history_budget_tokens (4000) + max_tokens (160) exceed context_tokens (2048)",
        "raise context_tokens",
    ),
    "too large": (
        lambda p: p.write_text("# padding\n" * (CONFIG_MAX_BYTES // 10 + 10)),
        "a config file is at most",
        "name the right file",
    ),
    "a folder": (lambda p: p.mkdir(), "is a folder", "name a YAML file"),
    "a FIFO": (lambda p: os.mkfifo(p), "not a regular file", "name a YAML file"),
    "nested too deep": (
        lambda p: p.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n"),
        "nested too deep",
        "",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_config_file_is_refused_with_what_and_where(case, tmp_path):
    make, what, todo = CASES[case]
    path = tmp_path / "bad.yaml"
    make(path)
    out = run(
        tmp_path / "home", "config", "check", str(path), timeout_s=60
    )  # a hang or 100 s expansion fails here
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert what in out.stderr and todo in out.stderr and "bad.yaml" in out.stderr, out.stderr
    assert len(out.stderr) < 2000, "the message is small: no repr of an expansion"
    assert "Traceback" not in out.stderr


def test_config_dev_zero_is_refused_at_once(tmp_path):
    out = run(tmp_path / "home", "--config", "/dev/zero", "config", "check", timeout_s=60)
    assert out.returncode == 2
    assert "/dev/zero is not a regular file" in out.stderr


@pytest.mark.parametrize("bad", ["folder", "fifo"])
def test_a_user_overlay_that_is_not_a_file_fails_config_check(bad, tmp_path):
    home = tmp_path / "home"
    overlay = user_config(home)
    overlay.parent.mkdir(parents=True)
    overlay.mkdir() if bad == "folder" else os.mkfifo(overlay)
    out = run(home, "config", "check", timeout_s=60)
    assert out.returncode == 2, out.stdout
    assert str(overlay) in out.stderr and "name a YAML file" in out.stderr


def test_more_threads_than_cores_is_a_clear_warning(tmp_path):
    home = tmp_path / "home"
    user_config(home).parent.mkdir(parents=True)
    user_config(home).write_text("dialogue:\n  threads: 100000\n")
    out = run(home, "config", "check", timeout_s=60)
    assert out.returncode == 0, out.stderr
    cores = len(os.sched_getaffinity(0))
    assert f"dialogue.threads: 100000 is more than the {cores} core(s)" in out.stderr
    assert f"using {cores}" in out.stderr


# ---- secrets ----
def test_config_show_json_masks_the_amqp_password(tmp_path):
    home = tmp_path / "home"
    user_config(home).parent.mkdir(parents=True)
    user_config(home).write_text(
        f"livestream:\n  amqp_url: amqp://bot:{PASSWORD.replace('#', '%23').replace('/', '%2F')}@broker:5672/%2F\n"
    )
    out = run(home, "config", "show", "--json", timeout_s=300)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)["settings"]["livestream"]["amqp_url"]
    assert shown == "amqp://bot:***@broker:5672/%2F"
    assert_no_secret(home, out.stdout, out.stderr)


def test_a_url_typo_in_the_user_config_is_reported_without_the_password(tmp_path):
    home = tmp_path / "home"
    user_config(home).parent.mkdir(parents=True)
    user_config(home).write_text(f"livestream:\n  amqp_url: amqp//bot:{PASSWORD}@127.0.0.1:5672/%2F\n")
    out = run(home, "config", "check", timeout_s=60)
    assert out.returncode == 2
    assert "livestream.amqp_url" in out.stderr and "amqp//bot:***@127.0.0.1:5672/%2F" in out.stderr
    assert "must match pattern" in out.stderr or "should match pattern" in out.stderr
    assert_no_secret(home, out.stdout, out.stderr)


@pytest.mark.parametrize("source", ["env", "option"])
def test_an_amqp_password_with_hash_or_slash_is_refused_up_front(source, tmp_path):
    home = tmp_path / "home"
    url = f"amqp://u:{PASSWORD}@127.0.0.1:5672/%2F"
    args = ["stream", "--record", str(tmp_path / "r.mp4"), "--duration", "30"]
    if source == "env":
        out = run(home, *args, timeout_s=120, ASSISTANT_AMQP_URL=url)
        name = "ASSISTANT_AMQP_URL"
    else:
        out = run(home, *args, "--amqp", url, timeout_s=120)
        name = "--amqp"
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert f"error: {name}: " in out.stderr and "percent-encode it" in out.stderr
    assert "'#' as %23" in out.stderr and "'/' as %2F" in out.stderr
    assert not (tmp_path / "r.mp4").exists(), "nothing started"
    assert_no_secret(home, out.stdout, out.stderr)


# ---- the livestream against a private broker ----
def stream_config(tmp_path: Path, dead_letter: str) -> Path:
    data = yaml.safe_load((PROJECT_ROOT / "config" / "config.yaml").read_text())
    data["gpu_profile"] = "low"  # no CPU timing on a fresh HOME
    data["talking_head"]["engine"] = "light"
    data["live"]["resolution"] = {"width": 640, "height": 360}
    data["livestream"]["dead_letter_queue"] = dead_letter
    data["livestream"]["reconnect_initial_s"] = 0.2
    path = tmp_path / "stream.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_queue_without_dead_lettering_and_poison_messages_are_reported(rabbitmq_broker, tmp_path):  # noqa: F811
    import pika

    queue, dlq = "q.predeclared", "q.predeclared.dead"
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_broker.url))
    connection.channel().queue_declare(queue, durable=True)  # made by someone else, without dead-lettering
    connection.close()
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [ASSISTANT, "--config", str(stream_config(tmp_path, dlq)), "stream", "--queue", queue,
         "--record", str(tmp_path / "r.mp4"), "--json-log"],
        env=user_env(home, ASSISTANT_AMQP_URL=rabbitmq_broker.url), stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    log = JsonLog(proc)
    lines, raw, reader = log.records, log.raw, log.thread

    def wait_for(predicate, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert proc.poll() is None, "".join(raw)[-3000:]
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {''.join(raw)[-3000:]}"
            time.sleep(0.1)

    try:
        wait_for(lambda: any("consuming" in r.get("msg", "") for r in lines), 120, "the stream to consume")
        rabbitmq_broker.publish(queue, "[" * 100_000 + "]" * 100_000)
        rabbitmq_broker.publish(queue, json.dumps({"type": "text", "data": "hi", "timestamp": 1e20}))
        wait_for(
            lambda: sum("rejected a message" in r.get("msg", "") for r in lines) >= 2, 60, "two rejections"
        )
        proc.terminate()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    text = "".join(raw)
    assert any("already exists without dead-lettering" in r.get("msg", "") and dlq in r.get("msg", "")
               for r in lines), text[-3000:]  # fmt: skip
    rejected = [r["msg"] for r in lines if "rejected a message" in r.get("msg", "")]
    assert all("DROPPED: the queue has no dead-letter queue" in m for m in rejected), rejected
    assert any("nested too deep" in m for m in rejected) and any(
        '"timestamp" 1e+20 is not a date' in m for m in rejected
    )
    assert "handler error" not in text and "Traceback" not in text
    assert "guest:guest@" not in text
    assert list((home / "tmp").iterdir()) == [], "the stream left temporary folders"
