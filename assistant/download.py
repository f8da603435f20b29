"""Download registry models into the models folder: resume, sha256 check, atomic placement, mirrors.

Each file streams into `<file>.part` next to its destination. A dropped connection keeps the `.part`; the next
attempt (an automatic retry, or the same command run again) asks for the rest with an HTTP Range request, and
starts over when a server ignores Range (answers 200). The sha256 is computed while the bytes arrive; a file
whose size or sha256 does not match is deleted and never reaches its final name. A good file is fsync'ed and
moved into place with os.replace, so the final path only ever holds a complete, checked file. A file the registry
has no sha256 for is checked by what is known (size, a look at the content, a zip's members) and reported in
`DownloadResult.unverified_files`; one already on disk that fails those checks is deleted and fetched again.

A full disk is not a dropped connection: a write that fails for lack of space (or on a read-only disk) deletes the
`.part` and raises StorageError naming the folder. An archive nobody vouches for (no sha256) is unpacked only
when what it declares fits the free space and is at most UNPACK_MAX_RATIO times its own size (a zip bomb is not
a model); what is unpacked never exceeds what it declared.

A mirror base URL (config `models.mirror_url`, env ASSISTANT_MODEL_MIRROR) replaces the scheme and host of
every source URL; the path is kept. Needs only the standard library (urllib); progress goes to a callback.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from assistant.errors import DownloadError, ModelError
from assistant.models import (
    PART_SUFFIX,
    ModelFile,
    ModelSpec,
    VerifyCache,
    check_file,
    get_spec,
    install_dir,
    state,
)
from assistant.storage import StorageError, atomic_path, check_free_space, storage_error

log = logging.getLogger(__name__)

USER_AGENT = "avatar-assistant-model-downloader/0.1"
CHUNK_BYTES = 1 << 20  # up to 1 MiB a read (read1: what has arrived, so a slow link's bytes reach the .part)
# Model weights hardly compress (a .pth zips to ~93 %); an archive declaring 20 times its size is not a model.
UNPACK_MAX_RATIO = 20
MODELS_HINT = "or set paths.models_dir in your config (or --models-dir) to a folder on a disk with room"


@dataclass(frozen=True)
class DownloadProgress:
    """Reported after each chunk; `total_bytes` is None when neither the registry nor the server knows it."""

    model: str
    file: str
    done_bytes: int
    total_bytes: int | None
    resumed_from_bytes: int = 0


@dataclass(frozen=True)
class FileDownload:
    path: Path
    url: str  # the URL that served it ("" when nothing was fetched)
    fetched_bytes: int  # bytes received over the network this time
    resumed_from_bytes: int  # bytes of a .part reused
    sha256: str | None
    skipped: bool  # already present and good


@dataclass(frozen=True)
class DownloadResult:
    name: str
    path: Path  # what models.locate() returns
    files: tuple[FileDownload, ...]
    elapsed_s: float
    base_url: str | None
    # Files with no published sha256: installed after the checks that exist (size, content), but nobody vouches
    # for them (models.trust_note says which checks). Empty for a fully verified or bundled model.
    unverified_files: tuple[str, ...] = ()

    @property
    def skipped(self) -> bool:
        return all(f.skipped for f in self.files)

    @property
    def fetched_bytes(self) -> int:
        return sum(f.fetched_bytes for f in self.files)


ProgressFn = Callable[[DownloadProgress], None]


class _NetworkFailure(Exception):
    """The connection failed or dropped; the .part is kept and a retry resumes it."""


class _SourceFailure(Exception):
    """This URL cannot serve the file (HTTP status, wrong size); the next URL may."""


def resolve_url(url: str, base_url: str | None) -> str:
    """The URL to fetch: `url` itself, or with its scheme and host replaced by the mirror base (path kept)."""
    if not base_url:
        return url
    parts = urlsplit(url)
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    return base_url.rstrip("/") + rest


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """(start, total) from 'bytes START-END/TOTAL'; None when absent or malformed."""
    if not value or not value.startswith("bytes "):
        return None
    try:
        span, _, total = value[6:].partition("/")
        start = int(span.split("-")[0])
        return start, (int(total) if total.strip() not in ("", "*") else None)
    except ValueError:
        return None


def _fetch_once(
    url: str,
    part: Path,
    size_bytes: int | None,
    label: tuple[str, str],
    progress: ProgressFn | None,
    timeout_s: float,
    chunk_bytes: int,
) -> tuple[int, int, str]:
    """One HTTP attempt appending to `part`. Returns (fetched, resumed_from, sha256 of the whole part)."""
    offset, digest = _resume_point(part, size_bytes)
    if size_bytes is not None and offset == size_bytes:
        return 0, offset, digest.hexdigest()
    response = _open(url, part, offset, timeout_s)
    with response:
        start, expected_total = _served_range(response, url, offset)
        if start != offset:  # the server sends the whole file: the .part and its hash start over
            offset, digest = start, hashlib.sha256()
        if size_bytes is not None and expected_total is not None and expected_total != size_bytes:
            raise _SourceFailure(
                f"{url} serves {expected_total:,} bytes but the registry expects {size_bytes:,}: "
                "a different file or version"
            )
        total = size_bytes if size_bytes is not None else expected_total
        if total is not None:
            check_free_space(part, total - offset, MODELS_HINT)

        def report(done: int) -> None:
            if progress:
                progress(DownloadProgress(label[0], label[1], done, total, offset))

        done = _receive(response, part, offset, digest, chunk_bytes, url, report)
        if total is not None and done < total:  # a server that closes early without an error
            raise _NetworkFailure(f"connection closed after {done:,} of {total:,} bytes of {url}")
        return done - offset, offset, digest.hexdigest()


def _resume_point(part: Path, size_bytes: int | None) -> tuple[int, Any]:
    """Where a download goes on from (the .part's length; 0 when it is longer than the file) and the hash of the
    bytes already there."""
    offset = part.stat().st_size if part.is_file() else 0
    if size_bytes is not None and offset > size_bytes:
        log.warning("%s is larger than the file should be; starting over", part)
        offset = 0
    digest = hashlib.sha256()
    if offset:
        with open(part, "rb") as f:  # the resumed bytes are part of the hash
            while block := f.read(4 << 20):
                digest.update(block)
    return offset, digest


def _open(url: str, part: Path, offset: int, timeout_s: float) -> Any:
    """The HTTP response for the bytes from `offset` on; _SourceFailure or _NetworkFailure when there is none."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # our .part reaches past the end of what the server has: start over
            part.unlink(missing_ok=True)
            raise _NetworkFailure(f"server refused to resume at byte {offset:,} (416); starting over") from e
        hint = (
            " (not found: a mirror must serve the same paths as the original host)" if e.code == 404 else ""
        )
        raise _SourceFailure(f"HTTP {e.code} {e.reason} for {url}{hint}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        raise _NetworkFailure(f"cannot connect to {url}: {reason}") from e


def _served_range(response: Any, url: str, offset: int) -> tuple[int, int | None]:
    """(where the body starts in the file, the file's whole size if the server says): `offset` for a resumed
    range (206), 0 for a server that ignored the Range request and sends it all."""
    length = response.headers.get("Content-Length")
    length_n = int(length) if length and length.isdigit() else None
    if response.status == 206:
        cr = _content_range(response.headers.get("Content-Range"))
        if cr is None or cr[0] != offset:
            raise _SourceFailure(f"{url} answered a Range request with a bad Content-Range {cr}")
        return offset, cr[1] if cr[1] is not None else (offset + length_n if length_n is not None else None)
    if offset:
        log.info("%s ignored the Range request (HTTP %s); downloading from the start", url, response.status)
    return 0, length_n


def _receive(
    response: Any, part: Path, offset: int, digest: Any, chunk_bytes: int, url: str, report: Callable[[int], None]
) -> int:
    """Write the body into `part` from `offset` (appending, or anew from 0), hashing as it arrives; returns the
    part's length. A full or read-only disk deletes the .part and raises StorageError; Ctrl-C keeps what arrived
    (never an empty .part)."""
    done = offset
    try:
        # Unbuffered: what arrived is on disk at once, so Ctrl-C keeps it for a resume.
        with open(part, "ab" if offset else "wb", buffering=0) as out:
            while True:
                try:
                    block = response.read1(chunk_bytes)
                except (OSError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead
                    raise _NetworkFailure(f"connection lost after {done:,} bytes of {url}: {e}") from e
                if not block:
                    break
                out.write(block)
                digest.update(block)
                done += len(block)
                report(done)
            os.fsync(out.fileno())
    except OSError as e:  # the disk, not the network: a .part that cannot grow is no use to a resume
        blame = storage_error(part.parent, e, MODELS_HINT)
        if blame is None:
            raise
        part.unlink(missing_ok=True)
        raise blame from e
    except BaseException:  # Ctrl-C: keep what arrived for a resume, but never an empty .part
        if part.is_file() and part.stat().st_size == 0:
            part.unlink()
        raise
    return done


def fetch_file(
    urls: tuple[str, ...],
    dest: Path,
    *,
    size_bytes: int | None,
    sha256: str | None,
    label: tuple[str, str],
    base_url: str | None = None,
    progress: ProgressFn | None = None,
    retries: int = 2,
    retry_wait_s: float = 2.0,
    timeout_s: float = 30.0,
    chunk_bytes: int = CHUNK_BYTES,
) -> FileDownload:
    """Download one file to `dest` through `dest.part`, resuming, checking and replacing atomically."""
    if not urls:
        raise DownloadError(f"{label[0]}: no download URL for {dest.name}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + PART_SUFFIX)
    if size_bytes is not None:  # before any request: the disk, not the network, would stop it
        check_free_space(dest, size_bytes - (part.stat().st_size if part.is_file() else 0), MODELS_HINT)
    failures: list[str] = []
    network_failed = False
    for source in urls:
        url = resolve_url(source, base_url)
        attempt = 0
        restarted = False
        while True:
            try:
                fetched, resumed, digest = _fetch_once(
                    url, part, size_bytes, label, progress, timeout_s, chunk_bytes
                )
            except _NetworkFailure as e:
                attempt += 1
                if attempt <= retries:
                    log.warning("%s; retry %d of %d", e, attempt, retries)
                    time.sleep(retry_wait_s * attempt)
                    continue
                failures.append(str(e))
                network_failed = True
                break
            except _SourceFailure as e:
                failures.append(str(e))
                break
            got = part.stat().st_size
            if size_bytes is not None and got != size_bytes:
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"{url} gave {got:,} bytes, expected {size_bytes:,}; the file was deleted. "
                    "Run the command again; if it repeats, the source serves a different file."
                )
            if sha256 is not None and digest != sha256:
                part.unlink(missing_ok=True)
                if resumed and not restarted:  # the kept bytes may be the bad ones: once more, whole
                    log.warning("sha256 mismatch after resuming %s; downloading it again from the start", url)
                    restarted = True
                    continue
                raise DownloadError(
                    f"sha256 mismatch for {url}: got {digest}, expected {sha256}. The downloaded file was "
                    "deleted and not used. Run the command again; if it repeats, the source (or mirror) "
                    "serves a different file."
                )
            os.replace(part, dest)
            return FileDownload(dest, url, fetched, resumed, digest, skipped=False)
    tried = "\n  ".join(failures)
    kept = ""
    if network_failed and part.is_file() and part.stat().st_size:
        kept = (
            f"\nThe partial file {part} ({part.stat().st_size:,} bytes) was kept: run the same command "
            "again to resume."
        )
    raise DownloadError(f"could not download {label[0]} file {dest.name}:\n  {tried}{kept}")


def _unpack(
    archive: Path, members: tuple[tuple[str, str], ...], folder: Path, model: str, verified: bool
) -> None:
    """Extract the named members (matched by file name at any depth) into place, each atomically. An archive
    nobody vouches for (`verified` False) must declare at most UNPACK_MAX_RATIO times its own size."""
    try:
        with zipfile.ZipFile(archive) as zf:
            by_name: dict[str, zipfile.ZipInfo] = {}
            for info in zf.infolist():
                base = info.filename.rsplit("/", 1)[-1]
                if base and not info.is_dir() and not info.filename.startswith("__MACOSX/"):
                    by_name.setdefault(base, info)
            wanted = []
            for member, dest_rel in members:
                info = by_name.get(member)
                if info is None:
                    raise DownloadError(
                        f"{model}: {archive.name} has no {member} (it holds {', '.join(sorted(by_name))})"
                    )
                wanted.append((info, folder / dest_rel))
            declared, size = sum(info.file_size for info, _ in wanted), archive.stat().st_size
            if not verified and declared > UNPACK_MAX_RATIO * size:
                archive.unlink(missing_ok=True)
                raise DownloadError(
                    f"{model}: {archive.name} would unpack to {declared / 1e6:,.1f} MB, over {UNPACK_MAX_RATIO} "
                    f"times its own {size / 1e6:,.1f} MB: not the model (a wrong or hostile archive). It was "
                    "deleted and nothing was unpacked; if it repeats, the source (or mirror) serves another file."
                )
            folder.mkdir(parents=True, exist_ok=True)
            check_free_space(wanted[0][1], declared, MODELS_HINT)
            for info, dest in wanted:
                dest.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(dest, hint=MODELS_HINT) as tmp, zf.open(info) as src, open(tmp, "wb") as out:
                    # ZipExtFile stops at the declared size (and checks the CRC there): never more than declared.
                    shutil.copyfileobj(src, out, CHUNK_BYTES)
                    out.flush()
                    os.fsync(out.fileno())
    except zipfile.BadZipFile as e:
        archive.unlink(missing_ok=True)
        raise DownloadError(
            f"{model}: {archive.name} is not a valid zip archive ({e}); it was deleted"
        ) from e
    except StorageError:
        archive.unlink(missing_ok=True)  # it is fetched again next time: room for the members comes first
        raise
    archive.unlink(missing_ok=True)


def _install_file(
    spec: ModelSpec, mf: ModelFile, folder: Path, cache: VerifyCache, *, force: bool, **fetch_kw: object
) -> FileDownload:
    dest = folder / mf.rel_path
    problems = {folder / rel: check_file(folder / rel, size, sha, cache) for rel, size, sha in mf.installed}
    if not force and not any(problems.values()):
        return FileDownload(dest, "", 0, 0, mf.sha256, skipped=True)
    for p, problem in problems.items():
        if p.is_file() and (force or problem):  # a bad file is never used: it goes before the new one comes
            log.warning("deleting %s (%s)", p, "--force" if force else problem)
            p.unlink()
    if force:
        dest.with_name(dest.name + PART_SUFFIX).unlink(missing_ok=True)
    result = fetch_file(
        mf.urls, dest, size_bytes=mf.size_bytes, sha256=mf.sha256, label=(spec.name, mf.rel_path), **fetch_kw
    )  # type: ignore[arg-type]
    if mf.unpack:
        _unpack(dest, mf.unpack, folder, spec.name, verified=mf.sha256 is not None)
    elif result.sha256:
        cache.put(dest, result.sha256)  # hashed while downloading: `models list --verify` need not rehash it
    return result


def download_model(
    name: str,
    models_dir: Path,
    *,
    base_url: str | None = None,
    force: bool = False,
    registry: Mapping[str, ModelSpec] | None = None,
    progress: ProgressFn | None = None,
    retries: int = 2,
    retry_wait_s: float = 2.0,
    timeout_s: float = 30.0,
    chunk_bytes: int = CHUNK_BYTES,
) -> DownloadResult:
    """Download (or finish downloading) every file of a model; a file already present and good is skipped.

    Raises DownloadError on a network failure (the .part is kept for resume), an HTTP error status, or a size
    or sha256 mismatch (the bad file is deleted); ModelError for an unknown or bundled-but-uninstalled model.
    """
    t0 = time.monotonic()
    spec = get_spec(name, registry)
    models_dir = Path(models_dir)
    if spec.bundled:
        st = state(name, models_dir, registry=registry)
        if not st.usable:
            raise ModelError(st.detail)
        return DownloadResult(name, st.path, (), time.monotonic() - t0, base_url)
    folder = install_dir(spec, models_dir)
    cache = VerifyCache(models_dir)
    results = tuple(
        _install_file(
            spec,
            mf,
            folder,
            cache,
            force=force,
            base_url=base_url,
            progress=progress,
            retries=retries,
            retry_wait_s=retry_wait_s,
            timeout_s=timeout_s,
            chunk_bytes=chunk_bytes,
        )
        for mf in spec.files
    )
    path = folder / spec.entry if spec.entry else folder
    unverified = tuple(mf.rel_path for mf in spec.files if not mf.sha256)
    return DownloadResult(name, path, results, time.monotonic() - t0, base_url, unverified)
