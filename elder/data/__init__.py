"""Where a data file is found: ``$ELDER_DATA_DIR``, the user cache, or its public source.

A relative data path (``zsre/zsre_mend_eval_portability_gpt4.json``) is looked up in three
places, in order: ``$ELDER_DATA_DIR/<path>``; the user cache ``$ELDER_CACHE_DIR/data/<path>``
(default ``~/.cache/elder/data``); and the file's public source (:mod:`elder.data.sources`),
downloaded into the cache with a progress bar, written atomically and checked against its
pinned sha256 (:mod:`elder.data.fetch`; ``$ELDER_DATA_MIRROR`` replaces the sources' host).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from elder.cache import CACHE_ENV, user_cache
from elder.data.fetch import DownloadError, download, source_url
from elder.data.sources import FOLDERS, NO_SOURCE, SOURCES

__all__ = ["DATA_ENV", "data_file", "data_folder"]

DATA_ENV = "ELDER_DATA_DIR"
COMPLETE = ".complete"  # in a cached folder: every file of its manifest is there


def data_file(path: str) -> Path:
    """A data file: an absolute path, or ``path`` under ``$ELDER_DATA_DIR``, in the user cache
    (``$ELDER_CACHE_DIR/data``), or downloaded there from its public source and checked against
    its pinned sha256 (:mod:`elder.data.sources`). Fails naming every place looked."""
    file = Path(path)
    if file.is_absolute():
        if file.is_file():
            return file
        raise FileNotFoundError(f"data file '{path}' not found: looked for {file}")
    found, looked, cached = _lookup(path, Path.is_file)
    if found is not None:
        return found
    missing = f"data file '{path}' not found: looked for {', '.join(looked)}"
    if path in NO_SOURCE or path not in SOURCES:
        how = NO_SOURCE.get(path, "it is not one of the project's data files")
        raise FileNotFoundError(f"{missing}; no direct download: {how} (see docs/usage.md, 'Data')")
    if cached is None:
        url = source_url(SOURCES[path])
        raise FileNotFoundError(
            f"{missing}; the user cache is off, so it cannot be downloaded from {url}"
        )
    try:
        return download(SOURCES[path], cached)
    except DownloadError as err:
        raise FileNotFoundError(f"{missing}; downloading it failed: {err}") from None


def data_folder(path: str) -> Path:
    """A folder of data files (``tasks/test-dialogue``): under ``$ELDER_DATA_DIR`` if there,
    else in the user cache, each file the folder's manifest lists fetched by :func:`data_file`."""
    found, looked, cached = _lookup(path, Path.is_dir)
    if found is not None and (found != cached or (found / COMPLETE).is_file()):
        return found
    if path not in FOLDERS or cached is None:
        raise FileNotFoundError(f"data folder '{path}' not found: looked for {', '.join(looked)}")
    for name in tqdm(FOLDERS[path], desc=f"fetching {path}", unit="file"):
        data_file(f"{path}/{name}")
    (cached / COMPLETE).touch()
    return cached


def _lookup(
    path: str, exists: Callable[[Path], bool]
) -> tuple[Path | None, list[str], Path | None]:
    """(where ``path`` is, or None; every place looked; its place in the cache, or None)."""
    looked = []
    root = os.environ.get(DATA_ENV)
    if root and exists(Path(root) / path):
        return Path(root) / path, [], None
    looked.append(str(Path(root) / path) if root else f"${DATA_ENV} (not set)")
    cache = user_cache("data")
    cached = None if cache is None else cache / path
    if cached is not None and exists(cached):
        return cached, looked, cached
    looked.append(str(cached) if cached is not None else f"the user cache (${CACHE_ENV}=off)")
    return None, looked, cached
