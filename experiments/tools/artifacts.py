"""Bulky run outputs live outside git: their sha256 manifest in git, the files in an archive.

    python -m experiments.tools.artifacts manifest            # write results/artifacts.sha256
    python -m experiments.tools.artifacts pack artifacts.tar.gz      # the files, to publish
    python -m experiments.tools.artifacts restore <archive or URL>   # checked file by file
    python -m experiments.tools.artifacts compact             # old predictions.jsonl -> .gz

Not in git (``.gitignore``): each run's saved edits (``edited/``), its unedited model's outputs
(``base_eval.json``, the same file in many runs) and its per-example retention outputs
(``retention.jsonl``). No table, figure or README number is computed from them; ``variant``,
``ask`` and resuming an unfinished run need them. ``--results`` names another results folder.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from elder.atomic import atomic_path
from experiments.results import (
    LEGACY_PREDICTIONS,
    PREDICTIONS,
    read_jsonl,
    write_jsonl,
)

BULKY = ("edited/*", "base_eval.json", "retention.jsonl")  # under each run folder
MANIFEST = "artifacts.sha256"


def sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def bulky_files(results: Path) -> list[Path]:
    """Every bulky file under ``results/runs``, relative to ``results``, sorted."""
    found = {p for pattern in BULKY for p in (results / "runs").glob(f"*/{pattern}")}
    return sorted(p.relative_to(results) for p in found if p.is_file())


def read_manifest(results: Path) -> dict[str, str]:
    """path (relative to ``results``) -> sha256, from ``results/artifacts.sha256``."""
    file = results / MANIFEST
    if not file.is_file():
        raise FileNotFoundError(f"no manifest: {file} (run `... artifacts manifest` first)")
    pairs = (line.split(maxsplit=1) for line in file.read_text().splitlines() if line.strip())
    return {path.strip(): digest for digest, path in pairs}


def write_manifest(results: Path) -> dict[str, str]:
    """The manifest of the bulky files present, merged with the entries of files not here."""
    try:
        entries = read_manifest(results)
    except FileNotFoundError:
        entries = {}
    entries.update({str(p): sha256(results / p) for p in bulky_files(results)})
    with atomic_path(results / MANIFEST) as tmp:
        tmp.write_text("".join(f"{d}  {p}\n" for p, d in sorted(entries.items())))
    return entries


def pack(results: Path, archive: Path) -> int:
    """The manifest's files that are here, into ``archive`` (a .tar.gz); how many."""
    entries = write_manifest(results)
    with atomic_path(archive) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for path in entries:
            if (results / path).is_file():
                tar.add(results / path, arcname=path)
    return len(entries)


def restore(results: Path, source: str) -> int:
    """Extract the manifest's files from an archive (a path or a URL), each checked; how many."""
    entries = read_manifest(results)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(source)
        if "://" in source:
            archive = Path(tmp) / "artifacts.tar.gz"
            urllib.request.urlretrieve(source, archive)  # noqa: S310 (a URL the user names)
        restored = 0
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                if member.name not in entries or not member.isfile():
                    continue  # only the manifest's files, never a path of the archive's choosing
                data = tar.extractfile(member).read()
                if hashlib.sha256(data).hexdigest() != entries[member.name]:
                    raise ValueError(f"{member.name}: sha256 differs from {MANIFEST}")
                with atomic_path(results / member.name) as out:
                    out.write_bytes(data)
                restored += 1
    return restored


def compact(results: Path) -> int:
    """Rewrite each run's plain ``predictions.jsonl`` as ``predictions.jsonl.gz``; how many."""
    done = 0
    for legacy in sorted((results / "runs").glob(f"*/{LEGACY_PREDICTIONS}")):
        write_jsonl(legacy.with_name(PREDICTIONS), read_jsonl(legacy))
        legacy.unlink()
        done += 1
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["manifest", "pack", "restore", "compact"])
    parser.add_argument("source", nargs="?", help="pack: the archive; restore: archive or URL")
    parser.add_argument("--results", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    try:
        if args.command in ("pack", "restore") and not args.source:
            raise ValueError(f"{args.command} needs an archive (or, to restore, a URL)")
        if args.command == "manifest":
            print(f"{args.results / MANIFEST}: {len(write_manifest(args.results))} files")
        elif args.command == "pack":
            print(f"{args.source}: {pack(args.results, Path(args.source))} files")
        elif args.command == "restore":
            print(f"restored {restore(args.results, args.source)} files into {args.results}")
        else:
            print(f"compacted {compact(args.results)} predictions files")
    except (ValueError, FileNotFoundError, OSError, tarfile.TarError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
