"""`assistant bench stream [--json]`: the livestream on this machine, measured at a local RTMP receiver.

1. Latency: one `Livestreamer` (the light engine at the configured size) publishing to a receiver that decodes
   the mouth region of every frame as it arrives; text messages are published to a private RabbitMQ broker one at
   a time, and the time from `basic_publish` to the first frame at the receiver whose mouth has left its idle range
   is the "published -> first talking frame" figure (median, max), split into "on the stream" (the clock's
   StreamSpeechStarted: TTS and queueing) and the transport after it (encoder, RTMP, receiver decode).
   Frames dropped: ticks that repeated a frame (rendering late), frames the encoder dropped, frames not published.
   CPU: this process (clock, renderer, TTS, consumer) plus its ffmpeg encoder, as a share of one core.
2. Concurrency: 1, 2, ... `assistant stream` processes on one queue (competing consumers), each with its own
   receiver, while messages keep coming; a count sustains real time when every stream made its frames on time
   (under 1 % repeated, none dropped by the encoder) and its receiver got them all.

Needs rabbitmq-server (a private node is started here), ffmpeg, the bundled Piper voice.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.bench.usage import cpu_s

QUEUE = "bench.speak"
SENTENCES = (
    "Hello and welcome to the stream.",
    "Today we talk about the weather on Mars.",
    "The wind there can blow at sixty miles an hour.",
    "Thank you for asking such a good question.",
    "Let us move on to the next topic.",
    "The dust storms can last for several weeks.",
)


@dataclass
class StreamBench:
    size: str = ""
    engine: str = ""
    messages: int = 0
    first_talking_frame_ms: list[float] = field(default_factory=list)  # published -> first talking frame at receiver
    first_talking_frame_ms_median: float | None = None
    first_talking_frame_ms_max: float | None = None
    on_stream_ms_median: float | None = None  # published -> StreamSpeechStarted on the clock
    transport_ms_median: float | None = None  # StreamSpeechStarted -> frame at the receiver
    frames: int = 0
    frames_repeated: int = 0
    frames_dropped_encoder: int = 0
    frames_unpublished_after_connect: int = 0
    frames_dropped: int = 0
    cpu_percent_of_one_core: float = 0.0
    concurrent: list[dict[str, Any]] = field(default_factory=list)
    concurrent_streams_real_time: int = 0
    cores: int = os.cpu_count() or 1


def _encoder_pids(exclude: set[int]) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process().children(recursive=True) if c.pid not in exclude]


def measure_latency(settings: Any, broker: Any, root: Path, messages: int) -> StreamBench:
    from assistant.live.build import build_live
    from assistant.live.stream import StreamSpeechStarted
    from assistant.livestream.app import Livestreamer
    from assistant.livestream.options import stream_options
    from assistant.livestream.receiver import RtmpReceiver
    from assistant.livestream.stages import build_tts
    from assistant.profile import resolve
    from assistant.talking_head.speed import measure_cpu_lipsync

    resolved = resolve(settings, cpu_lipsync_probe=measure_cpu_lipsync)  # as `assistant stream` resolves
    setup = build_live(settings, resolved)
    b = setup.renderer.face_box
    x1, x2 = b.x1 + b.width // 4, b.x2 - b.width // 4
    y1, y2 = b.y1 + int(0.62 * b.height), min(setup.settings.height, b.y2 + int(0.12 * b.height))
    box = (x1 // 2 * 2, y1 // 2 * 2, (x2 - x1) // 2 * 2, (y2 - y1) // 2 * 2)
    receiver = RtmpReceiver(root / "latency.flv", mouth_box=box)
    receiver.start()
    options = stream_options(settings, receiver.url, broker.url, QUEUE)
    streamer = Livestreamer(options, setup)
    started: list[StreamSpeechStarted] = []
    streamer.listeners.append(lambda e: started.append(e) if isinstance(e, StreamSpeechStarted) else None)
    streamer.start()
    streamer.attach_speech(build_tts(settings, resolved))
    s = setup.settings
    report = StreamBench(size=f"{s.width}x{s.height}@{s.fps:g}", engine=setup.engine, messages=messages)
    on_stream: list[float] = []
    transport: list[float] = []
    try:
        deadline = time.monotonic() + 30
        while not (streamer.publisher.connected and streamer.consumer.connected.is_set()):
            if time.monotonic() > deadline:
                raise RuntimeError("the stream did not connect to the broker and the receiver within 30 s")
            time.sleep(0.1)
        unpublished_at_connect = streamer.publisher.stats.frames_unpublished
        wall0, cpu0 = time.monotonic(), cpu_s([os.getpid()] + _encoder_pids({receiver._proc.pid}))
        for n in range(messages):
            time.sleep(1.5)  # idle: the baseline of the mouth region
            idle = np.array(receiver.mouth_luma[-25:])
            spread = max(float(idle.max() - idle.min()), 1.0)
            published = time.monotonic()
            broker.publish(QUEUE, json.dumps({"type": "text", "data": SENTENCES[n % len(SENTENCES)]}))
            frames_before = len(receiver.arrivals_s)
            acked = n + 1
            first: float | None = None
            while streamer.consumer.stats.acked < acked and time.monotonic() - published < 30:
                time.sleep(0.02)
                if first is None:
                    for i in range(frames_before, len(receiver.mouth_luma)):
                        if abs(receiver.mouth_luma[i] - float(idle.mean())) > spread:
                            first = receiver.arrivals_s[i]
                            break
            if first is not None:
                report.first_talking_frame_ms.append(round((first - published) * 1000.0, 1))
                clock = next((e.at_s for e in started if e.at_s >= published), None)
                if clock is not None:
                    on_stream.append((clock - published) * 1000.0)
                    transport.append((first - clock) * 1000.0)
        wall = time.monotonic() - wall0
        cpu = cpu_s([os.getpid()] + _encoder_pids({receiver._proc.pid})) - cpu0
        report.cpu_percent_of_one_core = round(100.0 * cpu / wall, 1)
    finally:
        streamer.stop()
        receiver.stop()
    ms = report.first_talking_frame_ms
    if ms:
        report.first_talking_frame_ms_median = round(statistics.median(ms), 1)
        report.first_talking_frame_ms_max = max(ms)
    if on_stream:
        report.on_stream_ms_median = round(statistics.median(on_stream), 1)
        report.transport_ms_median = round(statistics.median(transport), 1)
    st, ps = streamer.stream.stats, streamer.publisher.stats
    report.frames, report.frames_repeated = st.frames, st.repeated_frames
    report.frames_dropped_encoder = ps.frames_dropped_encoder
    report.frames_unpublished_after_connect = ps.frames_unpublished - unpublished_at_connect
    report.frames_dropped = st.repeated_frames + ps.frames_dropped_encoder + report.frames_unpublished_after_connect
    return report


def run_concurrent(n: int, broker: Any, root: Path, seconds: float, config: Path | None) -> dict[str, Any]:
    """n `assistant stream` processes for `seconds` while messages keep coming; per-stream figures."""
    import psutil

    from assistant.livestream.receiver import RtmpReceiver

    exe = str(Path(sys.executable).parent / "assistant")
    receivers, procs = [], []
    for i in range(n):
        rx = RtmpReceiver(root / f"c{n}-{i}.flv")
        rx.start()
        receivers.append(rx)
        args = [exe] + (["--config", str(config)] if config else []) + [
            "stream", "--rtmp", rx.url, "--amqp", broker.url, "--queue", QUEUE, "--json-log"]  # fmt: skip
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    time.sleep(6.0)  # start-up: face, render rate, voice, broker
    t0 = time.monotonic()
    cpu0 = [_tree_cpu(psutil.Process(p.pid)) for p in procs]
    k = 0
    while time.monotonic() - t0 < seconds:
        broker.publish(QUEUE, json.dumps({"type": "text", "data": SENTENCES[k % len(SENTENCES)]}))
        k += 1
        time.sleep(1.0)
    wall = time.monotonic() - t0
    cpu = [_tree_cpu(psutil.Process(p.pid)) - c for p, c in zip(procs, cpu0, strict=True)]
    summaries = []
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            _, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        summary: dict[str, Any] = {}
        for line in err.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("event") == "stopped":
                summary = record
        summaries.append(summary)
    for rx in receivers:
        rx.stop()
    streams = []
    for s, c in zip(summaries, cpu, strict=True):
        frames = int(s.get("frames", 0))
        repeated = int(s.get("repeated_frames", 0))
        dropped = int(s.get("frames_dropped_encoder", 0))
        streams.append({"frames": frames, "repeated": repeated, "encoder_dropped": dropped,
                        "spoken": s.get("messages_spoken", 0), "cpu_percent": round(100 * c / wall, 1)})  # fmt: skip
    real_time = all(x["frames"] > 0 and x["repeated"] <= 0.01 * x["frames"] and x["encoder_dropped"] == 0
                    for x in streams)  # fmt: skip
    return {"streams": n, "real_time": real_time, "per_stream": streams, "messages_published": k}


def _tree_cpu(proc: Any) -> float:
    import psutil

    total = 0.0
    for p in [proc] + proc.children(recursive=True):
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _run(args: argparse.Namespace) -> int:
    from assistant.config import load_settings
    from assistant.livestream.local_broker import LocalRabbitMQ

    import logging

    logging.getLogger("pika").setLevel(logging.CRITICAL)  # the broker's readiness probes are refused until it is up
    settings = load_settings(args.config) if args.config else load_settings()
    root = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    broker = LocalRabbitMQ(root / "rabbitmq")
    broker.start()
    try:
        report = measure_latency(settings, broker, root, args.messages)
        for n in range(1, args.max_streams + 1):
            result = run_concurrent(n, broker, root, args.seconds, Path(args.config) if args.config else None)
            report.concurrent.append(result)
            if not result["real_time"]:
                break
            report.concurrent_streams_real_time = n
    finally:
        broker.stop()
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return 0
    print(f"livestream on this machine ({report.cores} cores), {report.engine} engine {report.size}")
    print(f"  published -> first talking frame at the receiver: median {report.first_talking_frame_ms_median} ms, "
          f"max {report.first_talking_frame_ms_max} ms ({len(report.first_talking_frame_ms)} of {report.messages})")
    print(f"    on the stream clock {report.on_stream_ms_median} ms, then transport {report.transport_ms_median} ms")
    print(f"  frames dropped: {report.frames_dropped} of {report.frames} "
          f"(repeated {report.frames_repeated}, encoder {report.frames_dropped_encoder}, "
          f"unpublished {report.frames_unpublished_after_connect})")
    print(f"  CPU per stream: {report.cpu_percent_of_one_core} % of one core")
    print(f"  concurrent streams in real time: {report.concurrent_streams_real_time}")
    for c in report.concurrent:
        print(f"    {c['streams']}: {'real time' if c['real_time'] else 'NOT real time'} {c['per_stream']}")
    return 0


def register(bsub: argparse._SubParsersAction) -> None:
    parser = bsub.add_parser("stream", help="the RTMP livestream: message -> first talking frame, drops, CPU, streams")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--messages", type=int, default=6, help="messages timed one at a time (default 6)")
    parser.add_argument("--max-streams", type=int, default=4, help="most concurrent streams tried (default 4)")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds each concurrency step runs")
    parser.set_defaults(func=_run)
