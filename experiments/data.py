"""Edit streams: the edits (:class:`EditRecord`) and the probes that evaluate them.

A stream is edited record by record; it is evaluated on its probes, one list of
(prompt, target) pairs per split. By default a record is probed by its own prompt, rephrase
and locality prompt; a stream whose facts come in several phrasings (``counterfact_paper``,
``zsre_balanced``) holds its generalization and locality probes out explicitly.

Files are found by :func:`elder.data.data_file`: ``$ELDER_DATA_DIR``, the user cache, or their
public source (see docs/usage.md, "Data").
"""

from __future__ import annotations

from typing import Any

from elder.data import DATA_ENV, data_file
from experiments.streams.counterfact import counterfact
from experiments.streams.counterfact_paper import counterfact_paper
from experiments.streams.files import MAX_FIELD_CHARS
from experiments.streams.stream import EditStream, Probe, Probes, record_probes
from experiments.streams.zsre import zsre
from experiments.streams.zsre_balanced import zsre_balanced

__all__ = [
    "DATA_ENV",
    "MAX_FIELD_CHARS",
    "READERS",
    "EditStream",
    "Probe",
    "Probes",
    "data_file",
    "load_stream",
    "record_probes",
]

READERS = {
    "zsre": zsre,
    "counterfact": counterfact,
    "counterfact_paper": counterfact_paper,
    "zsre_balanced": zsre_balanced,
}


def load_stream(
    name: str, n_edits: int, batch_size: int, path: str | list[str], **options: Any
) -> EditStream:
    """Read ``n_edits`` edits of data set ``name`` (a key of READERS).

    ``options`` are the reader's own keys of the data config (e.g. ``shuffle_seed``). A reader
    returns the records, or the records and their held-out probes.
    """
    if name not in READERS:
        raise ValueError(f"unknown data set '{name}'; known: {sorted(READERS)}")
    if batch_size < 1:
        raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
    paths = (path,) if isinstance(path, str) else tuple(path)
    read = READERS[name](paths, n_edits, **options)
    records, held_out = read if isinstance(read, tuple) else (read, None)
    return EditStream(name, records, batch_size, held_out)
