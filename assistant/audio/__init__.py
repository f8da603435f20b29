"""Audio in: file decoding (io), voice-activity segmentation (vad), live microphone capture, file sources."""

from assistant.audio.capture import (
    SILENCE_DBFS,
    AudioBackend,
    InputDevice,
    LiveListener,
    SoundDeviceBackend,
    StreamRequest,
    list_input_devices,
    resolve_input_device,
    rms_dbfs,
)
from assistant.audio.io import audio_duration_s, load_audio, resample, write_wav
from assistant.audio.sources import feed_samples, file_events, segment_file
from assistant.audio.vad import (
    SegmenterEvent,
    SpeechDiscarded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    VadConfigError,
    VadSegmenter,
    VadSettings,
)

__all__ = [
    "SILENCE_DBFS",
    "AudioBackend",
    "InputDevice",
    "LiveListener",
    "SegmenterEvent",
    "SoundDeviceBackend",
    "SpeechDiscarded",
    "SpeechPaused",
    "SpeechResumed",
    "SpeechStarted",
    "StreamRequest",
    "VadConfigError",
    "VadSegmenter",
    "VadSettings",
    "audio_duration_s",
    "feed_samples",
    "file_events",
    "list_input_devices",
    "load_audio",
    "resample",
    "resolve_input_device",
    "rms_dbfs",
    "segment_file",
    "write_wav",
]
