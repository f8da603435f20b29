"""The Qt-free core of the avatar assistant."""

from assistant.privacy import disable_telemetry

disable_telemetry()  # before any submodule can import onnxruntime: see assistant/privacy.py
