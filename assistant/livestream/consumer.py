"""The AMQP consumer: takes messages from one RabbitMQ queue on its own thread, and acknowledges each only once the
stream has said it (at-least-once delivery).

- prefetch (1 by default): the broker hands over that many messages and waits for their acks, so several
  `assistant stream` processes on one queue share the work as competing consumers.
- `handler(delivery, body)` is called on this thread for each new message; it must end in `ack(delivery)` (the
  speech went out) or `reject(delivery, reason)` (never speakable: not requeued, dead-lettered when the queue has a
  dead-letter queue). Both may be called from any thread: they are carried out here, on the connection's thread
  (pika connections are not thread-safe).
- The broker down at start or lost mid-run: reconnect with backoff, forever, while the stream idles on. Unacked
  messages go back to the queue on the broker's side and come again marked `redelivered`; one whose earlier
  delivery is still being spoken is not spoken twice (its new delivery is acked when the speech ends), nor one that
  was spoken while the connection was down, nor one whose ack was sent but lost with the connection (the identities
  of the last REMEMBER_SPOKEN messages spoken are kept across reconnects: a redelivery of one is acked at once).
- Anything else that ends the connection thread (a bug, a URL pika cannot parse) is not retried: `failure` says
  why and `failed` is set, so the stream stops with an error instead of idling on without a consumer.
- A queue that already exists without the configured dead-letter queue is detected at connect: the log says
  rejected messages are dropped there, not dead-lettered.
- `stop()` (SIGTERM, SIGINT): the messages in flight are rejected with requeue, so another consumer says them.

Credentials come in the URL and never reach the log (`mask_url`); `check_amqp_url` refuses, before anything
starts, a URL whose password holds a character that would cut it short. Needs pika.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import pika
import pika.exceptions

from assistant.errors import ConfigError
from assistant.livestream.backoff import Backoff
from assistant.redact import mask_text, mask_url, register_secret, url_password

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often the connection thread looks at acks queued by other threads (an ack waits <= 50 ms)
REMEMBER_SPOKEN = 1024  # identities of the messages spoken last, to know a redelivery of one (its ack was lost)
_URL_CUTTERS = {"#": "%23", "/": "%2F", "?": "%3F", "@": "%40"}  # each ends the user:password part of a URL


def _register_password(url: str) -> None:
    password = url_password(url)
    if password and not url.partition("://")[2].startswith(f"{password}:"):  # guest:guest shows it as the user
        register_secret(password)


def check_amqp_url(url: str, source: str) -> None:
    """Refuse, naming `source` (the variable or option it came from), an AMQP URL pika would misread: a password
    holding '#', '/', '?' or '@' ends the user:password part early and the rest becomes the host or port. The
    password is registered with the redactor first, so no later message can quote it."""
    _register_password(url)
    shown = mask_url(url)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("amqp", "amqps"):
        raise ConfigError(f"{source}: {shown!r} is not an AMQP URL; the form is amqp://user:password@host:5672/vhost")
    if "@" in rest:
        userinfo = rest.rsplit("@", 1)[0]
        cutters = [c for c in _URL_CUTTERS if c in userinfo]
        if cutters:
            codes = ", ".join(f"{c!r} as {_URL_CUTTERS[c]}" for c in cutters)
            raise ConfigError(
                f"{source}: the user name or password in {shown!r} holds {' and '.join(repr(c) for c in cutters)}, "
                f"which ends that part of a URL early; percent-encode it ({codes}) and run again"
            )
    try:
        pika.URLParameters(url)
    except Exception as e:  # noqa: BLE001 - pika raises ValueError, TypeError, KeyError for bad parts
        raise ConfigError(
            f"{source}: {shown!r} is not a usable AMQP URL ({mask_text(str(e))}); the form is "
            "amqp://user:password@host:5672/vhost with special characters percent-encoded"
        ) from None  # pika's exception can quote the URL: not chained into a traceback


@dataclass(frozen=True)
class Delivery:
    generation: int  # which connection delivered it (a tag is only valid on its own channel)
    tag: int
    identity: str  # message_id, or a hash of the body: the same message when it is redelivered
    redelivered: bool


@dataclass
class ConsumerStats:
    connects: int = 0
    connection_losses: int = 0
    delivered: int = 0
    acked: int = 0
    rejected: int = 0
    requeued: int = 0
    redelivered: int = 0
    adopted: int = 0  # redeliveries of a message already being spoken: acked when that speech ends
    acked_already_spoken: int = 0  # redeliveries of a message spoken while the connection was down


class AmqpConsumer:
    def __init__(
        self,
        url: str,
        queue_name: str,
        handler: Callable[[Delivery, bytes], None],
        prefetch: int = 1,
        dead_letter_queue: str | None = None,
        backoff: Backoff | None = None,
        on_state: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        _register_password(url)  # whatever pika says about this URL later, the password is not in it
        self.masked_url = mask_url(url)
        self.queue_name = queue_name
        self.handler = handler
        self.prefetch = prefetch
        self.dead_letter_queue = dead_letter_queue
        self.backoff = backoff or Backoff()
        self.on_state = on_state or (lambda state: None)  # "connected", "lost"
        self.stats = ConsumerStats()
        self.connected = threading.Event()
        self._generation = 0
        self._active: dict[str, Delivery] = {}  # identity -> its latest delivery, until acked or rejected
        self._spoken: OrderedDict[str, None] = OrderedDict()  # spoken, ack lost with the connection
        self._actions: queue.Queue[tuple[str, str, str]] = queue.Queue()  # (ack|reject, identity, reason)
        self._stop = threading.Event()
        self._requeue_on_stop = True
        self._thread: threading.Thread | None = None
        self._was_connected = False  # the session that just ended had consumed (a loss, not a failed connect)
        self._lock = threading.Lock()
        self.failed = threading.Event()  # the connection thread ended on an error it cannot retry
        self.failure: str | None = None
        self.dead_lettering: bool | None = None  # rejected messages reach the dead-letter queue (None: not known)

    # ---- lifecycle ----
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="amqp-consumer", daemon=True)
            self._thread.start()

    def stop(self, requeue: bool = True, timeout_s: float = 10.0) -> None:
        """Requeue what is in flight (unless `requeue` is False) and close the connection."""
        self._requeue_on_stop = requeue
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    # ---- from any thread ----
    def ack(self, delivery: Delivery) -> None:
        self._actions.put(("ack", delivery.identity, ""))

    def reject(self, delivery: Delivery, reason: str) -> None:
        self._actions.put(("reject", delivery.identity, reason))

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._active)

    # ---- the connection thread ----
    def _run(self) -> None:
        try:
            self._reconnecting()
        except Exception as e:  # not retryable: the stream must hear of it, not idle on
            self.failure = f"the AMQP consumer stopped: {mask_text(f'{type(e).__name__}: {e}')}"
            log.error("%s", self.failure)
            log.debug("the consumer's traceback", exc_info=True)  # masked by RedactingFilter on every handler
            self.failed.set()
        finally:
            self.connected.clear()

    def _reconnecting(self) -> None:
        while not self._stop.is_set():
            try:
                self._session()
            except (pika.exceptions.AMQPError, OSError) as e:
                was_connected, self._was_connected = self._was_connected, False
                if self._stop.is_set():
                    break
                delay = self.backoff.next_delay()
                reason = mask_text(f"{type(e).__name__}: {e}".strip())
                if was_connected:
                    self.stats.connection_losses += 1
                    self.on_state("lost")
                    log.warning(
                        "lost the broker %s (%s); %d message(s) in flight will come again; reconnecting in %.1f s",
                        self.masked_url, reason, self.in_flight, delay,
                    )  # fmt: skip
                else:
                    log.warning("broker %s unreachable (%s); retrying in %.1f s", self.masked_url, reason, delay)
                self._stop.wait(delay)

    def _session(self) -> None:
        params = pika.URLParameters(self.url)
        params.connection_attempts = 1
        params.socket_timeout = 5.0
        params.blocked_connection_timeout = 30.0
        connection = pika.BlockingConnection(params)
        try:
            channel = self._open_queue(connection)
            channel.basic_qos(prefetch_count=self.prefetch)
            with self._lock:
                self._generation += 1
            channel.basic_consume(self.queue_name, self._on_message, auto_ack=False)
            self.stats.connects += 1
            self.backoff.reset()
            self.connected.set()
            self._was_connected = True
            self.on_state("connected")
            log.info("consuming %r from %s (prefetch %d)", self.queue_name, self.masked_url, self.prefetch)
            while not self._stop.is_set():
                connection.process_data_events(time_limit=POLL_S)
                self._carry_out(channel)
            self._carry_out(channel)
            if self._requeue_on_stop:
                self._requeue_all(channel)
        finally:
            self.connected.clear()
            try:
                if connection.is_open:
                    connection.close()
            except (pika.exceptions.AMQPError, OSError):
                pass

    def _open_queue(self, connection: pika.BlockingConnection):  # -> BlockingChannel
        """The queue as the operator made it, or declared here (durable; with the dead-letter queue if set)."""
        channel = connection.channel()
        try:
            channel.queue_declare(self.queue_name, passive=True)
            return self._check_dead_lettering(connection, channel)
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code != 404:
                raise
        channel = connection.channel()  # a failed passive declare closes the channel
        arguments = {}
        if self.dead_letter_queue:
            channel.queue_declare(self.dead_letter_queue, durable=True)
            arguments = self._dead_letter_arguments()
            self.dead_lettering = True
        channel.queue_declare(self.queue_name, durable=True, arguments=arguments)
        log.info("declared the durable queue %r%s", self.queue_name,
                 f" (rejected messages go to {self.dead_letter_queue!r})" if self.dead_letter_queue else "")  # fmt: skip
        return channel

    def _dead_letter_arguments(self) -> dict[str, str]:
        # The default exchange routes by queue name: rejected messages land in the dead-letter queue.
        return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": str(self.dead_letter_queue)}

    def _check_dead_lettering(self, connection: pika.BlockingConnection, channel):  # -> BlockingChannel
        """A queue someone else made: does it dead-letter to ours? AMQP does not report a queue's arguments, but a
        declare with different ones is refused (406): that tells. A DLX set by a broker policy is not visible."""
        if not self.dead_letter_queue:
            return channel
        try:
            channel.queue_declare(self.dead_letter_queue, durable=True)
            channel.queue_declare(self.queue_name, durable=True, arguments=self._dead_letter_arguments())
            self.dead_lettering = True
            return channel
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code != 406:
                raise
        self.dead_lettering = False
        log.warning(
            "the queue %r already exists without dead-lettering to %r: rejected messages will be DROPPED, not "
            "dead-lettered (unless a broker policy sets a dead-letter exchange); delete the queue so the stream "
            "re-creates it, or add x-dead-letter-routing-key=%s to it",
            self.queue_name, self.dead_letter_queue, self.dead_letter_queue,
        )  # fmt: skip
        return connection.channel()  # the refused declare closed the channel

    def _on_message(self, channel, method, properties, body: bytes) -> None:  # noqa: ANN001 - pika's types
        self.stats.delivered += 1
        identity = (properties.message_id if properties and properties.message_id else None) or (
            "sha256:" + hashlib.sha256(body).hexdigest()
        )
        delivery = Delivery(self._generation, method.delivery_tag, identity, bool(method.redelivered))
        if delivery.redelivered:
            self.stats.redelivered += 1
        with self._lock:
            earlier = self._active.get(identity)
            if earlier is not None and delivery.redelivered and earlier.generation != self._generation:
                self._active[identity] = delivery  # still being spoken: its ack will be this delivery's
                self.stats.adopted += 1
                log.info("message %s came again while it is being spoken; it will be acked once", identity[:20])
                return
            if earlier is not None:  # the same body twice at once (no message_id): two messages, two keys
                n = 2
                while f"{identity}#{n}" in self._active:
                    n += 1
                identity = f"{identity}#{n}"
                delivery = Delivery(delivery.generation, delivery.tag, identity, delivery.redelivered)
            if delivery.redelivered and identity in self._spoken:
                del self._spoken[identity]
                self.stats.acked_already_spoken += 1
                self.stats.acked += 1
                channel.basic_ack(delivery.tag)
                log.info("message %s was spoken while the broker was away; acked now", identity[:20])
                return
            self._active[identity] = delivery
        try:
            self.handler(delivery, body)
        except Exception as e:  # noqa: BLE001 - a handler bug is this message's failure, not the consumer's
            log.exception("handling a message failed")
            self.reject(delivery, f"handler error: {e}")

    def _carry_out(self, channel) -> None:  # noqa: ANN001
        while True:
            try:
                action, identity, reason = self._actions.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                delivery = self._active.pop(identity, None)
                current = delivery is not None and delivery.generation == self._generation
                if delivery is not None and not current and action == "ack":
                    self._remember_spoken(identity)
            if delivery is None or not current:
                continue  # its channel is gone: the broker has requeued it, the redelivery is handled
            try:
                if action == "ack":
                    channel.basic_ack(delivery.tag)
                    self.stats.acked += 1
                    with self._lock:  # the ack may still be lost with the connection: know its redelivery
                        self._remember_spoken(identity)
                else:
                    channel.basic_reject(delivery.tag, requeue=False)
                    self.stats.rejected += 1
                    where = {True: ", dead-lettered to " + repr(self.dead_letter_queue),
                             False: ", DROPPED: the queue has no dead-letter queue"}.get(self.dead_lettering, "")
                    log.warning("rejected a message (not requeued%s): %s", where, reason)  # fmt: skip
            except (pika.exceptions.AMQPError, OSError):
                if action == "ack":
                    with self._lock:
                        self._remember_spoken(identity)
                raise

    def _remember_spoken(self, identity: str) -> None:
        self._spoken[identity] = None
        while len(self._spoken) > REMEMBER_SPOKEN:
            self._spoken.popitem(last=False)

    def _requeue_all(self, channel) -> None:  # noqa: ANN001
        with self._lock:
            current = [d for d in self._active.values() if d.generation == self._generation]
            self._active.clear()
        for delivery in current:
            channel.basic_reject(delivery.tag, requeue=True)
            self.stats.requeued += 1
        if current:
            log.info("requeued %d message(s) in flight", len(current))
