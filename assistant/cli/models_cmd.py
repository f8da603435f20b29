"""`assistant models list|download|path`: the model table, downloads with a progress bar, where a model is.

The models folder and the mirror come from the config (`paths.models_dir`, `models.mirror_url`, env
ASSISTANT_MODEL_MIRROR) unless given on the command line; the config is only loaded when one of them is
needed. Progress bars (tqdm) go to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from assistant.download import DownloadProgress, download_model
from assistant.errors import DownloadError, ModelError
from assistant.inputs import folder_arg
from assistant.models import (
    REGISTRY,
    CommercialUse,
    ModelSpec,
    ModelStatus,
    get_spec,
    locate,
    state_text,
    states,
    trust,
    trust_note,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list, download and locate models")
    msub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    ls = msub.add_parser("list", help="every model with its state, size and licence")
    ls.add_argument("--json", action="store_true", help="one JSON array")
    ls.add_argument("--verify", action="store_true", help="also check sha256 sums (slow once, then cached)")
    ls.add_argument("--models-dir", metavar="DIR", type=folder_arg, help="instead of paths.models_dir from the config")
    ls.set_defaults(func=_list)

    dl = msub.add_parser("download", help="download models (resumes a partial download)")
    dl.add_argument("names", nargs="+", metavar="NAME", help="model names, see `assistant models list`")
    dl.add_argument("--force", action="store_true", help="download again even when present")
    dl.add_argument("--models-dir", metavar="DIR", type=folder_arg, help="instead of paths.models_dir from the config")
    dl.add_argument("--mirror", metavar="URL", help="base URL replacing the hosts (config models.mirror_url)")
    dl.set_defaults(func=_download)

    path = msub.add_parser("path", help="print where a model is (exit 1 when it is not usable)")
    path.add_argument("name", metavar="NAME")
    path.add_argument("--models-dir", metavar="DIR", type=folder_arg, help="instead of paths.models_dir from the config")
    path.set_defaults(func=_path)

    twin = msub.add_parser("twin", help="build a speed twin: a model's exact shapes and quantisation, random weights")
    twin.add_argument("name", metavar="NAME", help="registry name of the model twinned (e.g. llama-3.2-1b)")
    twin.add_argument("--json", action="store_true", help="one JSON object")
    twin.add_argument("--force", action="store_true", help="build again even when present")
    twin.add_argument("--models-dir", metavar="DIR", type=folder_arg, help="instead of paths.models_dir from the config")
    twin.set_defaults(func=_twin)


def _settings(
    args: argparse.Namespace,
):  # -> assistant.config.Settings, imported late: pydantic is slow to load
    from assistant.config import load_settings

    return load_settings(getattr(args, "config", None))


def _models_dir(args: argparse.Namespace) -> Path:
    return Path(args.models_dir) if args.models_dir else _settings(args).models_dir


def _list(args: argparse.Namespace) -> int:
    return list_models(_models_dir(args), verify=args.verify, as_json=args.json)


def _download(args: argparse.Namespace) -> int:
    models_dir = Path(args.models_dir) if args.models_dir else None
    mirror = args.mirror
    if models_dir is None or mirror is None:
        settings = _settings(args)
        models_dir = models_dir or settings.models_dir
        mirror = mirror or settings.models.mirror_url
    if mirror and mirror.lower().startswith("http://"):
        print(
            f"warning: the mirror {mirror} is plain HTTP: a file can be altered on the way; only files with a "
            "registry sha256 are checked (`assistant models list` marks the others unverified). Prefer https://",
            file=sys.stderr,
        )
    try:
        return download_models(args.names, models_dir, base_url=mirror, force=args.force)
    except KeyboardInterrupt:
        names = " ".join(args.names)
        kept = [p for p in Path(models_dir).rglob("*.part") if p.is_file() and p.stat().st_size]
        if kept:
            print(
                f"\nDownload interrupted: the partial file {kept[0]} ({kept[0].stat().st_size:,} bytes) is kept; "
                f"run `assistant models download {names}` again to resume where it stopped",
                file=sys.stderr,
            )
        else:
            print(
                f"\nDownload interrupted before any byte of it was saved: nothing was kept in {models_dir}; run "
                f"`assistant models download {names}` again to start it",
                file=sys.stderr,
            )
        return 130


def _twin(args: argparse.Namespace) -> int:
    from assistant.twins import build_twin

    try:
        result = build_twin(args.name, _models_dir(args), force=args.force)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"name": result.name, "path": str(result.path), "size_bytes": result.size_bytes,
                          "kind": result.kind, "built": result.built}))  # fmt: skip
    else:
        done = f"built in {result.build_s:.0f} s" if result.built else "already there"
        print(f"twin of {result.name} ({result.kind}, {human_bytes(result.size_bytes)}, {done}): {result.path}")
    return 0


def _path(args: argparse.Namespace) -> int:
    try:
        print(locate(args.name, _models_dir(args)))
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def human_bytes(n: int | None, exact: bool = True) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            text = f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
            return text if exact else "~" + text
        size /= 1000
    return str(n)


_COMMERCIAL_TEXT = {
    CommercialUse.YES: "yes",
    CommercialUse.CONDITIONS: "with conditions",
    CommercialUse.NO: "no",
    CommercialUse.UNKNOWN: "unknown",
}


def list_models(
    models_dir: Path,
    *,
    verify: bool = False,
    as_json: bool = False,
    registry: Mapping[str, ModelSpec] | None = None,
    out: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    reg = REGISTRY if registry is None else registry
    rows = []
    for st in states(models_dir, verify=verify, registry=reg):
        spec = reg[st.name]
        rows.append(
            {
                "name": st.name,
                "kind": spec.kind,
                "state": st.status.value,
                "state_text": state_text(st, spec),
                "size_bytes": spec.size_bytes,
                "size_exact": spec.size_is_exact,
                "licence": spec.licence,
                "commercial_use": spec.commercial_use.value,  # yes, conditions, no or unknown
                "commercial_terms": spec.commercial_terms,  # the conditions, or why not
                "optional": spec.optional,
                "bundled": spec.bundled,
                "verified": st.verified,
                "trust": trust(spec),  # bundled, sha256 or unverified (files without a published sha256)
                "trust_note": trust_note(spec),
                "path": str(st.path),
                "detail": st.detail,
                "partial_bytes": st.partial_bytes,
                "description": spec.description,
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2), file=out)
        return 0
    table = [("NAME", "KIND", "STATE", "SIZE", "TRUST", "COMMERCIAL", "LICENCE")] + [
        (
            r["name"],
            r["kind"],
            r["state_text"] + (" (verified)" if r["verified"] else ""),
            human_bytes(r["size_bytes"], r["size_exact"]),
            r["trust"].upper() if r["trust"] == "unverified" else r["trust"],
            _COMMERCIAL_TEXT[CommercialUse(r["commercial_use"])],
            r["licence"],
        )
        for r in rows
    ]
    last = len(table[0]) - 1  # the licence, unpadded: the longest column goes last
    widths = [max(len(str(row[i])) for row in table) for i in range(last)]
    for row in table:
        print("  ".join(str(row[i]).ljust(widths[i]) for i in range(last)) + "  " + str(row[last]), file=out)
    for r in rows:
        if r["trust_note"]:
            print(r["trust_note"], file=out)
    conditional: dict[tuple[str, str], list[str]] = {}  # one line per licence, naming its models
    for r in rows:
        if r["commercial_use"] == CommercialUse.CONDITIONS.value:
            conditional.setdefault((r["licence"], r["commercial_terms"]), []).append(r["name"])
    for (licence, terms), names in conditional.items():
        print(f"{licence} ({', '.join(names)}): commercial use with conditions: {terms}", file=out)
    notes = [r for r in rows if r["state"] == ModelStatus.CORRUPT.value or r["partial_bytes"]]
    for r in notes:
        fix = f"assistant models download {r['name']}" + (" --force" if r["state"] == "corrupt" else "")
        print(f"{r['name']}: {r['detail']} -> {fix}", file=out)
    print(f"models folder: {models_dir}", file=out)
    return 0


class _Bars:
    """One tqdm bar per file, on stderr; tqdm is imported only when a download starts."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.bars: dict[tuple[str, str], object] = {}
        self.done: dict[tuple[str, str], int] = {}

    def __call__(self, p: DownloadProgress) -> None:
        from tqdm import tqdm

        key = (p.model, p.file)
        bar = self.bars.get(key)
        if bar is None:
            bar = tqdm(
                total=p.total_bytes,
                initial=p.resumed_from_bytes,
                desc=f"{p.model}/{p.file}",
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=self.stream,
                leave=True,
                dynamic_ncols=True,
            )
            self.bars[key] = bar
            self.done[key] = p.resumed_from_bytes
        bar.update(p.done_bytes - self.done[key])  # type: ignore[attr-defined]
        self.done[key] = p.done_bytes

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()  # type: ignore[attr-defined]
        self.bars.clear()
        self.done.clear()


def download_models(
    names: Sequence[str],
    models_dir: Path,
    *,
    base_url: str | None = None,
    force: bool = False,
    registry: Mapping[str, ModelSpec] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    **download_kw: object,
) -> int:
    """Download each named model; 0 when all are ready, 1 when any failed (the others still download)."""
    out, err = out or sys.stdout, err or sys.stderr
    for name in names:  # an unknown name fails before anything is downloaded
        get_spec(name, registry)
    if base_url:
        print(f"using mirror {base_url}", file=err)
    failed = []
    for name in dict.fromkeys(names):
        warning = trust_note(get_spec(name, registry))
        if warning:
            print(f"warning: {warning}", file=err)
        bars = _Bars(err)
        try:
            result = download_model(
                name,
                Path(models_dir),
                base_url=base_url,
                force=force,
                registry=registry,
                progress=bars,
                **download_kw,
            )  # type: ignore[arg-type]
        except (DownloadError, ModelError) as e:
            bars.close()
            print(f"error: {name}: {e}", file=err)
            failed.append(name)
            continue
        bars.close()
        unverified = " UNVERIFIED (no published sha256)" if result.unverified_files else ""
        if result.skipped:
            print(f"{name}: already present at {result.path}{unverified}", file=out)
        else:
            resumed = sum(f.resumed_from_bytes for f in result.files)
            note = f", resumed from {human_bytes(resumed)}" if resumed else ""
            print(
                f"{name}: ready at {result.path} ({human_bytes(result.fetched_bytes)} in "
                f"{result.elapsed_s:.1f} s{note}){unverified}",
                file=out,
            )
    if failed:
        print(f"{len(failed)} of {len(names)} model(s) failed: {', '.join(failed)}", file=err)
        return 1
    return 0
