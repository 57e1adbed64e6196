"""`make bench`: seconds per edit of each method on the same stream, measured side by side.

Some methods also run twice, computing the same edits two ways (``PAIRS``): ELDER on the
plain full-forward path and on the fast path (cached frozen prefix, logits at target positions
only), and on a GPU eagerly and as CUDA-graph replays (ELDER and ELDER+); GRACE training its
values one edit after another and batched; ROME and AlphaEdit fitting v* with full forwards
and with the tokens before each row's subject frozen. Each pair agrees up to float
rounding, which compounds over the stream's steps; the bench prints the speed-up, the largest
difference of the trained tensors and (ELDER) whether the stored allocation codes agree.

    python -m experiments.bench --n-edits 100 --methods elder_plain,elder   # default: all
    python -m experiments.bench --n-edits 20 --methods grace_one_by_one,grace
    python -m experiments.bench --n-edits 5 --methods rome_plain,rome

Every method edits a fresh copy of the same model with the same ``--n-edits`` edits. The report is
rewritten after each method, so a long bench (ROME on a CPU) keeps what it has timed. Beside
s/edit it gives each method's inference time against the unedited model's on the stream's
prompts and, on a GPU, its peak memory. On a GPU, ELDER also runs with its iterations replayed
as a CUDA graph (``elder_graph``, ``method.step=cuda_graph``), paired with the eager path:

    python -m experiments.bench --device cuda --models gpt2_xl_random,llama2_7b_random --n-edits 20
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from hydra.utils import instantiate

from experiments.configs import compose
from experiments.profiling import activities, self_seconds, top_ops
from experiments.results import machine, write_text
from experiments.runner import seed_everything

# name -> overrides of the run config; each pair of PAIRS is one method computed two ways.
VARIANTS = {
    "elder_plain": ["method=elder", "method.fast_path=false"],
    "elder": ["method=elder"],
    "elder_graph": ["method=elder", "method.step=cuda_graph"],  # issue #29; CUDA only
    "elder_plus": ["+preset=elder_plus"],  # ELDER+ (issue #24), beside faithful ELDER
    "elder_plus_graph": ["+preset=elder_plus", "method.step=cuda_graph"],
    "grace_one_by_one": ["method=grace", "method.batched=false"],
    "grace": ["method=grace"],
    "rome_plain": ["method=rome", "method.fast_path=false"],
    "rome": ["method=rome"],
    "alphaedit_plain": ["method=alphaedit", "method.fast_path=false"],
    "alphaedit": ["method=alphaedit"],
}
PAIRS = {
    ("elder_plain", "elder"): "ELDER fast path",
    ("elder", "elder_graph"): "ELDER CUDA graph",
    ("elder_plus", "elder_plus_graph"): "ELDER+ CUDA graph",
    ("grace_one_by_one", "grace"): "GRACE batched values",
    ("rome_plain", "rome"): "ROME frozen past",
    ("alphaedit_plain", "alphaedit"): "AlphaEdit frozen past",
}


def trained(editor) -> dict[str, torch.Tensor]:
    """What an editor has trained or stored (its ``state()`` tensors, optimizer moments left
    out), on the CPU, to compare two ways of editing."""
    tensors, _ = editor.state()
    return {k: t.detach().cpu() for k, t in tensors.items() if not k.startswith("optimizer.")}


def sync() -> None:
    """Wait for queued GPU work, which belongs to what is being timed."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_stream(editor, batches) -> float:
    """Seconds per edit of ``editor`` over ``batches``."""
    start = time.perf_counter()
    for batch in batches:
        editor.edit(batch)
    editor.flush()  # edits a method still holds back belong to the stream
    sync()
    return (time.perf_counter() - start) / sum(len(b) for b in batches)


ALL = (
    "elder_plain,elder,elder_graph,elder_plus,elder_plus_graph,grace_one_by_one,grace,serac,defer,"
    "melo,lemoe,lora,ft_l,rome,wilke,t_patcher,alphaedit,wise"
)
CUDA_ONLY = {"elder_graph", "elder_plus_graph"}
INFERENCE_BATCH = 20  # prompts of the stream in the inference-time batch


@dataclass
class Row:
    name: str
    s_per_edit: float
    extra_params: int
    inference: float  # the edited model's forward time over the unedited model's
    peak_gib: float | None  # GPU memory at the peak: the model copy and the method's work
    profile: list[str] | None = None  # --profile: where one more batch's edit spends its time


def forward_seconds(forward, reps: int = 10) -> float:
    """Median seconds of ``forward()`` over ``reps`` calls, after one warm-up."""
    forward()
    times = []
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        forward()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def profiled_edit(editor, batch) -> list[str]:
    """Markdown lines: one more edit of ``batch`` under torch.profiler, its host and device
    self time (a launch-bound step has far more of the first) and its top ops on each."""
    with torch.profiler.profile(activities=activities()) as profile:
        editor.edit(batch)
        sync()
    host, device = self_seconds(profile, "cpu"), self_seconds(profile, "device")
    lines = [f"one batch of {len(batch)}: host {host:.3f} s, device {device:.3f} s (self time)"]
    for on in ("cpu", "device") if device else ("cpu",):
        lines += ["", f"| op ({on}) | share |", "|---|---|", *top_ops(profile, 8, on)]
    return lines


def inference_ratio(editor, base, records) -> float:
    """The edited model's teacher-forced forward time over the unedited model's, on one batch
    of the stream's prompts (with the method's routing, deferral or look-up)."""
    enc = editor.encode(records)
    with torch.no_grad():
        unedited = forward_seconds(
            lambda: base.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask)
        )
    return forward_seconds(lambda: editor.forward(enc)) / unedited


def report(
    args,
    model: str,
    stream_name: str,
    rows: list[Row],
    editors: dict,
    skipped: list[str],
    failed: dict[str, str] | None = None,
) -> str:
    """The bench's markdown: one row per method timed so far, then the paired path checks."""
    lines = [
        f"# Bench: s/edit over a {args.n_edits}-edit {stream_name} stream on {model}",
        "",
        f"- command: `python -m experiments.bench --n-edits {args.n_edits} "
        f"--models {args.models} --device {args.device} --methods {args.methods}"
        + (" --profile`" if args.profile else "`"),
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {machine()} "
        f"({platform.processor() or platform.machine()}), torch {torch.__version__}, torch "
        f"threads {torch.get_num_threads()}",
        "",
        "| method | s/edit | extra params | inference / unedited | peak GPU memory (GiB) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.name} | {r.s_per_edit:.3f} | {r.extra_params:,} | {r.inference:.3f} | "
        + (f"{r.peak_gib:.2f} |" if r.peak_gib is not None else "— |")
        for r in rows
    ]
    lines += [
        "",
        "*inference / unedited*: the edited model's teacher-forced forward time on the "
        f"stream's first {INFERENCE_BATCH} prompts in one batch (with the method's routing, "
        "deferral or look-up) over the unedited model's; median of 10. *Peak GPU memory*: "
        "the edited copy of the model and the method's working set at their peak (the "
        "unedited original the bench keeps is not counted).",
    ]
    if skipped:
        lines += ["", f"Not run here (they need a CUDA device): {', '.join(skipped)}."]
    for name, error in (failed or {}).items():
        lines += ["", f"**{name} failed**: {error}"]
    for r in rows:
        if r.profile:
            lines += ["", f"**{r.name}**, profiled (`--profile`): {r.profile[0]}", *r.profile[1:]]
    ratios = speedups(rows)
    for (slow, fast), label in PAIRS.items():
        if slow not in editors or fast not in editors:
            continue
        a, b = editors[fast], editors[slow]
        floats = [k for k in a if a[k].is_floating_point()]
        diff = max(((a[k] - b[k]).abs().max().item() for k in floats if a[k].numel()), default=0)
        line = (
            f"{label} speed-up: **{ratios[label]:.2f}x** ({slow} / {fast}); "
            f"largest difference of trained tensors between them: {diff:.2e}"
        )
        if "codes" in a:  # ELDER's stored allocation codes (uint8, bit-packed)
            line += f"; identical allocation codes: {torch.equal(a['codes'], b['codes'])}"
        lines += ["", line]
    timed = {r.name for r in rows}
    if timed & {"rome", "alphaedit", "wilke"}:
        lines += [
            "",
            "ROME's, WilKE's and AlphaEdit's s/edit include their one-time work for the stream: "
            "the random prefixes and, unless cached under `stats_dir`, the second moment C of "
            "their layers' keys (AlphaEdit: and its null-space projections).",
        ]
    if "t_patcher" in timed:
        lines += [
            "",
            "T-Patcher's s/edit includes building its memory sets once per stream: the FFN "
            "inputs of `2 x memory_size` CounterFact cases.",
        ]
    return "\n".join(lines) + "\n"


def speedups(rows: list[Row]) -> dict[str, float]:
    """Each pair of PAIRS timed so far: its label -> the slow path's s/edit over the fast's."""
    seconds = {r.name: r.s_per_edit for r in rows}
    return {
        label: seconds[slow] / seconds[fast]
        for (slow, fast), label in PAIRS.items()
        if slow in seconds and fast in seconds
    }


def record(args, model: str, cuda: bool, rows: list[Row], failed: dict[str, str]) -> str:
    """The bench's JSON twin of its report, which the tables read (Table 3 on the GPU)."""
    return json.dumps(
        {
            "model": model,
            "n_edits": args.n_edits,
            "inference_batch": INFERENCE_BATCH,
            "device": "cuda" if cuda else "cpu",
            "methods": args.methods.split(","),
            "failed": failed,
            "machine": machine(),
            "torch": torch.__version__,
            "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
            "rows": [{k: v for k, v in asdict(r).items() if k != "profile"} for r in rows],
            "speedups": speedups(rows),
        },
        indent=1,
    )


def bench_model(args, model_name: str, names: list[str]) -> tuple[Path, list[str]]:
    """Time every method of ``names`` on one model; returns the report's path and the methods
    that failed (each named in the report with its error)."""
    model_args = [f"model={model_name}", f"model.device={args.device}"]
    base_cfg = compose([*model_args, f"data.n_edits={args.n_edits}"])
    stream = instantiate(base_cfg.data)
    model = instantiate(base_cfg.model)
    cuda = model.device.type == "cuda"
    out = Path(args.out) / f"{model_name}_{args.n_edits}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    editors = {}  # the trained tensors of each variant in PAIRS, for their comparison
    skipped = [name for name in names if name in CUDA_ONLY and not cuda]
    failed: dict[str, str] = {}
    for name in (n for n in names if n not in skipped):
        cfg = compose(
            [*model_args, f"data.n_edits={args.n_edits}", *VARIANTS.get(name, [f"method={name}"])]
        )
        seed_everything(cfg.seed)
        if cuda:
            gc.collect()  # the previous method's copy of the model, freed before `before`
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()  # the unedited original
        editor = None
        try:
            editor = instantiate(cfg.method, _partial_=True)(model=copy.deepcopy(model))
            editor.check_stream(stream.records)  # as the runner does, before any edit
            s = time_stream(editor, stream.batches())
            peak = (torch.cuda.max_memory_allocated() - before) / 2**30 if cuda else None
            params = editor.extra_params()  # before --profile's extra edit
            ratio = inference_ratio(editor, model, stream.records[:INFERENCE_BATCH])
            if name in VARIANTS:  # keep what is compared, not the model copy (one at a time)
                editors[name] = trained(editor)
            profile = profiled_edit(editor, stream.batches()[0]) if args.profile else None
        except Exception as e:  # one method's failure leaves the others' figures standing
            failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            print(f"{model_name} {name:>16}: failed, {failed[name]}", file=sys.stderr, flush=True)
        else:
            rows.append(Row(name, s, params, ratio, peak, profile))
            print(f"{model_name} {name:>16}: {s:.3f} s/edit, inference x{ratio:.3f}", flush=True)
        finally:
            del editor  # its copy of the model, before the next method's
        # A long bench (ROME on a CPU) keeps each row: the report and its record, rewritten.
        write_text(out, report(args, model_name, stream.name, rows, editors, skipped, failed))
        write_text(out.with_suffix(".json"), record(args, model_name, cuda, rows, failed))
    return out, list(failed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-edits", type=int, default=100)
    parser.add_argument("--models", default="smollm2_135m", help="comma-separated model configs")
    parser.add_argument("--device", default="auto", help="model.device: auto, cpu or cuda")
    parser.add_argument(
        "--methods",
        default=ALL,
        help=f"comma-separated method names or variants ({sorted(VARIANTS)})",
    )
    parser.add_argument(
        "--profile", action="store_true", help="profile one more batch's edit of each method"
    )
    parser.add_argument("--out", default="results/bench")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda, but torch sees no CUDA device")
    failed = []
    for model_name in args.models.split(","):
        out, errors = bench_model(args, model_name, args.methods.split(","))
        print(out.read_text())
        failed += [f"{model_name}: {name}" for name in errors]
    if failed:
        sys.exit(f"error: {len(failed)} method(s) failed (see the reports): {failed}")


if __name__ == "__main__":
    main()
