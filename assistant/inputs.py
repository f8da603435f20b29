"""Files a user hands the assistant (audio, images, the output of `lipsync`): check them before any engine runs, so a
bad input gets its own true message (a folder, a FIFO, no permission, a WAV cut short, no samples, too long) instead
of being mistaken for an engine failure.

Needs soundfile only (for the audio header).
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

import soundfile as sf

from assistant.errors import AssistantError, AudioError, AudioFormatError, AudioTooLongError

MAX_LIPSYNC_AUDIO_S = 300.0  # 5 minutes: the limit of every talking-head engine (wav2lip_engine.MAX_AUDIO_S)


class InputError(AssistantError, ValueError):
    """A file given on the command line cannot be used as it is."""


def check_input_file(
    path: str | Path,
    what: str,
    error: type[AssistantError] = InputError,
    missing: type[Exception] | None = None,
    hint: str = "",
) -> Path:
    """`path` as a Path when it is a regular file this process can read; `error` saying what is wrong otherwise
    (a folder, a FIFO or a device is named as such, never "not found"). A path that does not exist raises `missing`
    (default: `error`) with `hint` after the message ("; set talking_head.avatar_image to ...")."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise (missing or error)(f"{what} not found: {path}{hint}") from None
    except NotADirectoryError:
        raise error(f"{what} not found: {path} (a part of the path is a file, not a folder)") from None
    except PermissionError as e:
        raise error(f"{what} {path} cannot be reached: {e.strerror} on a folder above it") from None
    if stat.S_ISDIR(mode):
        raise error(f"{what} {path} is a folder, not a file; name a file inside it")
    if not stat.S_ISREG(mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device or socket"
        raise error(f"{what} {path} is {kind}, not a regular file; save the data to a file first")
    if not os.access(path, os.R_OK):
        raise error(
            f"{what} {path} cannot be read: permission denied; give your user read access (chmod u+r)"
        )
    return path


def _wav_data_shortfall(path: Path) -> tuple[int, int] | None:
    """(bytes the WAV header promises in its data chunk, bytes there); None when complete or not a plain WAV."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                if chunk_size in (0, 0xFFFFFFFF):  # a streamed WAV (ffmpeg to a pipe): length unknown, not short
                    return None
                there = size - pos - 8
                return (chunk_size, there) if there < chunk_size else None
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


def check_audio_file(path: str | Path, max_duration_s: float | None = None, what: str = "Audio file") -> float:
    """The duration in seconds of a usable audio file; AudioError (subclasses) naming the problem otherwise."""
    path = check_input_file(path, what, AudioError)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        detail = str(e).split(": ", 1)[-1] if path.stat().st_size else "the file is empty (0 bytes)"
        raise AudioFormatError(
            f"Cannot decode {what.lower()} {path}: {detail}. Use WAV, MP3, FLAC or OGG "
            f"(convert with: ffmpeg -i '{path}' out.wav)"
        ) from e
    if info.frames <= 0:
        raise AudioFormatError(f"{what} {path} holds no samples (0 s of audio); record or export it again")
    short = _wav_data_shortfall(path)
    if short is not None:
        promised, there = short
        raise AudioFormatError(
            f"{what} {path} is cut short: its header promises {promised} bytes of audio but only {there} are "
            "there (an interrupted copy or recording?); copy or export it again"
        )
    if max_duration_s is not None and info.duration > max_duration_s:
        raise AudioTooLongError(
            f"{what} {path} lasts {info.duration:.1f} s, over the limit of {max_duration_s:.0f} s; "
            "split it or shorten it"
        )
    return float(info.duration)


def check_output_file(output: str | Path, inputs: dict[str, Path]) -> Path:
    """The output path, refused when it is a folder or one of the inputs (it would be overwritten)."""
    output = Path(output)
    if output.is_dir():
        raise InputError(f"Output {output} is a folder; name a file, for example {output / 'out.mp4'}")
    for what, source in inputs.items():
        same = output.exists() and source.exists() and os.path.samefile(output, source)
        if same or output.resolve() == source.resolve():
            raise InputError(f"Output {output} is the {what} input; it would be overwritten: name another file")
    return output


def folder_arg(text: str) -> str:
    """argparse `type=` for a folder option (--models-dir): refused at once when a file or FIFO stands there."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        import argparse

        raise argparse.ArgumentTypeError(f"{path} is a file, not a folder; name a folder (it is created if missing)")
    return text


def text_arg(value: str) -> str:
    """argparse `type=` for words a user types (`ask "..."`). Bytes that are not UTF-8 (a Latin-1 terminal) reach
    Python as lone surrogates (PEP 383) that no encoder takes, so the model's tokenizer would crash on them: read
    those bytes as the Windows-1252/Latin-1 text they almost always are ("caf\xe9" -> "caf\u00e9")."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(value)  # the bytes as typed (argv was decoded with the file system encoding)
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
            return raw.decode("latin-1")
    return value
