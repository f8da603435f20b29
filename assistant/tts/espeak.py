"""espeak-ng speech: robotic but always there, the last resort of the fallback chain.

Needs the `espeak-ng` binary (Debian/Ubuntu: `sudo apt-get install espeak-ng`). Runs it as a subprocess
with an argument list, never a shell string; the text goes in on stdin so a sentence starting with "-" is
not an option.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from assistant.errors import TTSError
from assistant.events import SpeechAudio
from assistant.tts.base import TTSImportError, TTSModelError, check_text, speech_from_wav

INSTALL_HINT = "sudo apt-get install espeak-ng"
TIMEOUT_S = 60.0  # espeak-ng speaks a sentence in milliseconds; a minute means it hung


def _stderr(e: subprocess.CalledProcessError | subprocess.TimeoutExpired) -> str:
    raw = e.stderr or b""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text.strip() or "(no stderr)"


class EspeakEngine:
    """espeak-ng behind the TTSEngine protocol."""

    name = "espeak"

    def __init__(self, voice: str = "en-us", rate_wpm: int = 165, *, binary: str = "espeak-ng") -> None:
        if not 80 <= rate_wpm <= 450:  # espeak-ng's own limits
            raise ValueError(f"espeak-ng rate {rate_wpm} words a minute is outside 80..450")
        self.voice = voice
        self.rate_wpm = rate_wpm
        self.binary = binary
        self.binary_path: str | None = None

    def load(self) -> None:
        if self.binary_path is not None:
            return
        found = shutil.which(self.binary)
        if found is None:
            raise TTSImportError(
                f"The {self.binary} program is not installed or not on PATH; install it with: {INSTALL_HINT}"
            )
        # Speak nothing to /dev/null once: it fails now, not mid-conversation, when the voice does not exist.
        try:
            subprocess.run(
                [found, "-v", self.voice, "-q", "--stdin"],
                input=b"ok",
                capture_output=True,
                check=True,
                timeout=TIMEOUT_S,
            )
        except subprocess.CalledProcessError as e:
            raise TTSModelError(
                f"espeak-ng cannot use voice {self.voice!r}: {_stderr(e)}; list the voices with "
                "`espeak-ng --voices` and set tts.espeak_voice"
            ) from e
        except subprocess.TimeoutExpired as e:
            raise TTSError(f"espeak-ng did not answer within {TIMEOUT_S:.0f} s: {_stderr(e)}") from e
        self.binary_path = found

    def synthesize(self, text: str, out_path: Path) -> SpeechAudio:
        text = check_text(text)
        self.load()
        assert self.binary_path is not None
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [self.binary_path, "-v", self.voice, "-s", str(self.rate_wpm), "-w", str(out_path), "--stdin"]
        started = time.monotonic()
        try:
            subprocess.run(
                cmd, input=text.encode("utf-8"), capture_output=True, check=True, timeout=TIMEOUT_S
            )
        except subprocess.CalledProcessError as e:
            raise TTSError(
                f"espeak-ng failed (exit {e.returncode}) speaking {text[:60]!r}: {_stderr(e)}"
            ) from e
        except subprocess.TimeoutExpired as e:
            raise TTSError(
                f"espeak-ng took over {TIMEOUT_S:.0f} s speaking {text[:60]!r}: {_stderr(e)}"
            ) from e
        return speech_from_wav(out_path, self.name, text, time.monotonic() - started)

    def close(self) -> None:
        self.binary_path = None
