"""Speed twins: models with a real model's architecture and quantisation and random weights (see twins.llm)."""

from assistant.twins.build import TwinResult, build_twin, twin_dir, twin_shape
from assistant.twins.llm import TWIN_SHAPES, LlmShape

__all__ = ["TWIN_SHAPES", "LlmShape", "TwinResult", "build_twin", "twin_dir", "twin_shape"]
