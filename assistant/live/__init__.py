"""The live avatar: one continuous A/V stream for the whole session (idle motion, speech, cancel, sinks)."""

from assistant.live.motion import IdleMotion, Pose
from assistant.live.renderer import FrameRenderer, RenderRate, RigRenderer, measure_rate
from assistant.live.speech_queue import ClipEvent, SpeechQueue
from assistant.live.stream import (
    FrameSink,
    LiveStream,
    StreamDrained,
    StreamEvent,
    StreamSettings,
    StreamSpeechFinished,
    StreamSpeechStarted,
)

__all__ = [
    "ClipEvent",
    "FrameRenderer",
    "FrameSink",
    "IdleMotion",
    "LiveStream",
    "Pose",
    "RenderRate",
    "RigRenderer",
    "SpeechQueue",
    "StreamDrained",
    "StreamEvent",
    "StreamSettings",
    "StreamSpeechFinished",
    "StreamSpeechStarted",
    "measure_rate",
]
