"""Downloading a public data file into the user cache, checked against its pinned sha256.

``ELDER_DATA_MIRROR=<base url>`` replaces the host of every source URL (``https://host/a/b``
-> ``<base url>/a/b``): a mirror, or a server on 127.0.0.1 in the tests.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from elder.atomic import atomic_path
from elder.data.sources import Source

MIRROR_ENV = "ELDER_DATA_MIRROR"
CHUNK = 1 << 20
TIMEOUT_S = 30


def source_url(source: Source) -> str:
    """The URL to download from: the source's own, or its path under ``$ELDER_DATA_MIRROR``."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return source.url
    return mirror.rstrip("/") + urllib.parse.urlsplit(source.url).path


class DownloadError(OSError):
    """A download that failed or did not match its checksum; the cache is left as it was."""


def download(source: Source, target: Path) -> Path:
    """Download ``source`` to ``target`` atomically, with a progress bar; check its sha256."""
    url = source_url(source)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, atomic_path(target) as tmp:
            size = int(response.headers.get("Content-Length") or 0) or None
            small = size is not None and size < CHUNK  # a bar only where there is a wait
            bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"downloading {target.name}",
                       disable=small)  # fmt: skip
            received = 0
            with bar, open(tmp, "wb") as out:
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if size is not None and received != size:
                raise DownloadError(f"{url}: got {received} of {size} bytes")
            if digest.hexdigest() != source.sha256:
                raise DownloadError(
                    f"{url}: sha256 {digest.hexdigest()} is not the pinned {source.sha256}"
                )
    except DownloadError:
        raise
    except (OSError, http.client.HTTPException) as err:  # no network, 404, a cut connection
        raise DownloadError(f"{url}: {getattr(err, 'reason', None) or err!r}") from None
    return target
