"""Figures 2-4 as PNG: scalability curves (GRACE vs ELDER, ELDER per L) and the code t-SNE."""

from __future__ import annotations

import json
import shlex
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from experiments.tables.names import ELDER_PLUS, ELDER_STUDY_BASE, GRACE_LEGACY, name
from experiments.tables.runs import Runs, Spec, latest_per_seed, method_defaults

matplotlib.use("Agg")  # files only, no display

SETTING = ("smollm2_135m", "counterfact")  # (model, data) of Figures 2 and 3
CURVE_EDITS = 4000  # the stream the missing-run commands ask for (the paper's Fig. 2: 4000)
CURVE_ARGS = f"data.n_edits={CURVE_EDITS} eval.every=100"
# The paper's tried L are only in its Figure 3 (an image). L = 2 cannot run: with N = 4, k = 2
# it has C(4,2)^2 = 36 allocations for one per distinct label, and 200 CounterFact edits have more.
FIG3_L = (4, 6, 8)


Curve = tuple[str, list[dict[str, Any]]]  # (run id, points)


@dataclass
class Figure:
    """One figure: where it went (None: not written), what it shows, what would complete it."""

    name: str
    title: str
    path: Path | None = None
    runs: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # commands
    note: str = ""


def read_curve(file: Path) -> list[dict[str, Any]]:
    """The points of a ``curve.jsonl`` (bad lines skipped), by number of edits."""
    if not file.is_file():
        return []
    points = []
    for line in file.read_text().splitlines():
        try:
            point = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(point, dict) and isinstance(point.get("edits"), (int, float)):
            points.append(point)
    return sorted(points, key=lambda p: p["edits"])


def curves_by_stream(runs: Runs, spec: Spec) -> dict[int, list[Curve]]:
    """The spec's runs with a curve, by stream length (number of edits), latest per seed."""
    rows = runs.select(replace(spec, n_edits=None))
    points = {r: read_curve(runs.dir / r / "curve.jsonl") for r in rows["run_id"]}
    rows = rows[rows["run_id"].map(lambda r: bool(points[r])).astype(bool)]
    by_stream = {}
    for n, streams in rows.groupby("n"):
        latest = streams[streams.index.isin(latest_per_seed(streams).index)]  # in file order
        by_stream[int(n)] = [(r, points[r]) for r in latest["run_id"]]
    return by_stream


def find_curves(runs: Runs, spec: Spec) -> tuple[int, list[Curve]]:
    """The spec's curves on the longest stream any of its runs has (its number of edits; 0
    when there is none), latest per seed."""
    by_stream = curves_by_stream(runs, spec)
    n_edits = max(by_stream, default=0)
    return n_edits, by_stream.get(n_edits, [])


def shortfall(n_edits: int, seeds: dict[str, int], min_seeds: int) -> str:
    """What a figure drawn from the curves there are lacks: the paper's stream length, or
    ``min_seeds`` seeds for a line ("" when nothing)."""
    short = {line: n for line, n in seeds.items() if n < min_seeds}
    parts = [f"stream of {n_edits} edits (the paper's: {CURVE_EDITS})"]
    if short and min_seeds == 1:
        parts.append("no curve: " + ", ".join(short))
    elif short:
        parts.append(
            f"seeds below {min_seeds}: " + ", ".join(f"{k}: {n}" for k, n in short.items())
        )
    return "; ".join(parts) if n_edits < CURVE_EDITS or short else ""


def _band(curves: list[list[dict]], key: str, scale: float = 1.0) -> tuple[np.ndarray, ...]:
    """x, mean, min, max of ``key`` over the curves, at every x any curve has."""
    by_x: dict[float, list[float]] = {}
    for points in curves:
        for p in points:
            if isinstance(p.get(key), (int, float)):
                by_x.setdefault(p["edits"], []).append(p[key] * scale)
    xs = sorted(by_x)
    ys = [by_x[x] for x in xs]
    return (
        np.array(xs),
        np.array([np.mean(v) for v in ys]),
        np.array([min(v) for v in ys]),
        np.array([max(v) for v in ys]),
    )


def _plot(ax: plt.Axes, curves: list[list[dict]], key: str, label: str, scale: float) -> None:
    x, mean, lo, hi = _band(curves, key, scale)
    (line,) = ax.plot(x, mean, marker="o", markersize=3, label=f"{label} (n={len(curves)})")
    if len(curves) > 1:
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def _scalability(
    result: Figure, lines: dict[str, list[Curve]], n_edits: int, out_dir: Path
) -> Figure:
    """Reliability (left) and extra parameters (right) vs number of edits, one line each."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for method, curves in lines.items():
        points = [p for _, p in curves]
        _plot(left, points, "reliability", name(method), 100.0)
        _plot(right, points, "extra_params", name(method), 1e-6)
        result.runs += [run_id for run_id, _ in curves]
    left.set(xlabel="number of edits", ylabel="reliability (%)", title="Reliability")
    right.set(xlabel="number of edits", ylabel="extra parameters (M)", title="Parameters")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend()
    model, data = SETTING
    fig.suptitle(f"{name(data)} · {name(model)} · {n_edits} edits: mean over seeds, band = min–max")
    result.path = _save(fig, out_dir / f"{result.name}.png")
    return result


def _command(method_arg: str, overrides: dict[str, str]) -> str:
    model, data = SETTING
    return (
        f"python run.py -m {method_arg} model={model} data={data} {CURVE_ARGS} seed=0,1"
        + "".join(f" {shlex.quote(f'{k}={v}')}" for k, v in overrides.items())
    )


def fig2(runs: Runs, out_dir: Path) -> Figure:
    """Reliability and extra parameters vs number of edits, GRACE vs ELDER."""
    model, data = SETTING
    result = Figure("fig2_scalability", "Figure 2: editing scalability of GRACE and ELDER")
    specs = {
        # its curves predate issue #26: GRACE's prompt replacement of then (0..p)
        "grace_legacy": Spec.of("grace", model, data, overrides=GRACE_LEGACY),
        "elder": Spec.of("elder", model, data, overrides=ELDER_STUDY_BASE),
    }
    found = {m: find_curves(runs, spec) for m, spec in specs.items()}
    commands = [
        _command("method=grace", GRACE_LEGACY),
        _command("method=elder", ELDER_STUDY_BASE),
    ]
    n_edits = max(n for n, _ in found.values())
    if not n_edits:
        result.missing += commands
        return result
    # Both lines on the longest stream: a method with curves on a shorter one only is missing.
    found = {m: curves if n == n_edits else [] for m, (n, curves) in found.items()}
    result.note = shortfall(n_edits, {name(m): len(c) for m, c in found.items()}, min_seeds=2)
    result.missing = commands if result.note else []
    return _scalability(result, {m: c for m, c in found.items() if c}, n_edits, out_dir)


def fig2_plus(runs: Runs, out_dir: Path) -> Figure:
    """Figure 2 for ELDER+ (issue #24): the preset beside GRACE and faithful ELDER.

    A comparator without curves at today's defaults on the preset's stream is drawn from its
    pre-#23/#26 runs (Figure 2's), named as such, and its command is listed as missing.
    """
    model, data = SETTING
    result = Figure("fig2_elder_plus", "Figure 2 for ELDER+: scalability beside GRACE and ELDER")
    comparators = (  # (method, its Figure 2 line, that line's overrides)
        ("elder", "elder_legacy", ELDER_STUDY_BASE),
        ("grace", "grace_legacy", GRACE_LEGACY),
    )
    commands = [_command("+preset=elder_plus", {})]
    commands += [_command(f"method={method}", {}) for method, _, _ in comparators]
    n_edits, preset = find_curves(runs, Spec.of("elder", model, data, overrides=ELDER_PLUS))
    if not n_edits:
        result.missing = commands
        return result

    def on_stream(method: str, overrides: dict[str, str]) -> list[Curve]:
        spec = Spec.of(method, model, data, overrides=overrides)
        return curves_by_stream(runs, spec).get(n_edits, [])

    lines = {"elder_plus": preset}
    seeds = {name("elder_plus"): len(preset)}
    for method, legacy, overrides in comparators:
        current = on_stream(method, {})
        seeds[name(method)] = len(current)
        if current:
            lines[method] = current
        elif old := on_stream(method, overrides):
            lines[legacy] = old
    result.note = shortfall(n_edits, seeds, min_seeds=2)
    result.missing = commands if result.note else []
    return _scalability(result, lines, n_edits, out_dir)


def fig3_overrides(layers: int) -> dict[str, str]:
    """A Figure 3 run's overrides: L, with ε at the default's share of the L·N code bits.

    The paper does not say how ε moved with L; a fixed ε = 12 would defer more as L shrinks
    (at L = 2 it is not even allowed: L·N = 8 bits). So ε = 12·L/6 (= L·N/2 at N = 4).
    """
    defaults = method_defaults("elder")
    if layers == defaults["L"]:
        return dict(ELDER_STUDY_BASE)
    eps = round(defaults["eps"] * layers / defaults["L"])
    return {**ELDER_STUDY_BASE, "method.L": str(layers), "method.eps": str(eps)}


def fig3(runs: Runs, out_dir: Path) -> Figure:
    """ELDER reliability vs number of edits for each number of MoLoRA layers L."""
    model, data = SETTING
    result = Figure("fig3_layers", "Figure 3: ELDER reliability vs edits for each L")
    specs = {n: Spec.of("elder", model, data, overrides=fig3_overrides(n)) for n in FIG3_L}
    by_l = {n: curves_by_stream(runs, spec) for n, spec in specs.items()}
    # The stream on which the most values of L have a curve, the longer one on a tie: every L
    # on a short stream says more about L than the default's line alone on the paper's.
    lengths = {n for streams in by_l.values() for n in streams}
    n_edits = max(lengths, key=lambda n: (sum(n in s for s in by_l.values()), n), default=0)
    curves_by_l = {layers: s[n_edits] for layers, s in by_l.items() if n_edits in s}
    result.runs = [run_id for curves in curves_by_l.values() for run_id, _ in curves]
    lacking = [n for n in FIG3_L if max(by_l[n], default=0) < CURVE_EDITS]
    result.missing = [
        " ".join(
            [f"python run.py method=elder model={model} data={data} {CURVE_ARGS}"]
            + [f"{k}={v}" for k, v in fig3_overrides(n).items()]
        )
        for n in lacking
    ]
    if not n_edits:
        return result
    seeds = {f"L={n}": len(curves_by_l.get(n, [])) for n in FIG3_L}  # one run per L will do
    note = shortfall(n_edits, seeds, min_seeds=1)
    fig, ax = plt.subplots(figsize=(6, 4))
    defaults = method_defaults("elder")
    for layers, curves in curves_by_l.items():
        eps = float(fig3_overrides(layers).get("method.eps", defaults["eps"]))
        default = layers == defaults["L"]
        label = f"L={layers}, ε={eps:g}" + (" (default)" if default else "")
        _plot(ax, [p for _, p in curves], "reliability", label, 100.0)
    ax.set(xlabel="number of edits", ylabel="reliability (%)")
    ax.set_title(f"ELDER with different L · {name(data)} · {name(model)} · {n_edits} edits")
    ax.grid(alpha=0.3)
    ax.legend()
    result.note = "; ".join(filter(None, [note, "ε = 12·L/6"]))
    result.path = _save(fig, out_dir / f"{result.name}.png")
    return result


MARKERS = {"edit": "o", "rephrase": "^", "task": "x"}


def fig4(codes_file: Path, out_dir: Path) -> Figure:
    """t-SNE of the allocation codes of five edits, their rephrases and NQ task inputs."""
    result = Figure("fig4_codes_tsne", "Figure 4: t-SNE of ELDER's allocation codes")
    command = (
        "python -m experiments.elder_analysis.allocation_codes <ELDER run dir saved with save=true>"
    )
    try:
        data = json.loads(codes_file.read_text())
        points = [p for p in data["points"] if p.get("code")]
    except (OSError, ValueError, KeyError, TypeError):
        points = []
    if len(points) < 3:
        result.missing.append(command)
        return result
    # Slow to import: only when there is something to draw. One thread: ~30 points need no
    # more, and OpenMP threads on a busy machine made the fit take minutes instead of 1 s.
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    codes = np.array([p["code"] for p in points], dtype=float)
    perplexity = max(1.0, min(10.0, (len(points) - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, random_state=0, init="pca")
    with threadpool_limits(limits=1):
        xy = tsne.fit_transform(codes)  # (n_points, 2); squared distances of 0/1 codes = Hamming
    groups = list(dict.fromkeys(p["group"] for p in points))
    colors = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(groups)}
    # Identical codes land on one spot: the marker grows with, and is labelled by, their count.
    same = Counter((p["group"], p.get("kind"), tuple(p["code"])) for p in points)
    drawn = set()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for (x, y), p in zip(xy, points, strict=True):
        key = (p["group"], p.get("kind"), tuple(p["code"]))
        if key in drawn:
            continue
        drawn.add(key)
        marker = MARKERS.get(p.get("kind"), "s")
        ax.scatter(x, y, color=colors[p["group"]], marker=marker, s=40 * same[key])
        if same[key] > 1:
            ax.annotate(f"×{same[key]}", (x, y), textcoords="offset points", xytext=(8, 6))
    handles = [plt.Line2D([], [], color=colors[g], marker="o", ls="", label=g) for g in groups]
    kinds = [k for k in MARKERS if any(p.get("kind") == k for p in points)]
    handles += [plt.Line2D([], [], color="k", marker=MARKERS[k], ls="", label=k) for k in kinds]
    ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    title = f"Allocation codes (t-SNE), run {data.get('run_id', '?')}"
    hamming = [
        p["hamming_to_nearest_edit"]
        for p in points
        if p.get("kind") == "task" and "hamming_to_nearest_edit" in p
    ]
    if hamming:
        title += (
            f"\nNQ inputs: Hamming distance to the nearest edit code {min(hamming)}-{max(hamming)}"
        )
    ax.set(xticks=[], yticks=[], title=title)
    deferred = [p["deferred"] for p in points if p.get("kind") == "task" and "deferred" in p]
    if deferred:
        result.note = f"task inputs deferred: {sum(deferred)}/{len(deferred)}"
    result.runs = [str(data.get("run_id", ""))]
    result.path = _save(fig, out_dir / f"{result.name}.png")
    return result


def all_figures(runs: Runs, results: Path) -> list[Figure]:
    """Figures 2-4 into ``<results>/figures``; a figure without data is not written."""
    out_dir = results / "figures"
    figures = [
        fig2(runs, out_dir),
        fig2_plus(runs, out_dir),
        fig3(runs, out_dir),
        fig4(out_dir / "fig4_codes.json", out_dir),
    ]
    for figure in figures:
        stale = out_dir / f"{figure.name}.png"
        if figure.path is None and stale.is_file():
            stale.unlink()  # a figure from data that is gone would be misleading
    return figures
