"""`assistant serve`: the avatar in browsers over WebRTC, one conversation and live stream per browser, the models
loaded once and shared through a turn queue (docs/serve.md)."""

from assistant.serve.admission import Admission, Capacity
from assistant.serve.auth import AccessPolicy, Refusal, access_policy, is_loopback
from assistant.serve.turn_queue import FairLock, SharedModels

__all__ = [
    "AccessPolicy",
    "Admission",
    "Capacity",
    "FairLock",
    "Refusal",
    "SharedModels",
    "access_policy",
    "is_loopback",
]
