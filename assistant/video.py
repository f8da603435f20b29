"""The one place ffmpeg and ffprobe are called: encode frames (+ audio) to MP4, probe a file, decode it back.

- `FrameWriter` pipes raw frames straight into ffmpeg's stdin and muxes the audio in the same pass:
  H.264 yuv420p, AAC, `+faststart` (the moov atom up front, so a player can start at once). Frames are converted
  BGR -> YUV 4:2:0 (BT.601, limited range, what ffmpeg's own conversion gives) with OpenCV before the pipe: half the
  bytes, and about twice the frame rate of letting ffmpeg's swscale do it on a 2-core machine. The video is made
  exactly as long as the audio, within one frame: missing frames repeat the last one, extra frames are dropped.
  The file appears under its final name only once complete (written to a `.part` name, then renamed); a full
  or read-only disk is a StorageError naming the file, even where ffmpeg itself exits 0 (it does when only the
  trailer could not be written).
- `probe(path)` reads a media file's streams with ffprobe's JSON output into a `VideoInfo`.
- `read_frames(path)` decodes a video back to BGR frames; `extract_audio(path, wav)` pulls its audio out as WAV.

Needs the ffmpeg and ffprobe binaries on PATH (Debian: `apt-get install ffmpeg`) and OpenCV. Every call uses an argument
list, never a shell string; a failure raises VideoEncodeError carrying ffmpeg's stderr.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import cv2
import numpy as np

from assistant.audio.io import audio_duration_s
from assistant.errors import AudioFormatError, VideoEncodeError
from assistant.inputs import check_input_file
from assistant.storage import OUTPUT_HINT, StorageError, atomic_path, part_path

log = logging.getLogger(__name__)

_INSTALL_HINT = "install it (Debian/Ubuntu: sudo apt-get install ffmpeg; macOS: brew install ffmpeg)"
_MAX_STDERR_CHARS = 4000  # the tail of ffmpeg's stderr kept in an error message
# ffmpeg 5 exits 0 when only the trailer or the close of the output failed (a disk that fills at the very end),
# leaving a file no player reads: these lines on its stderr say so.
_WRITE_FAILED = ("Error writing trailer", "Error closing file")
# Reasons on ffmpeg's stderr that can only be about writing the output (a permission error may be an input's).
_STORAGE_REASONS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


@dataclass(frozen=True)
class VideoInfo:
    """What ffprobe says about a media file. Audio fields are None/0 when it has no audio stream."""

    path: Path
    duration_s: float
    width: int
    height: int
    fps: float
    video_codec: str | None
    audio_codec: str | None
    audio_sample_rate_hz: int
    has_audio: bool
    has_video: bool
    frames: int
    video_duration_s: float = 0.0
    audio_duration_s: float = 0.0
    video_start_s: float = 0.0
    audio_start_s: float = 0.0
    pixel_format: str | None = None


def _binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise VideoEncodeError(f"{name} was not found on PATH; {_INSTALL_HINT}")
    return found


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MAX_STDERR_CHARS else "..." + text[-_MAX_STDERR_CHARS:]


def _read_tail(stderr: IO[bytes]) -> str:
    """The tail of what an ffmpeg process wrote to its stderr file ("" once the file is closed)."""
    try:
        stderr.seek(0)
        return _tail(stderr.read().decode("utf-8", "replace"))
    except (ValueError, OSError):
        return ""


def _output_failure(output: Path | None, rc: int, stderr: str, what: str) -> Exception | None:
    """Why an ffmpeg run that wrote `output` failed, or None when it did not: StorageError for a full or read-only
    disk (naming the file and what to do), VideoEncodeError with ffmpeg's stderr otherwise."""
    if rc == 0 and (output is None or not any(m in stderr for m in _WRITE_FAILED)):
        return None
    if output is not None:
        for code in _STORAGE_REASONS:
            if os.strerror(code) in stderr:
                return StorageError(output, OSError(code, os.strerror(code)), OUTPUT_HINT)
    return VideoEncodeError(f"{what} failed (exit {rc}): {_tail(stderr)}")


def _run(args: list[str], what: str, output: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg/ffprobe to completion; a non-zero exit becomes VideoEncodeError with its stderr, a full or
    read-only disk under `output` (the file the run writes) StorageError, even when ffmpeg exits 0."""
    proc = subprocess.run(args, check=False, capture_output=True, stdin=subprocess.DEVNULL)  # the rc: below
    failure = _output_failure(output, proc.returncode, proc.stderr.decode("utf-8", "replace"), what)
    if failure is not None:
        raise failure
    return proc


def _media_duration_s(path: Path) -> float:
    try:
        return audio_duration_s(path)  # exact and instant for WAV/FLAC/OGG/MP3 via libsndfile
    except AudioFormatError:
        return probe(path).duration_s  # anything else ffmpeg can read (an .m4a, a video's audio)


class FrameWriter:
    """Encode BGR frames to an H.264 MP4, muxing `audio_path` (if given) in the same ffmpeg pass.

    Use as a context manager: an exception inside the block kills ffmpeg and leaves no output file.

        with FrameWriter(out, 1280, 720, 25, audio_path=wav) as w:
            for frame in frames:          # (720, 1280, 3) uint8 BGR
                w.write(frame)
        # out now exists, as long as the audio

    Odd width/height lose their last column/row (4:2:0 needs even sizes); `width`/`height` here are the size
    of the frames you write, `encoded_width`/`encoded_height` the size in the file.
    """

    def __init__(
        self,
        output_path: str | Path,
        width: int,
        height: int,
        fps: float,
        audio_path: str | Path | None = None,
        audio_bitrate: str = "192k",
        crf: int = 23,
        preset: str = "veryfast",
        threads: int = 0,  # 0 = ffmpeg decides
    ) -> None:
        if width < 2 or height < 2:
            raise ValueError(f"Frame size {width}x{height} is too small; width and height must be >= 2")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.output_path = Path(output_path)
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.audio_path = Path(audio_path) if audio_path is not None else None
        self.frames_written = 0
        self.frames_dropped = 0
        self.frames_padded = 0
        self._last: np.ndarray | None = None
        self._closed = False

        self.target_frames: int | None = None
        if self.audio_path is not None:
            if not self.audio_path.is_file():
                raise FileNotFoundError(f"Audio file not found: {self.audio_path}")
            self.audio_duration_s = _media_duration_s(self.audio_path)
            # Enough frames to cover the audio, never more than one frame past it.
            self.target_frames = max(1, math.ceil(self.audio_duration_s * self.fps - 1e-6))

        self.encoded_width, self.encoded_height = self.width - self.width % 2, self.height - self.height % 2
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        self._part_path = part_path(self.output_path)
        rate = Fraction(self.fps).limit_denominator(1001)
        args = [
            _binary("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{self.encoded_width}x{self.encoded_height}",
            "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0",
        ]  # fmt: skip
        if self.audio_path is not None:
            args += ["-i", str(self.audio_path)]
        args += ["-map", "0:v:0"]
        if self.audio_path is not None:
            args += ["-map", "1:a:0"]
        args += [
            "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-threads", str(threads),
            # Say what the pixels are (the conversion above), so players do not guess BT.709 for HD sizes.
            "-color_range", "tv", "-colorspace", "smpte170m", "-color_primaries", "smpte170m",
            "-color_trc", "smpte170m",
        ]  # fmt: skip
        if self.audio_path is not None:
            args += ["-c:a", "aac", "-b:a", audio_bitrate]
        args += ["-movflags", "+faststart", "-f", "mp4", str(self._part_path)]
        self._args = args
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the writer; a file: ffmpeg never blocks on it
        log.debug("ffmpeg: %s", " ".join(args))
        self._proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr
        )

    # ---- context manager ----
    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # ---- writing ----
    def write(self, frame_bgr: np.ndarray) -> None:
        """Send one (height, width, 3) uint8 BGR frame to the encoder."""
        if self._closed:
            raise VideoEncodeError(f"FrameWriter for {self.output_path} is already closed")
        if frame_bgr.shape != (self.height, self.width, 3) or frame_bgr.dtype != np.uint8:
            raise ValueError(
                f"Frame must be ({self.height}, {self.width}, 3) uint8 BGR, got {frame_bgr.shape} {frame_bgr.dtype}"
            )
        self._last = frame_bgr
        if self.target_frames is not None and self.frames_written >= self.target_frames:
            self.frames_dropped += 1  # past the end of the audio
            return
        self._send(frame_bgr)
        self.frames_written += 1

    def _send(self, frame_bgr: np.ndarray) -> None:
        assert self._proc.stdin is not None
        if frame_bgr.shape[:2] != (self.encoded_height, self.encoded_width):
            frame_bgr = frame_bgr[: self.encoded_height, : self.encoded_width]
        yuv = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2YUV_I420)  # (H * 3/2, W) uint8: Y plane, then U, then V
        try:
            self._proc.stdin.write(yuv.data)
        except (BrokenPipeError, OSError) as e:
            rc = self._proc.wait()
            what = f"ffmpeg encoding {self.output_path}"
            raise (_output_failure(self.output_path, rc or 1, self._read_stderr(), what) or e) from e

    def close(self) -> Path:
        """Pad to the audio's length, finish the file and return its path."""
        if self._closed:
            return self.output_path
        if self._last is None:
            self.abort()
            raise VideoEncodeError(f"No frames were written for {self.output_path}; nothing to encode")
        if self.target_frames is not None and self.frames_written < self.target_frames:
            missing = self.target_frames - self.frames_written
            if missing > self.fps:  # more than a second short: the caller probably meant to send more frames
                log.warning(
                    "%s: %d frames short of the audio; repeating the last frame", self.output_path, missing
                )
            for _ in range(missing):
                self._send(self._last)
            self.frames_padded = missing
            self.frames_written += missing
        self._closed = True
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # the exit status below tells what happened
        rc = self._proc.wait()
        stderr = self._read_stderr()
        self._stderr.close()
        failure = _output_failure(self.output_path, rc, stderr, f"ffmpeg encoding {self.output_path}")
        if failure is not None:
            self._part_path.unlink(missing_ok=True)
            raise failure
        os.replace(self._part_path, self.output_path)
        return self.output_path

    def abort(self) -> None:
        """Stop ffmpeg and remove the partial file (used when the frame producer failed)."""
        if self._closed:
            return
        self._closed = True
        self._proc.kill()
        self._proc.wait()
        if self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        self._stderr.close()
        self._part_path.unlink(missing_ok=True)

    @property
    def duration_s(self) -> float:
        return self.frames_written / self.fps

    def _read_stderr(self) -> str:
        return _read_tail(self._stderr)


# ---- reading ----
def _rate(text: str | None) -> float:
    if not text or text in ("0/0", "0"):
        return 0.0
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        return 0.0


def _float(value: object, default: float = 0.0) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def probe(path: str | Path) -> VideoInfo:
    """Read duration, size, frame rate, codecs and audio rate of a media file with ffprobe."""
    path = check_input_file(path, "Media file", missing=FileNotFoundError)  # a folder or FIFO: says which
    args = [
        _binary("ffprobe"), "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path),
    ]  # fmt: skip
    out = _run(args, f"ffprobe {path}")
    data = json.loads(out.stdout.decode("utf-8", "replace") or "{}")
    streams = data.get("streams", [])
    # An attached cover picture is a "video" stream too; the real video is the first that is not one.
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")
        ),
        None,
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None and audio is None:
        raise VideoEncodeError(f"{path} holds no audio or video stream ffprobe can read")
    duration = _float(data.get("format", {}).get("duration"))
    fps, frames, width, height, v_dur, v_start = 0.0, 0, 0, 0, 0.0, 0.0
    if video is not None:
        width, height = int(video.get("width", 0)), int(video.get("height", 0))
        fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
        v_dur = _float(video.get("duration"), duration)
        v_start = _float(video.get("start_time"))
        frames = int(_float(video.get("nb_frames"))) or round(v_dur * fps)
    a_dur = _float(audio.get("duration"), duration) if audio else 0.0
    return VideoInfo(
        path=path,
        duration_s=duration or max(v_dur, a_dur),
        width=width,
        height=height,
        fps=fps,
        video_codec=video.get("codec_name") if video else None,
        audio_codec=audio.get("codec_name") if audio else None,
        audio_sample_rate_hz=int(_float(audio.get("sample_rate"))) if audio else 0,
        has_audio=audio is not None,
        has_video=video is not None,
        frames=frames,
        video_duration_s=v_dur,
        audio_duration_s=a_dur,
        video_start_s=v_start,
        audio_start_s=_float(audio.get("start_time")) if audio else 0.0,
        pixel_format=video.get("pix_fmt") if video else None,
    )


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decode every video frame of `path` as (height, width, 3) uint8 BGR, in order."""
    info = probe(path)
    if not info.has_video:
        raise VideoEncodeError(f"{path} has no video stream to decode")
    frame_bytes = info.width * info.height * 3
    args = [
        _binary("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
        # passthrough: each stored frame once. Without it ffmpeg makes the output constant-rate, repeating frames
        # to fill the gaps of a variable-rate file (a screen recording), which would look like frozen video.
        "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr)
        assert proc.stdout is not None
        try:
            while True:
                buf = proc.stdout.read(frame_bytes)
                if len(buf) < frame_bytes:
                    break
                yield np.frombuffer(buf, np.uint8).reshape(info.height, info.width, 3)
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()  # the caller stopped early
            rc = proc.wait()
        if rc not in (0, -9):
            stderr.seek(0)
            raise VideoEncodeError(
                f"ffmpeg failed to decode {path} (exit {rc}): {_tail(stderr.read().decode())}"
            )


def extract_audio(path: str | Path, wav_path: str | Path, sample_rate_hz: int = 16000) -> Path:
    """Write the audio track of `path` as mono 16-bit WAV at `sample_rate_hz`."""
    path = check_input_file(path, "Media file", missing=FileNotFoundError)
    wav_path = Path(wav_path)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    args = [
        _binary("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(path),
        "-vn", "-ac", "1", "-ar", str(sample_rate_hz), "-c:a", "pcm_s16le", str(wav_path),
    ]  # fmt: skip
    _run(args, f"ffmpeg extracting audio from {path}")
    return wav_path


def concat_segments(
    wav_paths: list[Path],
    mp4_paths: list[Path | None],
    out_wav: Path,
    out_mp4: Path,
    audio_bitrate: str = "192k",
) -> tuple[Path, Path | None]:
    """Join a reply's segments into one WAV and, when every segment has video, one MP4.

    The segment videos are joined without re-encoding (concat demuxer, stream copy); the joined WAV becomes the
    audio track, encoded once, so no AAC priming gap is left at a segment boundary. Returns (wav, mp4 or None).
    """
    import soundfile as sf

    from assistant.audio.io import resample

    if not wav_paths:
        raise ValueError("no segments to join")
    out_wav, out_mp4 = Path(out_wav), Path(out_mp4)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    with_video = bool(mp4_paths) and all(p is not None for p in mp4_paths)
    rate = sf.info(str(wav_paths[0])).samplerate
    parts = []
    for i, wav in enumerate(wav_paths):
        data, sr = sf.read(str(wav), dtype="float32", always_2d=True)
        mono = data.mean(axis=1)
        if sr != rate:
            mono = resample(mono, sr, rate)
        if with_video:
            # A segment's video lasts whole frames, up to one frame longer than its sound; pad the sound to match,
            # as the player does between segments, so sync does not drift along the joined file.
            video_s = probe(mp4_paths[i]).video_duration_s  # type: ignore[arg-type]
            mono = np.pad(mono, (0, max(0, round(video_s * rate) - len(mono))))
        parts.append(mono)
    joined = np.concatenate(parts)
    with atomic_path(out_wav, size_bytes=2 * joined.size + 44) as part:  # 16-bit mono and the WAV header
        sf.write(str(part), joined, rate, subtype="PCM_16", format="WAV")
    if not with_video:
        return out_wav, None
    out_mp4.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        for p in mp4_paths:
            escaped = str(Path(p).resolve()).replace("'", "'\\''")  # type: ignore[arg-type]
            listing.write(f"file '{escaped}'\n")
    try:
        need = sum(Path(p).stat().st_size for p in mp4_paths)  # type: ignore[arg-type]  # the copied video
        with atomic_path(out_mp4, size_bytes=need) as part:
            args = [
                _binary("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                "-f", "concat", "-safe", "0", "-i", listing.name, "-i", str(out_wav),
                "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", audio_bitrate,
                # -copyts keeps the video at t=0 (otherwise it is shifted by the AAC encoder's priming delay)
                "-copyts", "-movflags", "+faststart", "-shortest", "-f", "mp4", str(part),
            ]  # fmt: skip
            _run(args, f"ffmpeg joining {len(mp4_paths)} segments into {out_mp4}", out_mp4)
    finally:
        os.unlink(listing.name)
    return out_wav, out_mp4


# ---- live encoding ----
_PIPE_BYTES = 1 << 20  # 1 MiB pipes (Linux default 64 KiB): room for a few frames of jitter between the processes


def _grow_pipe(fd: int) -> None:
    """Enlarge a pipe's kernel buffer where the OS allows it (Linux F_SETPIPE_SZ); harmless elsewhere."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)
    except (ImportError, OSError):
        pass


def _live_encode_args(
    width: int, height: int, fps: float, audio_rate_hz: int, audio_fd: int,
    video_bitrate: str | None, keyframe_s: float, audio_bitrate: str,
) -> list[str]:  # fmt: skip
    """ffmpeg's arguments up to the outputs: raw video on stdin, s16 mono on `audio_fd`, H.264 and AAC."""
    rate = Fraction(fps).limit_denominator(1001)
    gop = max(1, round(keyframe_s * fps))
    args = [
        _binary("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        # Raw inputs with every parameter given: no probing (probing one pipe while the other fills up
        # would deadlock both).
        "-probesize", "32", "-analyzeduration", "0",
        "-thread_queue_size", "64", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}",
        "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "pipe:0",
        "-probesize", "32", "-analyzeduration", "0",
        "-thread_queue_size", "64", "-f", "s16le", "-ar", str(audio_rate_hz), "-ac", "1",
        "-i", f"pipe:{audio_fd}",
        "-map", "0:v:0", "-map", "1:a:0",
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-color_range", "tv", "-colorspace", "smpte170m", "-color_primaries", "smpte170m",
        "-color_trc", "smpte170m",
    ]  # fmt: skip
    if video_bitrate:
        args += ["-b:v", video_bitrate, "-maxrate", video_bitrate, "-bufsize", video_bitrate]
    else:
        # 18, not x264's 23: idle motion moves less than a pixel a frame, and at 23 the encoder skips such
        # blocks after each keyframe, so the screen stood still for 0.12-0.28 s at a time (measured, 40 s idle).
        args += ["-crf", "18"]
    return args + ["-c:a", "aac", "-b:a", audio_bitrate, "-ar", str(audio_rate_hz)]


def _live_output_args(outputs: list[tuple[str, str | None]]) -> list[str]:
    """ffmpeg's output arguments: the one output's muxer, or ffmpeg's tee over several (one encode)."""
    targets = []
    for kind, target in outputs:
        if kind == "mpegts":
            targets.append(("mpegts", "pipe:1"))
        elif kind == "mp4":
            Path(target or "").parent.mkdir(parents=True, exist_ok=True)
            targets.append(("mp4", str(target)))
        elif kind == "flv":
            targets.append(("flv", str(target)))
        else:
            raise ValueError(f"unknown live output kind {kind!r}; use mpegts, mp4 or flv")
    if len(targets) == 1:
        fmt, where = targets[0]
        if fmt == "mpegts":
            return ["-f", fmt, "-flush_packets", "1", "-muxdelay", "0", "-muxpreload", "0", where]
        if fmt == "mp4":
            return ["-f", fmt, "-movflags", "+faststart", where]
        return ["-f", fmt, where]

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace(":", "\\:").replace("|", "\\|").replace("[", "\\[")

    options = {"mpegts": "f=mpegts", "mp4": "f=mp4:movflags=+faststart", "flv": "f=flv:onfail=ignore"}
    parts = [f"[{options[fmt]}]{escape(where)}" for fmt, where in targets]
    return ["-muxdelay", "0", "-muxpreload", "0", "-flush_packets", "1", "-f", "tee", "|".join(parts)]


class LiveEncoder:
    """Encode a live stream of I420 frames and s16 mono audio, one frame's audio per frame, to one or more outputs
    in a single ffmpeg process (encoded once, muxed by ffmpeg's tee when there are several):

    - `("mpegts", None)`: MPEG-TS on the process's stdout; `read_fd` is the read end (for a player).
    - `("mp4", path)`: an MP4 recording, finished when the encoder closes.
    - `("flv", url)`: an RTMP publish (`onfail=ignore`: a lost server does not stop the other outputs).

    Video goes to ffmpeg's stdin and audio to a second pipe (fd 3 in ffmpeg), written by one thread in frame
    order; ffmpeg reads each input on its own thread, so neither pipe can block the other. `write` never blocks:
    when the encoder falls more than `max_queue` frames behind, the oldest frame and its audio are dropped
    together (the stream stays in sync; `frames_dropped` counts them).
    """

    def __init__(
        self,
        outputs: list[tuple[str, str | Path | None]],
        width: int,
        height: int,
        fps: float,
        audio_rate_hz: int,
        video_bitrate: str | None = None,
        keyframe_s: float = 1.0,
        audio_bitrate: str = "128k",
        max_queue: int = 50,
    ) -> None:
        import queue as queue_mod
        import threading

        if not outputs:
            raise ValueError("LiveEncoder needs at least one output")
        if width % 2 or height % 2:
            raise ValueError(f"live frames must have an even size, got {width}x{height}")
        self.width, self.height, self.fps, self.audio_rate_hz = width, height, float(fps), int(audio_rate_hz)
        self.outputs = [(kind, str(target) if target is not None else None) for kind, target in outputs]
        self.frames_written = 0
        self.frames_dropped = 0
        self.failed: str | None = None
        audio_read, self._audio_write = os.pipe()
        try:
            self._args = _live_encode_args(
                width, height, self.fps, self.audio_rate_hz, audio_read, video_bitrate, keyframe_s, audio_bitrate
            ) + _live_output_args(self.outputs)
        except ValueError:
            os.close(audio_read)
            os.close(self._audio_write)
            raise
        self._start(audio_read)
        self._queue: queue_mod.Queue = queue_mod.Queue()
        self._max_queue = max_queue
        self._closed = False
        self._thread = threading.Thread(target=self._writer, name="live-encoder", daemon=True)
        self._thread.start()

    def _start(self, audio_read: int) -> None:
        """Start ffmpeg with the audio pipe's read end passed on (and closed here), the pipes enlarged."""
        has_pipe = any(kind == "mpegts" for kind, _ in self.outputs)
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the encoder
        log.debug("ffmpeg: %s", " ".join(self._args))
        try:
            self._proc = subprocess.Popen(
                self._args, stdin=subprocess.PIPE, stdout=subprocess.PIPE if has_pipe else subprocess.DEVNULL,
                stderr=self._stderr, pass_fds=(audio_read,),
            )  # fmt: skip
        finally:
            os.close(audio_read)
        self._audio_out = os.fdopen(self._audio_write, "wb")
        for pipe_end in (self._audio_write, self._proc.stdin.fileno() if self._proc.stdin else None):
            if pipe_end is not None:
                _grow_pipe(pipe_end)
        self.read_fd: int | None = self._proc.stdout.fileno() if has_pipe and self._proc.stdout else None

    def write(self, yuv_i420: np.ndarray, audio_s16: np.ndarray) -> None:
        """Queue one frame ((H * 3/2, W) uint8 I420) and its audio ((samples,) int16). Never blocks."""
        if self._closed:
            return
        while self._queue.qsize() >= self._max_queue:
            try:
                self._queue.get_nowait()
                self.frames_dropped += 1
            except Exception:  # noqa: BLE001 - emptied meanwhile
                break
        self._queue.put((yuv_i420, audio_s16))

    def _writer(self) -> None:
        assert self._proc.stdin is not None
        video = self._proc.stdin
        while True:
            item = self._queue.get()
            if item is None:
                break
            yuv, audio = item
            try:
                self._audio_out.write(np.ascontiguousarray(audio, np.int16).tobytes())
                self._audio_out.flush()
                video.write(memoryview(np.ascontiguousarray(yuv)).cast("B"))
                video.flush()
                self.frames_written += 1
            except (BrokenPipeError, OSError, ValueError) as e:
                self.failed = f"ffmpeg stopped taking the live stream ({e}): {self._read_stderr()}"
                log.error("%s", self.failed)
                break

    @property
    def alive(self) -> bool:
        return self.failed is None and self._proc.poll() is None

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish the outputs (an MP4 recording gets its index) and stop ffmpeg."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout_s)
        for close in (self._audio_out.close, lambda: self._proc.stdin and self._proc.stdin.close()):
            try:
                close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()

    def _read_stderr(self) -> str:
        return _read_tail(self._stderr)


# ==== Re-encoding and presentation muxing (`assistant video encode`, `assistant present`) ====================
# Quality presets of `video encode`: x264/x265 preset and constant rate factor (lower CRF: better, larger).
ENCODE_PRESETS: dict[str, tuple[str, int]] = {
    "high": ("slow", 18),
    "medium": ("medium", 23),
    "low": ("fast", 28),
    "fast": ("veryfast", 23),
}
_CODEC_ALIASES = {"h264": "libx264", "x264": "libx264", "h265": "libx265", "hevc": "libx265", "x265": "libx265"}
ENCODE_CODECS = ("libx264", "libx265")  # both take -preset/-crf with the same meaning
_MP4_AUDIO_COPY = ("aac", "mp3", "alac", "ac3")  # audio an MP4 holds as it is; anything else becomes AAC


@dataclass(frozen=True)
class EncodeResult:
    """What `encode_file` made, and with which settings."""

    path: Path
    codec: str
    quality: str
    preset: str
    crf: int
    audio: str  # "copy", "aac" or "none"
    duration_s: float
    size_bytes: int
    input_size_bytes: int
    elapsed_s: float


def _text_subtitles(path: Path) -> bool:
    """Whether every subtitle stream of `path` is text (and there is at least one)."""
    args = [
        _binary("ffprobe"), "-v", "error", "-select_streams", "s", "-show_entries", "stream=codec_name",
        "-of", "csv=p=0", str(path),
    ]  # fmt: skip
    codecs = _run(args, f"ffprobe {path}").stdout.decode("utf-8", "replace").split()
    return bool(codecs) and all(c in ("mov_text", "subrip", "srt", "ass", "ssa", "webvtt", "text") for c in codecs)


def encode_file(
    input_path: str | Path,
    output_path: str | Path,
    quality: str = "medium",
    crf: int | None = None,
    codec: str = "libx264",
    audio_bitrate: str = "192k",
    on_progress: Callable[[float], None] | None = None,
) -> EncodeResult:
    """Re-encode a video to an MP4 with a quality preset (ENCODE_PRESETS), keeping its audio and chapters.

    `crf` overrides the preset's. `on_progress(fraction)` is called as ffmpeg reports its position. The output
    appears only once complete (`.part` name, then renamed); a failure or Ctrl-C leaves nothing behind.
    """
    import time

    input_path, output_path = Path(input_path), Path(output_path)
    if quality not in ENCODE_PRESETS:
        raise ValueError(f"Unknown quality {quality!r}; use one of {', '.join(ENCODE_PRESETS)}")
    codec = _CODEC_ALIASES.get(codec, codec)
    if codec not in ENCODE_CODECS:
        raise ValueError(f"Unknown codec {codec!r}; use one of {', '.join(ENCODE_CODECS)} (or h264, h265)")
    preset, preset_crf = ENCODE_PRESETS[quality]
    crf = preset_crf if crf is None else int(crf)
    if not 0 <= crf <= 51:
        raise ValueError(f"CRF must be between 0 and 51, got {crf}")
    info = probe(input_path)
    if not info.has_video:
        raise VideoEncodeError(f"{input_path} has no video stream to encode")
    audio = "none"
    if info.has_audio:
        audio = "copy" if info.audio_codec in _MP4_AUDIO_COPY else "aac"
    output_path.parent.mkdir(parents=True, exist_ok=True)
    args = [
        _binary("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(input_path),
        "-map", "0:v:0", "-c:v", codec, "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
    ]  # fmt: skip
    if codec == "libx265":
        args += ["-tag:v", "hvc1", "-x265-params", "log-level=error"]  # hvc1: what Apple players want
    if audio == "copy":
        args += ["-map", "0:a:0", "-c:a", "copy"]
    elif audio == "aac":
        args += ["-map", "0:a:0", "-c:a", "aac", "-b:a", audio_bitrate]
    if _text_subtitles(input_path):  # a presentation's subtitle track goes along (bitmap subtitles cannot)
        args += ["-map", "0:s", "-c:s", "mov_text"]
    args += ["-map_chapters", "0", "-movflags", "+faststart", "-progress", "pipe:1", "-nostats", "-f", "mp4"]
    start = time.monotonic()
    with atomic_path(output_path) as part, tempfile.TemporaryFile() as stderr:
        log.debug("ffmpeg: %s %s", " ".join(args), part)
        proc = subprocess.Popen(
            [*args, str(part)], stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL
        )
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:  # key=value lines, a block per progress report
                key, _, value = raw.decode("ascii", "replace").strip().partition("=")
                if key == "out_time_us" and on_progress is not None and info.duration_s > 0:
                    try:
                        on_progress(min(1.0, max(0.0, int(value) / 1e6 / info.duration_s)))
                    except ValueError:
                        pass  # "N/A" before the first frame
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        stderr.seek(0)
        failure = _output_failure(
            output_path, rc, stderr.read().decode("utf-8", "replace"), f"ffmpeg encoding {input_path}"
        )
        if failure is not None:
            raise failure
    if on_progress is not None:
        on_progress(1.0)
    return EncodeResult(
        path=output_path, codec=codec, quality=quality, preset=preset, crf=crf, audio=audio,
        duration_s=info.duration_s, size_bytes=output_path.stat().st_size,
        input_size_bytes=input_path.stat().st_size, elapsed_s=time.monotonic() - start,
    )  # fmt: skip


def mux_presentation(
    video_path: str | Path,
    output_path: str | Path,
    chapters_path: str | Path | None = None,
    subtitles_path: str | Path | None = None,
    subtitle_language: str = "eng",
) -> Path:
    """Copy a finished video's streams into `output_path` adding chapters (an ffmetadata file) and a subtitle track
    (an .srt, stored as MP4 text: mov_text), with the index up front (faststart). Nothing is re-encoded."""
    video_path, output_path = Path(video_path), Path(output_path)
    args = [_binary("ffmpeg"), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(video_path)]
    n = 1
    sub_input = meta_input = None
    if subtitles_path is not None:
        args += ["-f", "srt", "-i", str(subtitles_path)]
        sub_input, n = n, n + 1
    if chapters_path is not None:
        args += ["-f", "ffmetadata", "-i", str(chapters_path)]
        meta_input = n
    args += ["-map", "0:v", "-map", "0:a?"]
    if sub_input is not None:
        args += ["-map", f"{sub_input}:s:0"]
    if meta_input is not None:
        args += ["-map_metadata", str(meta_input), "-map_chapters", str(meta_input)]
    args += ["-c:v", "copy", "-c:a", "copy"]
    if sub_input is not None:
        args += ["-c:s", "mov_text", "-metadata:s:s:0", f"language={subtitle_language}"]
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output_path) as part:
        args += ["-movflags", "+faststart", "-f", "mp4", str(part)]
        _run(args, f"ffmpeg adding chapters and subtitles to {video_path}", output_path)
    return output_path
