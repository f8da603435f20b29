"""The typed settings model: shipped defaults in config/config.yaml, overlaid by the user's file.

The only module that reads config files and environment variables. A bad value fails at load time with the key path,
the value and what is allowed; unknown keys are errors too, so a typo is never silently ignored.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any, Literal

import platformdirs
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from assistant.errors import ConfigError
from assistant.redact import mask_text, mask_url

APP_NAME = "avatar-assistant"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "config.yaml"
MIRROR_ENV = "ASSISTANT_MODEL_MIRROR"
# Bounds on reading a config file: the shipped one is ~20 KB and ~700 YAML nodes.
CONFIG_MAX_BYTES = 1024 * 1024
CONFIG_MAX_NODES = 20_000  # after expanding aliases: a 1 KB "billion laughs" file expands to ~10**9
CHARS_PER_TOKEN = 4  # English text in a llama tokenizer, roughly: to bound the system prompt before a model loads

log = logging.getLogger(__name__)


def _allows_bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    return any(_allows_bool(arg) for arg in getattr(annotation, "__args__", ()))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, v: Any, info: ValidationInfo) -> Any:
        # pydantic reads `true` as 1 for an int field: `beam_size: true` would be a beam of 1, silently.
        if isinstance(v, bool) and info.field_name and not _allows_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError("must be a number or a name, not true/false")
        return v


class AudioSettings(_Section):
    input_device: str | int | None = Field(None, description="microphone name (substring) or index; null = default")
    sample_rate_hz: Literal[8000, 16000, 32000, 48000] = Field(16000, description="capture rate (webrtcvad rates)")
    frame_ms: Literal[10, 20, 30] = Field(30, description="VAD frame length")
    vad_aggressiveness: int = Field(2, ge=0, le=3, description="0 keeps most audio, 3 filters non-speech hardest")
    preroll_ms: int = Field(300, ge=0, le=2000, description="audio kept before speech onset")
    end_silence_ms: int = Field(500, ge=100, le=5000, description="silence that ends an utterance")
    max_utterance_s: float = Field(30.0, gt=1.0, le=300.0, description="longer utterances are cut and processed")
    min_speech_ms: int = Field(200, ge=0, le=5000, description="shorter bursts are ignored")
    early_start_ms: int = Field(
        120, ge=0, le=5000, description="silence after which a reply is prepared before the end is confirmed; 0 = off"
    )
    end_of_turn: Literal["smart_turn", "silence"] = Field(
        "silence",
        description="what decides that you finished: smart_turn (the Smart Turn v3.2 model, asked at the early-start "
        "pause; silence when its model is not installed) or silence (end_silence_ms of it)",
    )
    end_of_turn_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="smart_turn: the probability of a finished turn that ends it at the pause"
    )
    incomplete_silence_ms: int = Field(
        1000, ge=100, le=5000, description="smart_turn: silence that ends a turn the model called unfinished"
    )
    mode: Literal["hands_free", "push_to_talk"] = Field("hands_free", description="how a turn ends")
    barge_in: bool = Field(
        True,
        description="hands-free: keep listening while the avatar speaks (echo cancelled) so it can be interrupted by "
        "voice; off = half-duplex (the microphone pauses while the avatar speaks)",
    )
    barge_in_min_speech_ms: int = Field(
        90, ge=30, le=2000, description="voiced audio that interrupts the avatar (higher: fewer false interruptions)"
    )
    echo_delay_ms: int = Field(
        250, ge=0, le=2000, description="VLC player only: its playback delay the echo canceller aligns to (bench live)"
    )


class ASRSettings(_Section):
    model: str = Field("auto", description="auto (from gpu_profile), a registry name or a model folder")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where Whisper runs")
    compute_type: Literal["auto", "int8", "int8_float16", "float16", "float32"] = Field(
        "auto", description="auto: int8 on CPU, float16 on CUDA"
    )
    language: str = Field("en", description="spoken language code")
    beam_size: int = Field(1, ge=1, le=10, description="beam search width")
    no_speech_threshold: float = Field(0.6, ge=0.0, le=1.0, description="drop utterances likelier silence than this")
    window_pad_s: float | None = Field(
        8.0, ge=0.0, le=30.0,
        description="Whisper's encoder sees the utterance plus this much padding instead of its full 30 s window "
        "(much faster on a CPU); null = the full window",
    )  # fmt: skip


class DialogueSettings(_Section):
    model: str = Field("auto", description="auto (from gpu_profile), a registry name or a .gguf path")
    system_prompt: str = Field(
        "You are a helpful voice assistant. Answer briefly in plain English.",
        description="asks for short answers; must leave room in context_tokens for the history and the reply",
    )
    context_tokens: int = Field(2048, ge=256, le=131072, description="llama.cpp context size")
    max_tokens: int = Field(160, ge=8, le=4096, description="longest reply")
    temperature: float = Field(0.3, ge=0.0, le=2.0, description="sampling temperature")
    history_budget_tokens: int = Field(1024, ge=0, description="history kept, oldest turns trimmed first")
    threads: int | None = Field(None, ge=1, description="CPU threads; null = all cores")
    gpu_layers: Literal["auto"] | int = Field(
        "auto", description="layers offloaded to the GPU: auto = all when llama.cpp has GPU support, else 0; -1 = all"
    )
    forced_replies: str | None = Field(
        None, description="benchmarks only: a YAML file of {question: reply} the model is made to say; null = off"
    )

    @field_validator("gpu_layers", mode="before")
    @classmethod
    def _layers(cls, v: Any) -> Any:
        # One message for the key, not one per member of the union.
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= -1):
            return v
        raise ValueError("must be auto or a number of layers (0 = CPU only, -1 = all)")

    @model_validator(mode="after")
    def _fits_the_context(self) -> DialogueSettings:
        # The same sum DialogueManager refuses at load time: `config check` says it first.
        if self.history_budget_tokens + self.max_tokens > self.context_tokens:
            raise ValueError(
                f"history_budget_tokens ({self.history_budget_tokens}) + max_tokens ({self.max_tokens}) exceed "
                f"context_tokens ({self.context_tokens}); lower history_budget_tokens or max_tokens, or raise "
                "context_tokens"
            )
        room = CHARS_PER_TOKEN * (self.context_tokens - self.max_tokens)
        if len(self.system_prompt) > room:
            raise ValueError(
                f"system_prompt is {len(self.system_prompt):,} characters: more than the about {room:,} that fit in "
                f"context_tokens ({self.context_tokens}) beside a reply of max_tokens ({self.max_tokens}); shorten "
                "it or raise context_tokens"
            )
        return self


class TTSSettings(_Section):
    engine: Literal["auto", "coqui", "piper", "espeak"] = Field("auto", description="first engine tried")
    piper_voice: str = Field("piper-joe", description="a registry name or a .onnx path")
    coqui_model: str = Field("auto", description="auto (from gpu_profile), a registry name or a folder")
    speaker: str | None = Field(None, description="speaker of a multi-speaker Coqui model")
    language: str | None = Field("en", description="language of a multilingual Coqui model")
    espeak_voice: str = Field("en-us", description="espeak-ng voice")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where Coqui runs")


class Resolution(_Section):
    width: int = Field(1280, ge=64, le=7680, description="output width in pixels (even)")
    height: int = Field(720, ge=64, le=4320, description="output height in pixels (even)")

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError("must be even (H.264 yuv420p needs even sizes)")
        return v


class QualityProfile(_Section):
    resolution: Resolution = Field(default_factory=Resolution, description="output frame size")
    fps: int = Field(25, ge=1, le=60, description="frames per second")
    model: Literal["wav2lip", "wav2lip_gan"] = Field("wav2lip", description="checkpoint used in this mode")
    face_det_batch_size: int = Field(4, ge=1, le=64, description="face detection batch")
    wav2lip_batch_size: int = Field(128, ge=1, le=1024, description="frames per network batch")
    enhance_face: bool = Field(False, description="GFPGAN face enhancement when installed")


class LightProfile(_Section):
    resolution: Resolution = Field(default_factory=Resolution, description="output frame size")
    fps: int = Field(25, ge=1, le=60, description="frames per second")


class OutputSettings(_Section):
    format: Literal["mp4"] = Field("mp4", description="container")
    codec: Literal["h264"] = Field("h264", description="video codec")
    audio_codec: Literal["aac"] = Field("aac", description="audio codec")
    audio_bitrate: str = Field("192k", pattern=r"^\d+k$", description="AAC bitrate, e.g. 192k")


class TalkingHeadModels(_Section):
    wav2lip: str = Field("models/wav2lip/wav2lip.pth", description="Wav2Lip checkpoint")
    wav2lip_gan: str = Field("models/wav2lip/wav2lip_gan.pth", description="Wav2Lip-GAN checkpoint")
    face_detection: Literal["haar"] = Field("haar", description="face detector")
    gfpgan: str = Field("models/gfpgan/GFPGANv1.4.pth", description="GFPGAN weights (optional)")


class TalkingHeadSettings(_Section):
    enabled: bool = Field(True, description="make lip-synced video; false = audio only")
    engine: Literal["auto", "wav2lip", "wav2lip_gan", "light", "static"] = Field("auto", description="first engine")
    avatar_image: str = Field("assets/avatars/astronaut.png", description="photo of the face that speaks")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$", description="auto, cpu, cuda or cuda:N")
    quality_mode: Literal["standard", "high"] | None = Field(None, description="null = from gpu_profile")
    standard: QualityProfile = Field(default_factory=QualityProfile, description="720p Wav2Lip")
    high: QualityProfile = Field(
        default_factory=lambda: QualityProfile(
            resolution=Resolution(width=1920, height=1080), fps=30, model="wav2lip_gan", face_det_batch_size=8
        ),
        description="1080p Wav2Lip-GAN",
    )
    light: LightProfile = Field(default_factory=LightProfile, description="the light CPU engine")
    output: OutputSettings = Field(default_factory=OutputSettings, description="encoding")
    blend: Literal["feather", "box"] = Field("feather", description="how the mouth is put back into the photo")
    cache_preprocessed_face: bool = Field(True, description="keep the detected face on disk")
    use_half_precision: bool = Field(
        True, description="fp16 on CUDA; bf16 on a CPU that has it natively (false: the exact fp32 network)"
    )
    models: TalkingHeadModels = Field(default_factory=TalkingHeadModels, description="weight files")


class LiveSettings(_Section):
    resolution: Resolution | None = Field(None, description="live stream frame size; null = the talking head's")
    fps: Literal[24, 25, 30, 50, 60] | None = Field(None, description="live stream frame rate; null = the talking head's")
    audio_rate_hz: Literal[48000] = Field(48000, description="live stream audio rate")
    player: Literal["direct", "vlc"] = Field(
        "direct", description="direct: frames painted in the window on the sound card's clock; vlc: the embedded VLC"
    )
    audio_buffer_ms: int = Field(
        60, ge=20, le=500, description="the direct player's sound held ahead of the sound card (rides over hiccups)"
    )
    caching_ms: int = Field(100, ge=20, le=2000, description="the VLC player's input buffer")
    fade_ms: int = Field(30, ge=5, le=50, description="a cancelled reply fades out over this long")
    record: str | None = Field(None, description="also record the whole session stream to this MP4; null = off")


class LivestreamSettings(_Section):
    rtmp_url: str | None = Field(
        None, pattern=r"^rtmps?://", description="where `assistant stream` publishes (also env ASSISTANT_RTMP_URL)"
    )
    amqp_url: str | None = Field(
        None, pattern=r"^amqps?://", description="the RabbitMQ broker; credentials may come from env ASSISTANT_AMQP_URL"
    )
    queue: str = Field("avatar.speak", min_length=1, max_length=255, description="the queue the messages come from")
    dead_letter_queue: str | None = Field(
        None, max_length=255, description="declare the queue with this dead-letter queue for rejected messages"
    )
    prefetch: int = Field(1, ge=1, le=16, description="messages held unacknowledged at once (1: one at a time)")
    video_bitrate: str = Field("2500k", pattern=r"^\d+[kM]$", description="H.264 bitrate of the RTMP stream")
    keyframe_s: float = Field(2.0, ge=0.2, le=10.0, description="seconds between keyframes (RTMP servers want <= 4)")
    reconnect_initial_s: float = Field(0.5, gt=0.0, le=60.0, description="first wait before reconnecting")
    reconnect_max_s: float = Field(10.0, gt=0.0, le=600.0, description="longest wait between reconnects")
    max_text_chars: int = Field(2000, ge=1, le=100_000, description="longer text messages are rejected")
    max_audio_s: float = Field(120.0, gt=0.0, le=3600.0, description="longer audio messages are rejected")


class ServeSettings(_Section):
    host: str = Field("127.0.0.1", min_length=1, description="`assistant serve` listens here; any other address needs the token")
    port: int = Field(8765, ge=0, le=65535, description="its HTTP port (the page, signalling and the API)")
    max_sessions: int = Field(4, ge=1, le=64, description="browsers talking at once; one more is told the server is full")
    max_sessions_per_address: int = Field(2, ge=1, le=64, description="browsers at once from one IP address")
    idle_timeout_s: float = Field(300.0, ge=5.0, le=86_400.0, description="a session silent this long is closed")
    connect_timeout_s: float = Field(20.0, ge=2.0, le=300.0, description="a browser that has not connected by then is dropped")
    resolution: Resolution = Field(
        default_factory=lambda: Resolution(width=640, height=360), description="the avatar video sent to browsers"
    )
    fps: Literal[24, 25, 30] = Field(25, description="its frame rate")
    max_message_chars: int = Field(1000, ge=1, le=100_000, description="a longer typed question is refused")
    max_request_bytes: int = Field(65_536, ge=4096, le=10_000_000, description="a larger HTTP request body is refused (413)")


class PresentationSettings(_Section):
    layout: Literal["corner", "side", "full"] = Field("corner", description="where the avatar goes on the slides")
    quality_mode: Literal["standard", "high"] | None = Field(
        None, description="standard 720p or high 1080p (sizes from talking_head); null = talking_head's"
    )
    sentence_pause_s: float = Field(0.35, ge=0.0, le=5.0, description="silence between narration sentences")
    silent_slide_s: float = Field(4.0, gt=0.0, le=600.0, description="how long a slide with no narration shows")
    title_card_s: float = Field(3.0, gt=0.0, le=600.0, description="how long a title card without narration shows")
    max_segment_s: float = Field(
        300.0, ge=1.0, le=300.0, description="longest narration one lip-sync call gets; longer ones are split"
    )
    crf: int = Field(20, ge=0, le=51, description="x264 quality of the slides (lower: sharper text, larger file)")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = Field(
        "veryfast", description="x264 speed preset of the slides"
    )
    jobs_dir: Path | None = Field(None, description="job folders; null = <data_dir>/presentations")


class UISettings(_Section):
    window_width: int = Field(1100, ge=400, description="initial window width")
    window_height: int = Field(720, ge=300, description="initial window height")
    show_timings: bool = Field(True, description="show per-stage times in the status line")
    push_to_talk_key: str = Field("space", description="key held for push-to-talk")
    model_offer_declined: list[str] = Field(
        default_factory=list,
        description="models of a recommended set the user said 'Not now' to; a set with another model is offered",
    )


class ModelsSettings(_Section):
    mirror_url: str | None = Field(None, pattern=r"^https?://", description="base URL replacing huggingface.co")


class PathsSettings(_Section):
    models_dir: Path = Field(Path("models"), description="downloaded weights")
    data_dir: Path | None = Field(None, description="conversation log, replies, logs")
    keep_media_turns: int = Field(
        50, ge=0, description="reply audio/video of the newest N turns is kept, older is deleted (0 = keep all)"
    )
    keep_media_mb: float = Field(
        500.0, ge=0.0, description="and at most this many MB of it (0 = no size limit); the log is always kept"
    )
    cache_dir: Path | None = Field(None, description="face cache")


class Settings(_Section):
    gpu_profile: Literal["auto", "low", "medium", "high"] = Field("auto", description="hardware profile")
    audio: AudioSettings = Field(default_factory=AudioSettings, description="microphone and VAD")
    asr: ASRSettings = Field(default_factory=ASRSettings, description="speech recognition")
    dialogue: DialogueSettings = Field(default_factory=DialogueSettings, description="the language model")
    tts: TTSSettings = Field(default_factory=TTSSettings, description="speech synthesis")
    talking_head: TalkingHeadSettings = Field(default_factory=TalkingHeadSettings, description="lip-sync video")
    live: LiveSettings = Field(default_factory=LiveSettings, description="the live avatar stream")
    livestream: LivestreamSettings = Field(
        default_factory=LivestreamSettings, description="`assistant stream`: messages from RabbitMQ to RTMP"
    )
    serve: ServeSettings = Field(default_factory=ServeSettings, description="`assistant serve`: the avatar in browsers")
    presentation: PresentationSettings = Field(
        default_factory=PresentationSettings, description="`assistant present`: script to presentation video"
    )
    ui: UISettings = Field(default_factory=UISettings, description="the desktop window")
    models: ModelsSettings = Field(default_factory=ModelsSettings, description="model downloads")
    paths: PathsSettings = Field(default_factory=PathsSettings, description="where files go")

    # Filled by load_settings: which keys the user overlay set (dotted paths), for "which value came from where".
    user_keys: frozenset[str] = Field(default_factory=frozenset, exclude=True, description="keys set by the user")
    # Filled by load_settings: what a person must be told about how the settings were read (the user overlay was
    # unreadable and the defaults are in use). The CLI logs them; the desktop app shows them in a dialog.
    load_notices: tuple[str, ...] = Field(
        default=(), exclude=True, description="problems met while reading the settings, for the user"
    )

    def project_path(self, value: str | Path) -> Path:
        """A path from the config: absolute as given, relative ones against the project folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else PROJECT_ROOT / p

    @property
    def models_dir(self) -> Path:
        return self.project_path(self.paths.models_dir)

    @property
    def data_dir(self) -> Path:
        if self.paths.data_dir is not None:
            return self.project_path(self.paths.data_dir)
        return Path(platformdirs.user_data_dir(APP_NAME))

    @property
    def cache_dir(self) -> Path:
        if self.paths.cache_dir is not None:
            return self.project_path(self.paths.cache_dir)
        return Path(platformdirs.user_cache_dir(APP_NAME))


def user_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.yaml"


class ConfigUnreadableError(ConfigError):
    """A config file that cannot be read as a config at all (not a file, too large, not text): the desktop app
    starts on the defaults and says so; `config check` fails."""


class ConfigEncodingError(ConfigUnreadableError):
    """A config file is not UTF-8 text."""


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _read_bounded(path: Path) -> bytes:
    """The bytes of a regular file of at most CONFIG_MAX_BYTES. A FIFO, a device (/dev/zero) or a socket is
    refused before a byte is read: O_NONBLOCK keeps opening a FIFO with no writer from waiting forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as e:
        raise ConfigError(f"Config file not found: {path}") from e
    except IsADirectoryError as e:
        raise ConfigUnreadableError(f"Config file {path} is a folder; name a YAML file") from e
    except OSError as e:
        raise ConfigError(f"Cannot read config file {path}: {e.strerror or e}") from e
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigUnreadableError(f"Config file {path} is a folder; name a YAML file")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigUnreadableError(
                f"Config file {path} is not a regular file (a FIFO, device or socket); name a YAML file"
            )
        if info.st_size > CONFIG_MAX_BYTES:
            raise ConfigUnreadableError(
                f"Config file {path} is {info.st_size:,} bytes; a config file is at most {CONFIG_MAX_BYTES:,} "
                "(the shipped one is about 20 KB): name the right file"
            )
        with os.fdopen(fd, "rb", closefd=True) as f:
            fd = -1
            return f.read(CONFIG_MAX_BYTES + 1)[:CONFIG_MAX_BYTES]
    finally:
        if fd >= 0:
            os.close(fd)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and documents whose aliases expand past CONFIG_MAX_NODES."""


def _check_nodes(root: yaml.Node, path: Path) -> None:
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:  # the node count with every alias expanded; memoised, so linear
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ConfigError(f"{path}: line {node.start_mark.line + 1}: an alias refers to itself; remove it")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if k.value in seen:
                        raise ConfigError(
                            f"{path}: line {k.start_mark.line + 1}: the key {k.value!r} appears twice in one "
                            f"section (first at line {seen[k.value]}); keep one"
                        )
                    seen[k.value] = k.start_mark.line + 1
                total += size(k) + size(v)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(v) for v in node.value)
        open_nodes.discard(key)
        sizes[key] = total
        if total > CONFIG_MAX_NODES:
            raise ConfigError(
                f"{path}: the YAML expands to more than {CONFIG_MAX_NODES:,} values (aliases that repeat "
                "aliases?); a config needs far fewer: remove the anchors (&) and aliases (*)"
            )
        return total

    size(root)


def _parse_yaml(text: str, path: Path) -> Any:
    loader = _BoundedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _check_nodes(root, path)
        return loader.construct_document(root)
    except RecursionError as e:
        raise ConfigError(f"{path}: the YAML is nested too deep to be a config; check the file") from e
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> dict[str, Any]:
    raw = _read_bounded(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigEncodingError(
            f"{path} is not UTF-8 text: byte 0x{raw[e.start]:02x} at line {line}, column {column} (byte offset "
            f"{e.start}); save it as UTF-8 (iconv -f latin1 -t utf-8) or delete it to use the defaults"
        ) from e
    try:
        data = _parse_yaml(text, path)
    except yaml.YAMLError as e:  # its message quotes the line: a password on it is masked
        raise ConfigError(mask_text(f"{path} is not valid YAML: {e}")) from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid onto `base`, section by section (the user overlay onto the defaults); neither is changed."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _leaf_keys(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            keys |= _leaf_keys(value, path + ".")
        else:
            keys.add(path)
    return keys


_UNION_TAGS = {"str", "int", "float", "bool", "none", "path", "is-instance[Path]"}


def _loc(err: dict[str, Any]) -> str:
    parts = [str(p) for p in err["loc"]]
    while len(parts) > 1 and (parts[-1] in _UNION_TAGS or parts[-1].startswith(("function-", "literal["))):
        parts.pop()  # a union reports one error per member type: name the key, not the member
    return ".".join(parts)


def _shown(loc: str, value: Any) -> str:
    """A bad value as the message shows it: a URL's password never (a typo'd URL is still a password)."""
    if isinstance(value, str) and loc.endswith("_url"):
        return repr(mask_url(value))
    shown = repr(value)
    if len(shown) > 200:  # a 200,000-character prompt, an expanded list: the start and the size say enough
        size = f"{len(value):,} characters" if isinstance(value, str) else f"{len(shown):,} characters as text"
        shown = f"{shown[:60]}... ({size})"
    return mask_text(shown)


def _describe(err: dict[str, Any]) -> str:
    loc = _loc(err)
    kind = err["type"]
    value = _shown(loc, err.get("input"))
    if kind == "extra_forbidden":
        return f"{loc}: unknown key (a typo?); remove it or check the spelling against config/config.yaml"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "").replace(" or ", ", ")
        return f"{loc}: {value} is not one of {expected}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "value_error" and isinstance(err.get("input"), dict):  # a section's check: the message says it
        return f"{loc}: {msg}"
    return f"{loc}: {value}: {msg}"


def validate_dict(data: dict[str, Any], source: str = "config") -> Settings:
    """Build Settings from a plain dict; a ConfigError lists every bad key, value and what is allowed."""
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        by_key: dict[str, list[dict[str, Any]]] = {}
        for err in e.errors():
            by_key.setdefault(_loc(err), []).append(err)
        lines = []
        for key, errs in by_key.items():
            if len(errs) == 1:
                lines.append(_describe(errs[0]))
            else:  # a union (e.g. str | int | None) reports once per member type: say the key once
                reasons = "; ".join(err["msg"] for err in errs)
                lines.append(f"{key}: {_shown(key, errs[0].get('input'))} is not allowed ({reasons})")
        raise ConfigError(f"{source} has {len(lines)} bad value(s):\n  " + "\n  ".join(lines)) from e


def load_settings(
    path: str | Path | None = None,
    user_path: str | Path | None = None,
    env: dict[str, str] | None = None,
    strict: bool = False,
) -> Settings:
    """Load the shipped defaults, overlay the user file (if it exists), apply environment overrides.

    `path` replaces the shipped defaults file (used by `assistant config check FILE` and `--config`). An overlay
    that cannot be read (not UTF-8, a folder, a FIFO, too large) becomes a load notice and the defaults are used,
    unless `strict` (`config check`), which raises.
    """
    env = dict(os.environ) if env is None else env
    base_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    data = _read_yaml(base_path)
    user_file = Path(user_path) if user_path is not None else user_config_path()
    user: dict[str, Any] = {}
    notices: list[str] = []
    if path is None and (user_file.exists() or user_file.is_symlink()):
        try:
            user = _read_yaml(user_file)
        except ConfigUnreadableError as e:
            if strict:
                raise  # unreadable as text: start on the defaults rather than not at all
            notices.append(
                f"Your settings were not read: {e}. The assistant started on the default settings; changes made in "
                "Settings cannot be saved until that file is fixed or removed."
            )
            log.warning("%s; starting on the defaults", e)
            user = {}
        data = merge(data, user)
    source = f"{base_path}" + (f" + {user_file}" if user else "")
    settings = validate_dict(data, source)
    if env.get(MIRROR_ENV):
        settings.models.mirror_url = _mirror_from_env(env[MIRROR_ENV])
    cores = usable_cores()
    if settings.dialogue.threads is not None and settings.dialogue.threads > cores:
        # More threads than cores make llama.cpp crawl (512 threads: 72 s for "Hi" on 2 cores); a config carried
        # from a bigger machine still loads.
        notices.append(
            f"dialogue.threads: {settings.dialogue.threads} is more than the {cores} core(s) this machine lets the "
            f"assistant use; using {cores} (set it to {cores} or less, or null for all cores)"
        )
        log.warning("%s", notices[-1])
        settings.dialogue.threads = cores
    return settings.model_copy(update={"user_keys": frozenset(_leaf_keys(user)), "load_notices": tuple(notices)})


def save_user_settings(changes: dict[str, Any], user_path: str | Path | None = None) -> Path:
    """Merge `changes` (nested dict) into the user overlay file, after validating the result. Never touches the
    shipped defaults. Raises ConfigError (and writes nothing) when a value is invalid."""
    user_file = Path(user_path) if user_path is not None else user_config_path()
    current = _read_yaml(user_file) if user_file.exists() or user_file.is_symlink() else {}
    merged_user = merge(current, changes)
    validate_dict(merge(_read_yaml(DEFAULT_CONFIG_PATH), merged_user), f"settings for {user_file}")
    user_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = user_file.with_suffix(".yaml.tmp")
    tmp.write_text(_edited_yaml(user_file, changes), encoding="utf-8")
    os.replace(tmp, user_file)
    return user_file


def _edited_yaml(user_file: Path, changes: dict[str, Any]) -> str:
    """The user's file with only `changes` written into it: ruamel.yaml's round trip keeps the comments, the order
    and the quoting of everything else (PyYAML's dump dropped every comment). The file was read and bounded by
    `_read_yaml` already."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    round_trip = YAML()
    round_trip.preserve_quotes = True
    round_trip.width = 4096  # never re-wrap a long value of the user's
    exists = user_file.exists()
    doc = round_trip.load(_read_bounded(user_file).decode("utf-8")) if exists else None
    if not isinstance(doc, dict):
        doc = CommentedMap()

    def write_into(node: dict[str, Any], over: dict[str, Any]) -> None:
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(node.get(key), dict):
                write_into(node[key], value)
            else:
                node[key] = copy.deepcopy(value)

    write_into(doc, changes)
    out = io.StringIO()
    round_trip.dump(doc, out)
    return out.getvalue()


def _mirror_from_env(value: str) -> str:
    """The model mirror from the environment: an http(s) base URL, or an error that names the variable."""
    if not re.match(r"^https?://\S+$", value.strip()):
        raise ConfigError(
            f"{MIRROR_ENV}={mask_url(value)!r} is not an http:// or https:// address; set it to your mirror's base "
            f"URL (e.g. https://hf-mirror.example.org) or unset it to download from huggingface.co"
        )
    return value.strip()


SECRET_KEYS = (("livestream", "amqp_url"), ("livestream", "rtmp_url"), ("models", "mirror_url"))


def settings_to_dict(settings: Settings, mask_secrets: bool = False) -> dict[str, Any]:
    """The settings as plain data; `mask_secrets` for anything shown (`config show`): URL passwords masked."""
    data = settings.model_dump(mode="json", exclude={"user_keys", "load_notices"})
    if mask_secrets:
        for section, key in SECRET_KEYS:
            if data[section].get(key):
                data[section][key] = mask_url(data[section][key])
    return data
