"""Tables 1, 3, 4 and 5: edit metrics, cost, the auxiliary-loss ablation and the sweeps."""

from __future__ import annotations

from typing import Any

from elder.allocation import capacity
from experiments.configs import CONF
from experiments.tables import paper
from experiments.tables.cells import Collector
from experiments.tables.names import (
    DATASETS,
    ELDER_LEGACY,
    ELDER_STUDY_BASE,
    METHOD_ROWS,
    MODELS,
    N_EDITS,
    PAPER_MODELS,
    PAPER_PROTOCOL_DATASETS,
    name,
)
from experiments.tables.render import Block, Num, Table
from experiments.tables.runs import Row, Runs, Spec, method_defaults

STUDY_NOTE = (
    "ELDER's rows here vary its pre-#23 defaults ("
    + ", ".join(f"`{k}={v}`" for k, v in ELDER_STUDY_BASE.items() if k.startswith("method."))
    + "): every such run was made before the reference's choices became the defaults."
)
NO_RUN = "n/a"  # a sweep value no 1000-edit stream fits (see the table's notes)
EDIT_METRICS = ["reliability", "generalization", "reliability_tok", "generalization_tok"]


def _paper_or_blank(model: str, *keys: str, **kw: float) -> Num | str:
    return paper.cell(*keys, **kw) if model in PAPER_MODELS else paper.NOT_REPORTED


def table1(runs: Runs) -> Table:
    """Reliability / generalization (and token accuracy, locality) per method, 1000 edits."""
    c = Collector(runs)
    blocks = []
    for data in DATASETS + PAPER_PROTOCOL_DATASETS:
        for model in MODELS:
            base = Spec.of(None, model, data, any_variant=True)
            ours = [c.cell(base, f"base_{m}") for m in EDIT_METRICS]
            body = [["Base", *ours, ""] + _paper(model, data, "base")]
            for method, label, extra in METHOD_ROWS:
                spec = Spec.of(method, model, data, overrides=extra)
                ours = [c.cell(spec, m) for m in [*EDIT_METRICS, "locality"]]
                body.append([name(label), *ours] + _paper(model, data, label))
            blocks.append(Block(f"{name(data)} · {name(model)}", body))
    return c.table(
        name="table1",
        title=f"Table 1: lifelong editing after {N_EDITS} edits (%, after the whole stream)",
        header=[
            "Method",
            "Rel. (ours)",
            "Gen. (ours)",
            "Rel. tok (ours)",
            "Gen. tok (ours)",
            "Loc. (ours)",
            "Rel. (paper)",
            "Gen. (paper)",
        ],
        blocks=blocks,
        notes=[
            "Rel./Gen.: share of edits / rephrases whose every target token is the argmax "
            "(exact match, the paper's metric); tok: mean target-token accuracy; Loc.: share of "
            "locality prompts whose prediction is unchanged. Base: the unedited model "
            "(`base_*` columns of any run of that model and data). Paper: the ELDER paper's "
            "Table 1 (GPT2-XL and LLaMA2-7B only; it has no LEMoE). The .tex keeps Rel./Gen.",
            "Strict streams (ZsRE, CounterFact): one fact per edit. Paper protocol "
            "(`data=counterfact_paper`): each case's requested prompt and first paraphrase are "
            "edited under one label, its second paraphrase is Gen., its 10 neighborhood "
            "prompts are Loc. (agreement with the unedited model). ELDER: the reference "
            "defaults of issue #23; ELDER (pre-#23 defaults): "
            + " ".join(f"`{k}={v}`" for k, v in ELDER_LEGACY.items() if k.startswith("method."))
            + ", routing from the first MoLoRA block.",
        ],
        tex_columns=[0, 1, 2, 6, 7],
    )


def _paper(model: str, data: str, method: str) -> list[Num | str]:
    return [
        _paper_or_blank(model, "table1", data, model, metric, method)
        for metric in ("reliability", "generalization")
    ]


def _machine(row: Row) -> str:
    return row.get("machine", "") or "machine unknown"


def _speed_note(row: Row) -> str:
    """A run edited on several machines (resumed elsewhere) gives each one's own s/edit."""
    return row.get("edit_s_by_machine", "") or _machine(row)


def table3(runs: Runs) -> Table:
    """Seconds per edit and extra parameters per method and model (zsRE, 1000 edits)."""
    c = Collector(runs)
    header = ["Method"]
    for model in MODELS:
        header += [f"s/edit {name(model)}", f"#Param (M) {name(model)}"]
        if model in PAPER_MODELS:
            header += [f"s/edit {name(model)} (paper)", f"#Param (M) {name(model)} (paper)"]
    body = []
    for method, label, extra in METHOD_ROWS:
        row: list[Num | str] = [name(label)]
        for model in MODELS:
            spec = Spec.of(method, model, "zsre", overrides=extra)
            row.append(c.cell(spec, "s_per_edit", scale=1.0, note=_speed_note))
            row.append(c.cell(spec, "extra_params", scale=1e-6, note=_speed_note))
            if model in PAPER_MODELS:
                row.append(paper.cell("table3", model, label, "s_per_edit"))
                row.append(paper.cell("table3", model, label, "extra_params", scale=1e-6))
        body.append(row)
    return c.table(
        name="table3",
        title=f"Table 3: editing cost after {N_EDITS} zsRE edits",
        header=header,
        blocks=[Block("", body)],
        notes=[
            "s/edit: editing seconds per edit (`s_per_edit`, evaluation excluded); #Param: "
            "parameters the method adds, in millions (`extra_params`). Speeds depend on the "
            "machine (listed with each run). A run edited on several machines (resumed on "
            "another) shows its mean over all edits; its entry under Runs gives each "
            "machine's own s/edit. Paper: the ELDER paper's Table 3 (A40 GPU; GRACE and "
            "ELDER only).",
        ],
    )


AUX = [("guided", "ELDER"), ("none", "w/o guide"), ("balance", "w balancing")]


def table4(runs: Runs) -> Table:
    """ELDER's generalization with the guided loss, without it and with load balancing."""
    c = Collector(runs)
    default = method_defaults("elder")["aux_loss"]
    body = []
    for data in DATASETS:
        for model in MODELS:
            row: list[Num | str] = [f"{name(data)} · {name(model)}"]
            for aux, _ in AUX:
                extra = {} if aux == default else {"method.aux_loss": aux}
                spec = Spec.of("elder", model, data, overrides={**ELDER_STUDY_BASE, **extra})
                row.append(c.cell(spec, "generalization"))
            row += [_paper_or_blank(model, "table4", data, model, aux) for aux, _ in AUX]
            body.append(row)
    header = ["Setting"] + [f"{label} (ours)" for _, label in AUX]
    header += [f"{label} (paper)" for _, label in AUX]
    return c.table(
        name="table4",
        title="Table 4: ELDER generalization (%) while altering the auxiliary loss",
        header=header,
        blocks=[Block("", body)],
        notes=[
            "`method.aux_loss`: guided (the default run, no override), none (w/o guide), "
            "balance (the load-balancing loss of Fedus et al. 2021 instead). Paper: the ELDER "
            "paper's Table 4.",
            STUDY_NOTE,
        ],
    )


SWEEPS = [("k", "k"), ("N", "N"), ("lam", "λ"), ("eps", "ε")]


def _sweep_settings(runs: Runs) -> list[tuple[str, str]]:
    """(model, data) of the default setting and of every setting with a sweep run: an ELDER
    run that differs from the study configuration in swept keys only.

    Only runs on the table's stream count: a shorter one (a 200-edit diagnostic) fills no cell.
    """
    keys = {f"method.{hp}" for hp, _ in SWEEPS}
    found = {("smollm2_135m", "zsre")}
    for row in runs.rows():
        if row["method"] != "elder" or row["n"] != N_EDITS:
            continue
        study = Spec.of("elder", row["model"], row["data"], overrides=ELDER_STUDY_BASE)
        variant = runs.variant(row, against=study)
        if variant and set(variant) <= keys:
            found.add((row["model"], row["data"]))
    order = {(m, d): (DATASETS.index(d), MODELS.index(m)) for m in MODELS for d in DATASETS}
    return sorted((s for s in found if s in order), key=order.__getitem__)


def _shape(defaults: dict[str, Any], **values: int) -> tuple[int, int, int]:
    """ELDER's (L, N, k), ``values`` overriding the defaults."""
    layers, n, k = (int(values.get(hp, defaults[hp])) for hp in ("L", "N", "k"))
    return layers, n, k


def _sweep_variant(hp: str, value: float, defaults: dict[str, Any]) -> dict[str, Any] | None:
    """The overrides of one sweep cell, or None where no 1000-edit stream fits.

    ELDER gives each distinct label its own allocation, so a run needs C(N, k)^L of them for up
    to N_EDITS labels. A k that does not fit at the default N runs with the next tried N that
    fits; an N that does not fit at the default k has no run.
    """
    if value == defaults[hp]:
        return {}
    extra = {f"method.{hp}": value}
    if capacity(*_shape(defaults, **{hp: value})) >= N_EDITS:
        return extra
    if hp == "k":
        bigger = [
            n
            for n in paper.lookup("table5", "N") or []
            if capacity(*_shape(defaults, N=n, k=value)) >= N_EDITS
        ]
        if bigger:
            return {**extra, "method.N": min(bigger)}
    return None


def _no_fit_note(hp: str, value: float, defaults: dict[str, Any]) -> str:
    layers, n, k = _shape(defaults, **{hp: value})
    return (
        f"{hp}={value} has no run. ELDER gives each distinct label its own allocation; L={layers}, "
        f"N={n}, k={k} give C({n},{k})^{layers} = {capacity(layers, n, k)} of them, and a "
        f"{N_EDITS}-edit stream can have up to {N_EDITS} labels (ELDER refuses a stream with more "
        "labels than allocations before its first edit)."
    )


def table5(runs: Runs) -> Table:
    """ELDER over the paper's tried values of k, N, λ (edit metrics) and ε (with retention)."""
    c = Collector(runs)
    defaults = method_defaults("elder")
    blocks, no_fit = [], {}
    for model, data in _sweep_settings(runs):
        for hp, symbol in SWEEPS:
            body = []
            for value in paper.lookup("table5", hp) or []:
                extra = _sweep_variant(hp, value, defaults)
                if extra is None:
                    body.append([f"{symbol}={value}", NO_RUN, NO_RUN, ""])
                    no_fit.setdefault(_no_fit_note(hp, value, defaults), None)
                    continue
                full = hp == "eps"  # the paper chose ε by test retention
                spec = Spec.of(
                    "elder", model, data, overrides={**ELDER_STUDY_BASE, **extra}, full=full
                )
                label = f"{symbol}={value}" + (" (default)" if not extra else "")
                label += "".join(
                    f", {k.removeprefix('method.')}={v}"
                    for k, v in extra.items()
                    if k != f"method.{hp}"
                )
                cells = [c.cell(spec, "reliability"), c.cell(spec, "generalization")]
                cells.append(c.cell(spec, "retention", digits=1) if full else "")
                body.append([label, *cells])
            blocks.append(Block(f"{name(data)} · {name(model)} · {symbol}", body))
    sweeps = [hp for hp, _ in SWEEPS if (CONF / "sweep" / f"table5_{hp}.yaml").is_file()]
    notes = [
        "The paper gives only the values it tried (its Table 5), no results: it chose k, N "
        "and λ by generalization and ε by test retention on the general tasks, so the ε rows "
        "come from `eval=full` runs. The default row is the default run (no override).",
        STUDY_NOTE,
    ]
    if sweeps:
        notes.append(
            "A whole sweep: "
            + ", ".join(f"`python run.py -m +sweep=table5_{hp}`" for hp in sweeps)
            + " (conf/sweep/)."
        )
    notes += [f"{NO_RUN}: {note}" for note in no_fit]
    notes.append(
        "ε acts only at inference, so an ε row needs no editing of its own: "
        "`python -m experiments.tools.variant <default eval=full run saved with save=true> "
        "method.eps=<ε>` evaluates that run's saved edits with another ε, as a new run."
    )
    return c.table(
        name="table5",
        title="Table 5: ELDER hyperparameter sweeps (%)",
        header=["Value", "Rel. (ours)", "Gen. (ours)", "Test retention (ours)"],
        blocks=blocks,
        notes=notes,
    )
