"""Coqui speech (PyPI `coqui-tts`, import name `TTS`): VITS, XTTS and the other Coqui models, from local files
only.

Needs coqui-tts plus a torchaudio/torchcodec that import against the installed torch: run
`scripts/install_coqui.sh <venv>` (on a CPU-only torch a plain pip install cannot provide them). A model is
named by registry name ("coqui-vits", "coqui-xtts-v2"), by Coqui name ("tts_models/en/ljspeech/vits",
looked up as <models_dir>/coqui/tts_models--en--ljspeech--vits/), or by path: a folder holding model.pth
(or model_file.pth, checkpoint.pth) + config.json, or a .pth file with config.json beside it or given.
Nothing is ever downloaded here; a missing model raises TTSModelError naming the download command. Runs on
the GPU when one is there.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assistant.audio.io import write_wav
from assistant.errors import TTSError
from assistant.events import SpeechAudio
from assistant.tts.base import (
    DEFAULT_COQUI_MODEL,
    TTSImportError,
    TTSModelError,
    check_text,
    locate_registered,
    registry_entry_for_folder,
    speech_from_wav,
)

log = logging.getLogger(__name__)

INSTALL_HINT = "scripts/install_coqui.sh .venv  (pip install coqui-tts alone cannot work on a CPU-only torch)"
CHECKPOINT_NAMES = (
    "model.pth",
    "model_file.pth",
    "model_file.pth.tar",
    "checkpoint.pth",
)  # what Coqui releases use
# Config fields that name side files by absolute path on the machine that trained the model. Coqui's own
# downloader rewrites them to the download folder; so do we, in a private copy of the config (never in place).
SIDE_FILE_FIELDS = {
    "speakers_file": ("speaker_ids.json", "speaker_ids.pth"),
    "d_vector_file": ("speakers.json", "speakers.pth"),
    "language_ids_file": ("language_ids.json",),
    "speaker_encoder_model_path": ("model_se.pth", "model_se.pth.tar"),
    "speaker_encoder_config_path": ("config_se.json",),
}


@dataclass(frozen=True)
class CoquiModelFiles:
    """Where a Coqui model's files are on disk."""

    folder: Path
    checkpoint: Path  # the .pth file, or the folder itself for models that load from a folder (XTTS)
    config: Path
    model_type: str  # config["model"]: "vits", "xtts", ...


def resolve_model(model: str | Path, models_dir: Path, config_path: Path | None = None) -> CoquiModelFiles:
    """Find a model's checkpoint and config from a registry name, a Coqui name or a path. Never downloads."""
    text = str(model)
    if text in ("", "auto"):
        text = DEFAULT_COQUI_MODEL
    path = Path(text).expanduser()
    if not path.exists():
        registered = locate_registered(text, models_dir)
        if registered is not None:
            path = registered
        elif text.startswith(("tts_models/", "tts_models--")):
            folder_name = text.replace("/", "--")
            install_dir = f"coqui/{folder_name}"
            registered_name = registry_entry_for_folder(install_dir)
            located = locate_registered(registered_name, models_dir) if registered_name else None
            path = located if located is not None else Path(models_dir) / install_dir
            if not path.exists():
                raise TTSModelError(
                    f"Coqui model {text!r} is not downloaded: expected {path}/ with model.pth + config.json. "
                    "Download it (`assistant models download <name>`, see `assistant models list`) or set "
                    "tts.coqui_model to a local folder; models are never downloaded while speaking"
                )
        else:
            raise TTSModelError(
                f"Coqui model {text!r} not found: it is not a path, not a registry name and not a Coqui "
                "model name (tts_models/<lang>/<dataset>/<model>); see `assistant models list`"
            )
    if path.is_dir():
        folder = path
        checkpoint = next((folder / n for n in CHECKPOINT_NAMES if (folder / n).is_file()), None)
        if checkpoint is None:
            pths = sorted(folder.glob("*.pth"))
            if len(pths) != 1:
                raise TTSModelError(
                    f"No Coqui checkpoint in {folder}: expected one of {', '.join(CHECKPOINT_NAMES)}"
                )
            checkpoint = pths[0]
    else:
        folder, checkpoint = path.parent, path
    config = Path(config_path) if config_path is not None else folder / "config.json"
    if not config.is_file():
        raise TTSModelError(
            f"Coqui model config not found: {config}; a Coqui model needs its config.json beside "
            f"the checkpoint {checkpoint.name}"
        )
    try:
        model_type = str(json.loads(config.read_text(encoding="utf-8")).get("model", ""))
    except (OSError, ValueError) as e:
        raise TTSModelError(
            f"Coqui model config {config} is not valid JSON: {e}; download the model again"
        ) from e
    if model_type == "xtts":  # XTTS loads model.pth, vocab.json and speakers_xtts.pth from its folder
        checkpoint = folder
    return CoquiModelFiles(folder, checkpoint, config, model_type)


def _fix_side_file_paths(config: dict[str, Any], folder: Path) -> bool:
    """Point side-file fields (speaker ids, d-vectors, ...) at the copies in `folder`; True on a change."""
    changed = False
    sections = [config] + ([config["model_args"]] if isinstance(config.get("model_args"), dict) else [])
    for field_name, defaults in SIDE_FILE_FIELDS.items():
        for section in sections:
            value = section.get(field_name)
            if not value:
                continue
            first = value[0] if isinstance(value, list) else value
            if Path(str(first)).is_file():
                continue
            for name in (Path(str(first)).name, *defaults):
                if name and (folder / name).is_file():
                    section[field_name] = (
                        [str(folder / name)] if isinstance(value, list) else str(folder / name)
                    )
                    changed = True
                    break
    return changed


class CoquiEngine:
    """A Coqui model behind the TTSEngine protocol, loaded once through Coqui's Synthesizer."""

    name = "coqui"

    def __init__(
        self,
        model: str | Path = DEFAULT_COQUI_MODEL,
        *,
        models_dir: Path = Path("models"),
        config_path: Path | None = None,
        device: str = "auto",
        speaker: str | None = None,
        language: str | None = None,
        speaker_wav: Path | None = None,
    ) -> None:
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"Coqui device {device!r} is not one of auto, cpu, cuda")
        self.model = model
        self.models_dir = Path(models_dir)
        self.config_path = config_path
        self.device = device
        self.speaker = speaker
        self.language = language
        self.speaker_wav = speaker_wav
        self.files: CoquiModelFiles | None = None
        self.device_used: str | None = None
        self.speakers: list[str] = []
        self.languages: list[str] = []
        self._synth: Any = None  # TTS.utils.synthesizer.Synthesizer once loaded
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._synth is not None

    def load(self) -> None:
        if self._synth is not None:
            return
        files = resolve_model(self.model, self.models_dir, self.config_path)
        try:
            import torch
            from TTS.utils.synthesizer import Synthesizer
        except Exception as e:  # ImportError, or OSError from a torchaudio extension built for another torch
            raise TTSImportError(
                f"Coqui TTS does not import ({type(e).__name__}: {e}); install it with: {INSTALL_HINT}"
            ) from e
        use_cuda = self.device == "cuda" or (self.device == "auto" and torch.cuda.is_available())
        if use_cuda and not torch.cuda.is_available():
            raise TTSError("tts.device is cuda but torch sees no CUDA GPU; set tts.device to auto or cpu")
        config = self._config_for_loading(files)
        started = time.monotonic()
        try:
            synth = Synthesizer(tts_checkpoint=files.checkpoint, tts_config_path=config, use_cuda=use_cuda)
        except (
            Exception
        ) as e:  # a corrupt .pth raises pickle/zip/RuntimeError; a wrong config KeyError/ValueError
            self._cleanup_tmp()
            raise TTSModelError(
                f"Cannot load the Coqui model {files.checkpoint} ({type(e).__name__}: {e}); "
                "the file may be corrupt or not match its config.json: download it again"
            ) from e
        self.files, self._synth = files, synth
        self.device_used = "cuda" if use_cuda else "cpu"
        self.speakers, self.languages = self._voices(synth)
        self._check_voice_choice()
        log.info(
            "Coqui model %s (%s) loaded on %s in %.2f s",
            files.folder.name,
            files.model_type,
            self.device_used,
            time.monotonic() - started,
        )

    def _config_for_loading(self, files: CoquiModelFiles) -> Path:
        raw = json.loads(files.config.read_text(encoding="utf-8"))
        if not _fix_side_file_paths(raw, files.folder):
            return files.config
        self._tmp = tempfile.TemporaryDirectory(prefix="coqui-config-")
        fixed = Path(self._tmp.name) / "config.json"
        fixed.write_text(json.dumps(raw), encoding="utf-8")
        return fixed

    @staticmethod
    def _voices(synth: Any) -> tuple[list[str], list[str]]:
        model = synth.tts_model
        speakers: list[str] = []
        manager = getattr(model, "speaker_manager", None)
        is_xtts = getattr(model.config, "model", "") == "xtts"
        if manager is not None and (is_xtts or getattr(manager, "num_speakers", 0) > 1):
            speakers = list(manager.speaker_names)
        languages: list[str] = []
        if is_xtts:
            languages = list(model.config.languages)
        elif (lang_manager := getattr(model, "language_manager", None)) is not None:
            if getattr(lang_manager, "num_languages", 0) > 1:
                languages = list(lang_manager.language_names)
        return speakers, languages

    def _check_voice_choice(self) -> None:
        if self.speakers and self.speaker is not None and self.speaker not in self.speakers:
            shown = ", ".join(self.speakers[:10]) + (" ..." if len(self.speakers) > 10 else "")
            raise TTSModelError(
                f"Coqui model has no speaker {self.speaker!r}; set tts.speaker to one of: {shown}"
            )
        if self.languages and self.language is not None and self.language not in self.languages:
            raise TTSModelError(
                f"Coqui model does not speak {self.language!r}; set tts.language to one of: "
                f"{', '.join(self.languages)}"
            )
        if self.speaker_wav is not None and not Path(self.speaker_wav).is_file():
            raise TTSModelError(f"Reference voice file not found: {self.speaker_wav}")

    def _synthesis_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.speaker_wav is not None:
            kwargs["speaker_wav"] = str(self.speaker_wav)
        elif self.speakers:
            kwargs["speaker_name"] = self.speaker or self.speakers[0]
        if self.languages:
            kwargs["language_name"] = self.language or self.languages[0]
        return kwargs

    def synthesize(self, text: str, out_path: Path) -> SpeechAudio:
        text = check_text(text)
        self.load()
        started = time.monotonic()
        with self._lock:
            try:
                wav = self._synth.tts(text, **self._synthesis_kwargs())
            except Exception as e:
                raise TTSError(f"Coqui failed to speak {text[:60]!r} ({type(e).__name__}: {e})") from e
        samples = np.asarray(wav, dtype=np.float32).reshape(-1)  # (n,) float32, roughly [-1, 1]
        if samples.size == 0 or not np.all(np.isfinite(samples)):
            raise TTSError(
                f"Coqui produced {'no' if samples.size == 0 else 'non-finite'} audio for {text[:60]!r}"
            )
        write_wav(out_path, samples, int(self._synth.output_sample_rate))
        return speech_from_wav(Path(out_path), self.name, text, time.monotonic() - started)

    def _cleanup_tmp(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def close(self) -> None:
        synth, self._synth = self._synth, None
        if synth is not None and self.device_used == "cuda":
            import torch

            del synth
            torch.cuda.empty_cache()
        self._cleanup_tmp()
