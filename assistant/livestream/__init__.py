"""`assistant stream`: the live avatar on a never-ending RTMP stream, speaking messages taken from RabbitMQ."""

from assistant.livestream.app import Livestreamer
from assistant.livestream.backoff import Backoff
from assistant.livestream.consumer import AmqpConsumer, ConsumerStats, Delivery
from assistant.livestream.messages import (
    AudioMessage,
    ChatMessage,
    Limits,
    LivestreamError,
    Message,
    MessageRejected,
    TextMessage,
    parse_message,
)
from assistant.livestream.options import StreamOptions, stream_options
from assistant.livestream.publisher import PublisherStats, RtmpPublisher
from assistant.livestream.speaker import Job, Speaker, SpeechKey
from assistant.redact import mask_text, mask_url

__all__ = [
    "AmqpConsumer",
    "AudioMessage",
    "Backoff",
    "ChatMessage",
    "ConsumerStats",
    "Delivery",
    "Job",
    "Limits",
    "Livestreamer",
    "LivestreamError",
    "Message",
    "MessageRejected",
    "PublisherStats",
    "RtmpPublisher",
    "Speaker",
    "SpeechKey",
    "StreamOptions",
    "TextMessage",
    "mask_text",
    "mask_url",
    "parse_message",
    "stream_options",
]
