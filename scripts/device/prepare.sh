#!/usr/bin/env bash
# Build .device/ here: what the GPU machine needs and cannot download (no network there).
#
#   bash scripts/device/prepare.sh          # after your last commit: rows record that commit
#
# A device call carries at most 64 MiB together with the working tree, and SmolLM2's GGUF alone
# is 94 MiB, so it travels in two parts over two calls on the same warm machine (it goes back
# 30 s after a call: make the second call at once). See scripts/device/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DATA=${ELDER_DATA_DIR:-../shared/data}
D=.device
version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }

rm -rf "$D" && mkdir -p "$D/whl" "$D/data"
# Pure-Python packages the device image lacks (it has torch, transformers, peft, sklearn, ...).
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux2014_x86_64 -d "$D/whl" \
  "hydra-core==$(version hydra-core)" "omegaconf==$(version omegaconf)" \
  "gguf==$(version gguf)" "nltk==$(version nltk)" \
  "pytest==$(version pytest)" "pluggy==$(version pluggy)" "iniconfig==$(version iniconfig)"
# Published as source only: built into wheels here.
"$PY" -m pip wheel -q --no-deps -w "$D/whl" "antlr4-python3-runtime==$(version antlr4-python3-runtime)" \
  "rouge-score==$(version rouge-score)" "seqeval==$(version seqeval)"
cp -r "$DATA/zsre" "$DATA/tasks" "$DATA/README.md" "$D/data/"
# SERAC's, T-Patcher's and WISE's data besides the stream (4 MB): the bench runs them too.
mkdir -p "$D/data/counterfact" && cp "$DATA/counterfact/counterfact-train.json" "$D/data/counterfact/"
# The tokenizer alone (ELDER_TOKENIZER_DIR) lets the first call run the random-weight models.
"$PY" -c "from elder.models import gguf_tokenizer; gguf_tokenizer().save_pretrained('$D/tokenizer')"
gguf=$("$PY" -c "from elder.models import GGUF_TOKENIZER, packaged_file as f; print(f(GGUF_TOKENIZER))")
head -c 34M "$gguf" > "$D/gguf.part1"
tail -c +$((34 * 1024 * 1024 + 1)) "$gguf" > "$D/gguf.part2"
cmp <(cat "$D/gguf.part1" "$D/gguf.part2") "$gguf"
basename "$gguf" > "$D/gguf.name"
git rev-parse --short HEAD > "$D/commit"
du -sh "$D"/*
echo "carry in call 1: .device/whl .device/data .device/tokenizer .device/commit .device/gguf.part1 .device/gguf.name"
echo "  (issue #29 alone, random weights: .device/whl .device/data .device/tokenizer .device/commit)"
echo "carry in call 2: .device/gguf.part2"
