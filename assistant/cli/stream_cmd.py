"""`assistant stream --rtmp URL [--amqp URL] [--queue NAME] [--record FILE.mp4] [--json-log]`: the live avatar on
an RTMP stream from start to stop, speaking the messages of a RabbitMQ queue.

The idle avatar goes out as soon as the face is measured (a few seconds), before the voice loads and before the
broker answers. SIGTERM or Ctrl-C requeue the message in flight and end the stream cleanly (exit 0); a consumer
that stops on an error it cannot retry ends the stream with exit 1. A bad AMQP URL is refused before anything
starts (exit 2).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "stream", help="publish the avatar to RTMP and speak messages from RabbitMQ",
        description="Publish the live avatar to an RTMP server, speaking text/audio/chat messages from a RabbitMQ "
        "queue. URLs may come from the environment (ASSISTANT_RTMP_URL, ASSISTANT_AMQP_URL) or the livestream "
        "section of the config; credentials never appear in the log.",
    )  # fmt: skip
    parser.add_argument("--rtmp", metavar="URL", help="rtmp://host/app/key to publish to")
    parser.add_argument("--amqp", metavar="URL", help="amqp://user:pass@host:5672/vhost of the broker")
    parser.add_argument("--queue", metavar="NAME", help="the queue to consume (default: livestream.queue)")
    parser.add_argument("--record", metavar="FILE.mp4", help="also record the whole stream to this MP4")
    parser.add_argument("--json-log", action="store_true", help="log one JSON object a line on stderr")
    parser.add_argument("--duration", type=float, metavar="S", help=argparse.SUPPRESS)  # stop after S s (tests)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from assistant.config import load_settings
    from assistant.live.build import build_live
    from assistant.livestream.app import Livestreamer
    from assistant.livestream.logs import setup_stream_logging
    from assistant.livestream.options import stream_options
    from assistant.livestream.stages import build_tts, dialogue_factory
    from assistant.profile import resolve
    from assistant.talking_head.speed import measure_cpu_lipsync

    setup_stream_logging(json_lines=args.json_log, verbose=args.verbose)
    settings = load_settings(args.config) if args.config else load_settings()
    options = stream_options(settings, args.rtmp, args.amqp, args.queue, args.record, env=os.environ)
    if not options.rtmp_url and not options.record:
        print("error: nowhere to stream: give --rtmp URL (or ASSISTANT_RTMP_URL, livestream.rtmp_url) "
              "or --record FILE.mp4", file=sys.stderr)  # fmt: skip
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    resolved = resolve(settings, cpu_lipsync_probe=measure_cpu_lipsync)
    setup = build_live(settings, resolved)
    import logging

    log = logging.getLogger("assistant.stream")
    for notice in setup.notices:
        log.warning("Talking head: %s", notice)
    streamer = Livestreamer(options, setup)
    streamer.start()
    try:
        if not stop.is_set():
            streamer.attach_speech(build_tts(settings, resolved), dialogue_factory(settings, resolved))
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while not stop.wait(0.5):  # a short wait: the signal handlers run on this thread between waits
            if deadline is not None and time.monotonic() >= deadline:
                break
            if streamer.failure:  # no consumer any more: idling on would look like a stream with no messages
                break
    finally:
        streamer.stop()
    if streamer.failure:
        print(f"error: {streamer.failure}; the stream was stopped", file=sys.stderr)
        return 1
    return 0
