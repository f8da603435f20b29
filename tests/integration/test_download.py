"""The downloader against a real HTTP server on 127.0.0.1: full download, resume with Range after a dropped
connection, checksum mismatch, 404, a server that ignores Range, zip unpacking, and the `models` CLI.

The test registry holds generated models whose URLs point at https://huggingface.co/...; every download passes
the local server as the mirror base, so the mirror rewrite is exercised and no real host is ever contacted.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import zipfile
from pathlib import Path

import pytest

from assistant.cli.models_cmd import download_models, list_models
from assistant.download import download_model
from assistant.errors import DownloadError
from assistant.models import ModelFile, ModelSpec, ModelStatus, locate, make_registry, state
from tests.http_server import LocalHTTPServer

pytestmark = pytest.mark.integration

FAST = {"retry_wait_s": 0.0, "timeout_s": 10.0, "chunk_bytes": 16 * 1024}


def _blob(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _url(name: str, rel: str) -> str:
    return f"https://huggingface.co/test-org/{name}/resolve/main/{rel}"


def _path(name: str, rel: str) -> str:
    return f"/test-org/{name}/resolve/main/{rel}"


def _spec(name: str, files: dict[str, bytes], *, sha: dict[str, str] | None = None) -> ModelSpec:
    sha = sha or {}
    return ModelSpec(
        name,
        "asr",
        f"generated {name}",
        "test-only",
        files=tuple(
            ModelFile(rel, (_url(name, rel),), len(data), sha.get(rel, _sha(data)))
            for rel, data in files.items()
        ),
        install_dir=f"gen/{name}",
    )


def _serve(*specs_files: tuple[str, dict[str, bytes]], **kw: bool) -> LocalHTTPServer:
    served = {_path(name, rel): data for name, files in specs_files for rel, data in files.items()}
    return LocalHTTPServer(served, **kw)


@pytest.fixture
def two_files() -> dict[str, bytes]:
    return {"model.bin": _blob(1, 300_000), "config.json": b'{"layers": 4}\n'}


def test_full_download_lands_checked_files_and_no_part(tmp_path: Path, two_files: dict[str, bytes]) -> None:
    reg = make_registry([_spec("gen-a", two_files)])
    assert state("gen-a", tmp_path, registry=reg).status is ModelStatus.MISSING
    with _serve(("gen-a", two_files)) as srv:
        seen = []
        result = download_model(
            "gen-a", tmp_path, base_url=srv.base_url, registry=reg, progress=seen.append, **FAST
        )
        paths = [r.path for r in srv.requests]
    folder = tmp_path / "gen" / "gen-a"
    for rel, data in two_files.items():
        assert (folder / rel).read_bytes() == data
        assert not (folder / (rel + ".part")).exists()
    assert sorted(paths) == sorted(_path("gen-a", rel) for rel in two_files)  # the mirror replaced the host
    assert result.fetched_bytes == sum(len(d) for d in two_files.values())
    assert seen[-1].done_bytes == seen[-1].total_bytes  # progress reached the end of the last file
    st = state("gen-a", tmp_path, verify=True, registry=reg)
    assert st.status is ModelStatus.PRESENT and st.verified
    assert locate("gen-a", tmp_path, registry=reg) == folder


def test_dropped_connection_keeps_part_and_next_run_resumes_with_range(tmp_path: Path) -> None:
    files = {"weights.bin": _blob(2, 400_000)}
    reg = make_registry([_spec("gen-b", files)])
    dest = tmp_path / "gen" / "gen-b" / "weights.bin"
    with _serve(("gen-b", files)) as srv:
        srv.drop_connection(_path("gen-b", "weights.bin"), after_bytes=150_000)
        with pytest.raises(DownloadError) as info:
            download_model("gen-b", tmp_path, base_url=srv.base_url, registry=reg, retries=0, **FAST)
        assert "resume" in str(info.value) and "weights.bin.part" in str(info.value)
        part = dest.with_name("weights.bin.part")
        assert part.stat().st_size == 150_000  # the partial file is kept for resume
        assert not dest.exists()
        st = state("gen-b", tmp_path, registry=reg)
        assert st.status is ModelStatus.MISSING and st.partial_bytes == 150_000

        result = download_model("gen-b", tmp_path, base_url=srv.base_url, registry=reg, retries=0, **FAST)
        second = srv.requests[-1]
    assert second.range == "bytes=150000-" and second.status == 206
    assert result.files[0].resumed_from_bytes == 150_000
    assert result.files[0].fetched_bytes == 250_000
    assert _sha(dest.read_bytes()) == _sha(files["weights.bin"])
    assert not part.exists()


def test_automatic_retry_resumes_within_one_call(tmp_path: Path) -> None:
    files = {"weights.bin": _blob(3, 200_000)}
    reg = make_registry([_spec("gen-c", files)])
    with _serve(("gen-c", files)) as srv:
        srv.drop_connection(_path("gen-c", "weights.bin"), after_bytes=64_000)
        download_model("gen-c", tmp_path, base_url=srv.base_url, registry=reg, retries=2, **FAST)
        ranges = [r.range for r in srv.requests]
    assert ranges == [None, "bytes=64000-"]
    assert (tmp_path / "gen" / "gen-c" / "weights.bin").read_bytes() == files["weights.bin"]


def test_checksum_mismatch_never_reaches_the_final_path(tmp_path: Path) -> None:
    good = _blob(4, 120_000)
    served = {"weights.bin": _blob(5, 120_000)}  # same size, other bytes: a tampered or wrong file
    reg = make_registry([_spec("gen-d", {"weights.bin": good})])
    dest = tmp_path / "gen" / "gen-d" / "weights.bin"
    with _serve(("gen-d", served)) as srv:
        with pytest.raises(DownloadError) as info:
            download_model("gen-d", tmp_path, base_url=srv.base_url, registry=reg, **FAST)
    message = str(info.value)
    assert "sha256 mismatch" in message and _sha(good) in message and "deleted" in message
    assert not dest.exists() and not dest.with_name("weights.bin.part").exists()
    assert state("gen-d", tmp_path, registry=reg).status is ModelStatus.MISSING


def test_404_names_the_url(tmp_path: Path) -> None:
    reg = make_registry([_spec("gen-e", {"weights.bin": b"x" * 1000})])
    with _serve() as srv:  # serves nothing
        with pytest.raises(DownloadError) as info:
            download_model("gen-e", tmp_path, base_url=srv.base_url, registry=reg, **FAST)
        url = srv.url(_path("gen-e", "weights.bin"))
    assert "HTTP 404" in str(info.value) and url in str(info.value)
    assert not (tmp_path / "gen" / "gen-e" / "weights.bin").exists()


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path) -> None:
    data = _blob(6, 250_000)
    reg = make_registry([_spec("gen-f", {"weights.bin": data})])
    dest = tmp_path / "gen" / "gen-f" / "weights.bin"
    dest.parent.mkdir(parents=True)
    dest.with_name("weights.bin.part").write_bytes(b"\0" * 100_000)  # stale bytes the server will not extend
    with _serve(("gen-f", {"weights.bin": data}), ignore_range=True) as srv:
        result = download_model("gen-f", tmp_path, base_url=srv.base_url, registry=reg, **FAST)
        seen = srv.requests
    assert [(r.range, r.status) for r in seen] == [("bytes=100000-", 200)]
    assert result.files[0].resumed_from_bytes == 0
    assert dest.read_bytes() == data


def test_corrupt_partial_file_is_detected_and_downloaded_again(tmp_path: Path) -> None:
    data = _blob(11, 150_000)
    reg = make_registry([_spec("gen-l", {"weights.bin": data})])
    dest = tmp_path / "gen" / "gen-l" / "weights.bin"
    dest.parent.mkdir(parents=True)
    dest.with_name("weights.bin.part").write_bytes(b"\xff" * 40_000)  # garbage a crash could have left
    with _serve(("gen-l", {"weights.bin": data})) as srv:
        download_model("gen-l", tmp_path, base_url=srv.base_url, registry=reg, **FAST)
        seen = [(r.range, r.status) for r in srv.requests]
    assert seen == [("bytes=40000-", 206), (None, 200)]  # resumed, hash failed, fetched whole
    assert dest.read_bytes() == data


def test_wrong_size_from_server_is_refused_before_writing(tmp_path: Path) -> None:
    reg = make_registry([_spec("gen-g", {"weights.bin": _blob(7, 50_000)})])
    with _serve(("gen-g", {"weights.bin": _blob(7, 60_000)})) as srv:
        with pytest.raises(DownloadError) as info:
            download_model("gen-g", tmp_path, base_url=srv.base_url, registry=reg, **FAST)
    assert "serves 60,000 bytes but the registry expects 50,000" in str(info.value)
    assert not (tmp_path / "gen" / "gen-g").joinpath("weights.bin.part").exists()


def test_zip_archive_is_unpacked_into_place(tmp_path: Path) -> None:
    weights, config = _blob(8, 80_000), b'{"model": "vits"}'
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("tts_models--gen/model_file.pth", weights)
        zf.writestr("tts_models--gen/config.json", config)
    archive = buf.getvalue()
    spec = ModelSpec(
        "gen-zip",
        "tts",
        "generated zip",
        "test-only",
        install_dir="coqui/gen-zip",
        files=(
            ModelFile(
                "gen.zip",
                (_url("gen-zip", "gen.zip"),),
                len(archive),
                _sha(archive),
                unpack=(("model_file.pth", "model.pth"), ("config.json", "config.json")),
            ),
        ),
    )
    reg = make_registry([spec])
    with _serve(("gen-zip", {"gen.zip": archive})) as srv:
        download_model("gen-zip", tmp_path, base_url=srv.base_url, registry=reg, **FAST)
    folder = tmp_path / "coqui" / "gen-zip"
    assert (folder / "model.pth").read_bytes() == weights
    assert (folder / "config.json").read_bytes() == config
    assert not (folder / "gen.zip").exists()
    assert state("gen-zip", tmp_path, registry=reg).status is ModelStatus.PRESENT


def test_present_model_is_skipped_and_force_fetches_again(
    tmp_path: Path, two_files: dict[str, bytes]
) -> None:
    reg = make_registry([_spec("gen-h", two_files)])
    with _serve(("gen-h", two_files)) as srv:
        download_model("gen-h", tmp_path, base_url=srv.base_url, registry=reg, **FAST)
        again = download_model("gen-h", tmp_path, base_url=srv.base_url, registry=reg, **FAST)
        assert again.skipped and len(srv.requests) == 2
        forced = download_model("gen-h", tmp_path, base_url=srv.base_url, registry=reg, force=True, **FAST)
        assert not forced.skipped and len(srv.requests) == 4


def test_corrupt_file_is_replaced_by_a_download(tmp_path: Path) -> None:
    data = _blob(9, 90_000)
    reg = make_registry([_spec("gen-i", {"weights.bin": data})])
    dest = tmp_path / "gen" / "gen-i" / "weights.bin"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(_blob(10, 90_000))  # right size, wrong bytes
    assert state("gen-i", tmp_path, registry=reg).status is ModelStatus.PRESENT  # size-only check passes
    assert state("gen-i", tmp_path, verify=True, registry=reg).status is ModelStatus.CORRUPT
    with _serve(("gen-i", {"weights.bin": data})) as srv:
        download_model("gen-i", tmp_path, base_url=srv.base_url, registry=reg, **FAST)
    assert dest.read_bytes() == data


def test_cli_download_shows_progress_and_list_reports_state(
    tmp_path: Path, two_files: dict[str, bytes]
) -> None:
    reg = make_registry([_spec("gen-j", two_files), _spec("gen-k", {"w.bin": b"k" * 5000})])
    out, err = io.StringIO(), io.StringIO()
    with _serve(("gen-j", two_files)) as srv:
        rc = download_models(
            ["gen-j", "gen-k"], tmp_path, base_url=srv.base_url, registry=reg, out=out, err=err, **FAST
        )
    assert rc == 1  # gen-k is not on the server
    assert "gen-j: ready at" in out.getvalue()
    assert "gen-j/model.bin" in err.getvalue() and "100%" in err.getvalue()  # the tqdm bar
    assert "error: gen-k:" in err.getvalue() and "HTTP 404" in err.getvalue()
    listing = io.StringIO()
    assert list_models(tmp_path, verify=True, as_json=True, registry=reg, out=listing) == 0
    rows = {r["name"]: r for r in json.loads(listing.getvalue())}
    assert rows["gen-j"]["state"] == "present" and rows["gen-j"]["verified"] is True
    assert rows["gen-k"]["state"] == "missing"
    assert rows["gen-j"]["size_bytes"] == sum(len(d) for d in two_files.values())
