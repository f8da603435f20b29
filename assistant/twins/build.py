"""Build a speed twin once into `<models_dir>/twins/<name>/`, by the registry model's kind.

Needs what the kind's builder needs: assistant.twins.llm for "llm", assistant.twins.whisper for "asr".

A twin is written under a temporary name and renamed when complete, so a half-written one is never taken for a
finished one; a temporary left by an interrupted build is removed and the twin rebuilt. Every failure is one
ModelError line that says what to do, and leaves nothing behind.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import ModelError
from assistant.models import get_spec, locate
from assistant.twins.llm import TWIN_SHAPES, LlmShape, f16_bytes, quantise, quantised_bytes_bound, write_f16
from assistant.twins.vocab import read_source_vocab

PARTIAL = ".partial"  # suffix of a twin being written
SOURCE_TOKENIZER = "smollm2-135m"  # the bundled model whose tokenizer every LLM twin carries


@dataclass(frozen=True)
class TwinResult:
    name: str  # the registry model it twins
    path: Path  # the twin's file (LLM) or folder (ASR)
    size_bytes: int
    kind: str  # the registry kind: "llm" or "asr"
    built: bool  # False: it was already there
    build_s: float = 0.0  # 0 when it was already there


def twin_dir(models_dir: Path, name: str) -> Path:
    return Path(models_dir) / "twins" / name


def twin_shape(name: str) -> LlmShape:
    """The LLM twin shape of registry model `name`; ModelError when the name is unknown or has no twin."""
    spec = get_spec(name)
    if spec.kind != "llm" or name not in TWIN_SHAPES:
        raise ModelError(_no_twin(name))
    return TWIN_SHAPES[name]


def _no_twin(name: str) -> str:
    return (
        f"no twin shape for {name}: twins exist for {', '.join(TWIN_SHAPES)} (dialogue models) "
        "and the speech recognisers (asr models in `assistant models list`)"
    )


def build_twin(name: str, models_dir: Path, force: bool = False) -> TwinResult:
    """The twin of registry model `name`, built unless it is already there (or `force`)."""
    spec = get_spec(name)  # ModelError naming the known models for an unknown name
    if spec.kind == "llm":
        return _build_llm(name, twin_dir(models_dir, name), Path(models_dir), force)
    if spec.kind == "asr":
        return _build_asr(name, twin_dir(models_dir, name), force)
    raise ModelError(_no_twin(name))


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _existing(folder: Path) -> Path:
    while not folder.exists():
        folder = folder.parent
    return folder


def _check_space(folder: Path, needed_bytes: int, name: str) -> None:
    free = shutil.disk_usage(_existing(folder)).free
    if free < needed_bytes:
        raise ModelError(
            f"not enough free disk space in {folder} to build the twin of {name}: it needs {needed_bytes:,} bytes "
            f"(f16 file + quantised file), {free:,} are free; free some space or pass another --models-dir"
        )


def _build_llm(name: str, folder: Path, models_dir: Path, force: bool) -> TwinResult:
    shape = twin_shape(name)
    final = folder / shape.file_name
    f16 = folder / (shape.file_name + ".f16" + PARTIAL)
    quantised = folder / (shape.file_name + PARTIAL)
    if final.is_file() and not force:
        return TwinResult(name, final, final.stat().st_size, "llm", built=False)
    for leftover in (f16, quantised, final):  # an interrupted build's temporaries (and, with force, the twin)
        leftover.unlink(missing_ok=True)
    _check_space(folder, f16_bytes(shape) + quantised_bytes_bound(shape), name)
    source = read_source_vocab(locate(SOURCE_TOKENIZER, models_dir))
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        write_f16(name, shape, source, f16)
        quantise(f16, quantised, shape.ftype)
        quantised.rename(final)
    except (OSError, RuntimeError, ValueError) as e:
        quantised.unlink(missing_ok=True)
        f16.unlink(missing_ok=True)
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise ModelError(f"building the twin of {name} in {folder} failed: {e}") from e
    finally:
        f16.unlink(missing_ok=True)
    return TwinResult(name, final, final.stat().st_size, "llm", True, time.monotonic() - started)


def _build_asr(name: str, folder: Path, force: bool) -> TwinResult:
    from assistant.twins.whisper import build_whisper_twin  # written separately; only ASR twins need it

    existed = folder.is_dir() and any(folder.iterdir())
    if existed and force:
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        path = build_whisper_twin(name, folder)
    except BaseException:
        if force or not existed:
            shutil.rmtree(folder, ignore_errors=True)  # nothing half-built stays behind
        raise
    built = force or not existed
    return TwinResult(name, path, _size(path), "asr", built, time.monotonic() - started if built else 0.0)
