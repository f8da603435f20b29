"""The one error hierarchy of the core: a subclass per stage, each message says what was wrong and what to do."""

from __future__ import annotations


class AssistantError(Exception):
    """Base of every error the core raises on purpose."""


class ConfigError(AssistantError):
    """A config file is missing, unreadable or holds a bad value."""


class ModelError(AssistantError):
    """A model file is missing, corrupt or cannot be loaded."""


class DownloadError(ModelError):
    """A model download failed (network, HTTP status, checksum)."""


class AudioError(AssistantError):
    """Audio could not be read, decoded or captured."""


class AudioFormatError(AudioError, ValueError):
    """An audio file is not decodable or not a supported format."""


class AudioTooLongError(AudioError, ValueError):
    """An audio input is longer than the allowed maximum."""


class DeviceError(AudioError):
    """No usable audio input device, or the device went away."""


class ASRError(AssistantError):
    """Speech recognition failed."""


class DialogueError(AssistantError):
    """The language model failed to load or to answer."""


class TTSError(AssistantError):
    """Speech synthesis failed."""


class TalkingHeadError(AssistantError):
    """Talking-head video generation failed."""


class NoFaceError(TalkingHeadError, ValueError):
    """No face was found in the avatar image."""


class CheckpointError(TalkingHeadError, ModelError):
    """A talking-head checkpoint is missing or does not match the network."""


class VideoOutOfMemoryError(TalkingHeadError, RuntimeError):
    """Video generation ran out of (GPU) memory; memory was freed, the caller may fall back to audio only."""


class VideoEncodeError(TalkingHeadError, RuntimeError):
    """ffmpeg/ffprobe failed; the message carries its stderr."""


class Cancelled(AssistantError):
    """A turn was cancelled (new user speech, or the user stopped it)."""


class PresentationError(AssistantError):
    """A presentation script, its avatar or its output path cannot be used (`assistant present`)."""
