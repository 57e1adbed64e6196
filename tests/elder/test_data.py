"""Data that fetches itself: data dir, then user cache, then the public source, checked."""

from __future__ import annotations

import hashlib
import http.server
import os
import sys
import threading
from pathlib import Path

import pytest

from elder.data import data_file, data_folder, sources
from elder.data.sources import Source
from experiments.runner import run
from tests.conftest import compose_cfg, real_data

CONTENT = b'[{"src": "a"}]\n'
SHA = hashlib.sha256(CONTENT).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``/ok/<name>`` with CONTENT and ``/cut/<name>`` announcing more than it sends."""

    served: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.served.append(self.path)
        if self.path.startswith("/ok/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(CONTENT)))
            self.end_headers()
            self.wfile.write(CONTENT)
        elif self.path.startswith("/cut/"):
            self.send_response(200)
            self.send_header("Content-Length", str(10 * len(CONTENT)))
            self.end_headers()
            self.wfile.write(CONTENT)  # then the connection closes
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mirror(monkeypatch, tmp_path):
    """A loopback HTTP server as ``$ELDER_DATA_MIRROR``, an empty cache, no data dir."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Handler.served = []
    monkeypatch.setenv("ELDER_DATA_MIRROR", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("ELDER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ELDER_DATA_DIR", raising=False)
    yield tmp_path / "cache" / "data"
    server.shutdown()


def source(monkeypatch, path: str, url_path: str, sha256: str = SHA) -> None:
    monkeypatch.setitem(sources.SOURCES, path, Source(f"https://example.org{url_path}", sha256))


def test_a_missing_file_is_downloaded_into_the_cache_once(mirror, monkeypatch):
    source(monkeypatch, "set/a.json", "/ok/a.json")
    assert data_file("set/a.json") == mirror / "set" / "a.json"
    assert (mirror / "set" / "a.json").read_bytes() == CONTENT
    assert data_file("set/a.json") == mirror / "set" / "a.json"
    assert Handler.served == ["/ok/a.json"]  # the second call read the cache


def test_a_file_in_the_data_dir_is_read_from_there(mirror, monkeypatch, tmp_path):
    source(monkeypatch, "set/a.json", "/ok/a.json")
    (tmp_path / "data" / "set").mkdir(parents=True)
    (tmp_path / "data" / "set" / "a.json").write_bytes(b"[]")
    monkeypatch.setenv("ELDER_DATA_DIR", str(tmp_path / "data"))
    assert data_file("set/a.json") == tmp_path / "data" / "set" / "a.json"
    assert Handler.served == []


def test_a_download_with_the_wrong_checksum_leaves_nothing_in_the_cache(mirror, monkeypatch):
    source(monkeypatch, "set/a.json", "/ok/a.json", sha256="0" * 64)
    with pytest.raises(FileNotFoundError, match=r"sha256 .* is not the pinned 0{64}"):
        data_file("set/a.json")
    assert not (mirror / "set" / "a.json").exists()
    assert not [p for p in (mirror / "set").iterdir()]  # no temporary file either


def test_an_interrupted_download_leaves_nothing_in_the_cache(mirror, monkeypatch):
    source(monkeypatch, "set/a.json", "/cut/a.json")
    with pytest.raises(FileNotFoundError, match="downloading it failed"):
        data_file("set/a.json")
    assert not (mirror / "set" / "a.json").exists()
    assert not [p for p in (mirror / "set").iterdir()]


def test_offline_the_error_names_the_file_every_place_looked_and_the_url(mirror, monkeypatch):
    monkeypatch.setenv("ELDER_DATA_MIRROR", "http://127.0.0.1:9")  # the discard port: refused
    source(monkeypatch, "set/a.json", "/ok/a.json")
    with pytest.raises(FileNotFoundError) as err:
        data_file("set/a.json")
    message = str(err.value)
    assert "'set/a.json'" in message and "$ELDER_DATA_DIR (not set)" in message
    assert str(mirror / "set" / "a.json") in message
    assert "http://127.0.0.1:9/ok/a.json" in message and "\n" not in message


def test_a_file_without_a_public_source_says_so_and_how_to_provide_it(mirror, monkeypatch):
    monkeypatch.setitem(sources.NO_SOURCE, "set/b.json", "only in a zip; place it by hand")
    with pytest.raises(FileNotFoundError, match="no direct download: only in a zip"):
        data_file("set/b.json")


def test_a_folder_is_fetched_file_by_file(mirror, monkeypatch):
    monkeypatch.setitem(sources.FOLDERS, "set/dir", ["x.txt", "y.txt"])
    source(monkeypatch, "set/dir/x.txt", "/ok/x.txt")
    source(monkeypatch, "set/dir/y.txt", "/ok/y.txt")
    folder = data_folder("set/dir")
    assert sorted(p.name for p in folder.glob("*.txt")) == ["x.txt", "y.txt"]
    assert data_folder("set/dir") == folder and len(Handler.served) == 2


@real_data
@pytest.mark.parametrize("path", sorted(p for p in sources.SOURCES if "/test-dialogue/" not in p))
def test_every_pinned_checksum_is_the_hash_of_the_file_in_the_data_dir(path):
    file = Path(os.environ["ELDER_DATA_DIR"]) / path
    if not file.is_file():
        pytest.skip(f"{file} is not here")
    assert hashlib.sha256(file.read_bytes()).hexdigest() == sources.SOURCES[path].sha256


@real_data
def test_the_dialogue_manifest_pins_every_file_in_the_data_dir():
    folder = Path(os.environ["ELDER_DATA_DIR"]) / "tasks" / "test-dialogue"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not here")
    here = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("dev_*.txt")}
    pinned = {name: sources.SOURCES[f"tasks/test-dialogue/{name}"].sha256 for name in here}
    assert here == pinned and sorted(here) == sorted(sources.FOLDERS["tasks/test-dialogue"])


def test_a_run_edits_a_stream_it_downloads_from_a_mirror(mirror, monkeypatch, tmp_path):
    zsre = b'[{"subject": "Paris", "src": "Where is Paris?", "rephrase": "Paris is in?", '
    zsre += b'"alt": "Spain", "loc": "nq question: who?", "loc_ans": "me"}]\n'
    monkeypatch.setattr(sys.modules[__name__], "CONTENT", zsre)
    source(monkeypatch, "zsre/zsre_mend_eval_portability_gpt4.json", "/ok/zsre.json",
           hashlib.sha256(zsre).hexdigest())  # fmt: skip
    cfg = compose_cfg("model=tiny_llama", f"results_dir={tmp_path / 'results'}", "logger=none",
                      "data.n_edits=1", "method.iterations=2", "eval.batch_size=8")  # fmt: skip
    row = run(cfg)
    assert row["n_edits"] == 1 and Handler.served == ["/ok/zsre.json"]
    assert (mirror / "zsre" / "zsre_mend_eval_portability_gpt4.json").read_bytes() == zsre
