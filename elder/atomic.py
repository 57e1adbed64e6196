"""Atomic writes: a reader (or a resume after a kill) sees the old file or the new, never half.

Every file the project writes for later reading goes through :func:`atomic_path`; a folder
that is written as a whole (a checkpoint, saved edits, a converted tokenizer) through
:func:`atomic_dir`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file next to ``path``; written in full, it replaces ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A temporary folder next to ``path``; filled in full, it replaces ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        _replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished ``tmp`` folder to ``target``; the old one (if any) goes only after."""
    old = None
    if target.exists():
        old = target.with_name(f"{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
