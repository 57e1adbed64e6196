"""The user cache: converted tokenizers and downloaded data files, under ``$ELDER_CACHE_DIR``.

Default ``~/.cache/elder``; ``ELDER_CACHE_DIR=off`` turns the cache off.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "ELDER_CACHE_DIR"


def user_cache(kind: str) -> Path | None:
    """``<cache>/<kind>`` (``"tokenizers"``, ``"data"``); None when the cache is off."""
    root = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "elder")
    return None if root == "off" else Path(root) / kind
