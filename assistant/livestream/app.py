"""One livestream: the live avatar stream published to RTMP (and recorded), speaking what comes from the broker.

    streamer = Livestreamer(options, setup)      # setup: assistant.live.build.build_live(settings, resolved)
    streamer.start()                             # idle frames go out at once, before any model or broker
    streamer.attach_speech(tts, dialogue)        # then messages are taken from the queue and spoken
    ...
    streamer.stop()                              # in-flight message requeued, publisher and recording finished

The parts: `LiveStream` (the frame clock: idle frames and silence whenever nothing is said), `RtmpPublisher` (a
sink that reconnects on its own), an MP4 recording sink (`LiveEncoder`, optional), `Speaker` (messages -> speech on
the stream, in order) and `AmqpConsumer` (queue -> messages, ack once said). `listeners` receive every stream event
(the tests and the benchmark watch speech start and end through them).

Needs ffmpeg, pika and a TTS engine.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from assistant.live.build import LiveSetup
from assistant.live.stream import LiveStream, StreamEvent, StreamSpeechStarted
from assistant.livestream.backoff import Backoff
from assistant.livestream.consumer import AmqpConsumer, Delivery
from assistant.livestream.messages import Message, MessageRejected, describe, parse_message
from assistant.livestream.options import StreamOptions
from assistant.livestream.publisher import RtmpPublisher
from assistant.livestream.speaker import Job, Speaker

log = logging.getLogger(__name__)


class Livestreamer:
    def __init__(self, options: StreamOptions, setup: LiveSetup) -> None:
        self.options = options
        self.setup = setup
        s = setup.settings
        self.listeners: list[Callable[[StreamEvent], None]] = []
        self.stream = LiveStream(setup.renderer, s, on_event=self._on_stream_event)
        self.publisher: RtmpPublisher | None = None
        if options.rtmp_url:
            self.publisher = RtmpPublisher(
                options.rtmp_url, s.width, s.height, s.fps, s.audio_rate_hz,
                video_bitrate=options.video_bitrate, keyframe_s=options.keyframe_s,
                backoff=Backoff(options.reconnect_initial_s, options.reconnect_max_s),
            )  # fmt: skip
        self.recorder: Any = None
        self.speaker: Speaker | None = None
        self.consumer: AmqpConsumer | None = None
        self.messages_done = 0
        self.messages_failed = 0
        self._stopped = threading.Event()

    # ---- lifecycle ----
    def start(self) -> None:
        """Start the frame clock and its sinks: the idle avatar goes out now."""
        s = self.setup.settings
        if self.publisher is not None:
            self.stream.add_sink(self.publisher)
        if self.options.record is not None:
            from assistant.video import LiveEncoder

            self.recorder = LiveEncoder(
                [("mp4", self.options.record)], s.width, s.height, s.fps, s.audio_rate_hz,
                video_bitrate=self.options.video_bitrate, keyframe_s=self.options.keyframe_s,
            )  # fmt: skip
            self.stream.add_sink(self.recorder)
        self.stream.start()
        log.info(
            "live avatar streaming: %s engine %dx%d at %g fps%s%s",
            self.setup.engine, s.width, s.height, s.fps,
            f", to {self.publisher.masked_url}" if self.publisher else "",
            f", recording {self.options.record}" if self.options.record else "",
        )  # fmt: skip

    def attach_speech(self, tts: Any, dialogue_factory: Callable[[], Any] | None = None) -> None:
        """Speak from now on: the speaker, and the consumer when a broker is configured."""
        self.speaker = Speaker(self.stream, tts, dialogue_factory)
        self.speaker.on_started = self._on_job_started
        o = self.options
        if not o.amqp_url:
            log.warning("no broker configured (--amqp, ASSISTANT_AMQP_URL or livestream.amqp_url): idling only")
            return
        self.consumer = AmqpConsumer(
            o.amqp_url, o.queue, self._on_delivery, prefetch=o.prefetch, dead_letter_queue=o.dead_letter_queue,
            backoff=Backoff(o.reconnect_initial_s, o.reconnect_max_s),
        )  # fmt: skip
        self.consumer.start()

    def stop(self) -> None:
        """Requeue the message in flight, stop speaking, finish the publisher and the recording."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.consumer is not None:
            self.consumer.stop(requeue=True)
        if self.speaker is not None:
            self.speaker.close()
        self.stream.stop(close_sinks=True)
        log.info("stream stopped: %s", self.summary(), extra={"fields": {"event": "stopped", **self.summary()}})

    @property
    def failure(self) -> str | None:
        """Why the stream cannot go on as asked (the consumer's thread ended on an error), or None."""
        return self.consumer.failure if self.consumer is not None and self.consumer.failed.is_set() else None

    def summary(self) -> dict[str, Any]:
        st = self.stream.stats
        out: dict[str, Any] = {
            "frames": st.frames, "repeated_frames": st.repeated_frames, "late_ms_max": round(st.late_ms_max, 1),
            "messages_spoken": self.messages_done, "messages_failed": self.messages_failed,
        }  # fmt: skip
        if self.publisher is not None:
            p = self.publisher.stats
            out.update(rtmp_connects=p.connects, rtmp_failures=p.failures, frames_unpublished=p.frames_unpublished,
                       frames_published=p.frames_published, frames_dropped_encoder=p.frames_dropped_encoder)
        if self.consumer is not None:
            c = self.consumer.stats
            out.update(acked=c.acked, rejected=c.rejected, requeued=c.requeued, broker_losses=c.connection_losses)
        return out

    # ---- messages ----
    def say(self, message: Message, on_done: Callable[[Job], None] | None = None) -> Job:
        """Speak a message without a broker (the benchmark's direct path, a local test)."""
        assert self.speaker is not None, "attach_speech() first"
        return self.speaker.submit(message, on_done or (lambda job: None), self._failed_locally)

    def _failed_locally(self, job: Job, reason: str) -> None:
        self.messages_failed += 1
        log.error("could not speak %s: %s", describe(job.message), reason)

    def _on_delivery(self, delivery: Delivery, body: bytes) -> None:
        assert self.consumer is not None and self.speaker is not None
        consumer = self.consumer
        try:
            message = parse_message(body, self.options.limits)
        except MessageRejected as e:
            self.messages_failed += 1
            consumer.reject(delivery, e.reason)
            return
        log.info("message %s%s: %s", delivery.identity[:20], " (redelivered)" if delivery.redelivered else "",
                 describe(message), extra={"fields": {"event": "message", "kind": message.kind}})  # fmt: skip

        def done(job: Job) -> None:
            self.messages_done += 1
            log.info("said %s in %.1f s; acknowledging", describe(job.message), time.monotonic() - job.submitted_at,
                     extra={"fields": {"event": "said", "kind": job.message.kind}})  # fmt: skip
            consumer.ack(delivery)

        def failed(job: Job, reason: str) -> None:
            self.messages_failed += 1
            consumer.reject(delivery, f"could not speak {describe(job.message)}: {reason}")

        self.speaker.submit(message, done, failed, tag=delivery)

    # ---- events (clock thread) ----
    def _on_job_started(self, job: Job, event: StreamSpeechStarted) -> None:
        log.info("speaking %s, %.2f s after it arrived", describe(job.message), event.at_s - job.submitted_at,
                 extra={"fields": {"event": "speaking", "kind": job.message.kind}})  # fmt: skip

    def _on_stream_event(self, event: StreamEvent) -> None:
        if self.speaker is not None:
            self.speaker.on_stream_event(event)
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a listener bug must not stop the clock
                log.exception("a stream listener failed")
