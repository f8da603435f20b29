"""Nothing leaves the machine at run time: the telemetry switches of the libraries under the core, set once.

onnxruntime (under Piper, and faster-whisper's VAD) ships with Microsoft's 1DS telemetry on: as soon as a session
is created it writes a device id and an event queue under ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ and
looks up mobile.events.data.microsoft.com. `disable_telemetry_events()` only suppresses non-essential events after
the uploader exists; onnxruntime's Privacy.md names `ORT_DISABLE_TELEMETRY=1`, read when its environment is created,
as the switch that stops the uploader, the events and the device id for the life of the process. So it has to be
in the environment before onnxruntime is imported: `assistant/__init__.py` calls `disable_telemetry()` first thing.

Needs nothing but the standard library. The variables are inherited by every subprocess the core starts.
"""

from __future__ import annotations

import os

# Forced, not defaulted: the README promises that conversations never leave the machine.
TELEMETRY_OFF_ENV: dict[str, str] = {
    "ORT_DISABLE_TELEMETRY": "1",  # onnxruntime >= 1.2x 1DS: no uploader, no events, no ~/.cache/Microsoft
    "HF_HUB_DISABLE_TELEMETRY": "1",  # huggingface_hub (model downloads): no usage pings
    "DO_NOT_TRACK": "1",  # the cross-tool convention (consoledonottrack.com) some libraries honour
}


def disable_telemetry(environ: dict[str, str] | os._Environ[str] | None = None) -> None:
    """Put the telemetry switches into `environ` (default: this process's environment)."""
    target = os.environ if environ is None else environ
    for key, value in TELEMETRY_OFF_ENV.items():
        target[key] = value
