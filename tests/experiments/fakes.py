"""Editors for runner tests: ones that stop mid-stream (to be killed), one that diverges.

They are reached as ``method._target_=tests.experiments.fakes.<Name>``, the way any method is.
Stop points are "<batch>:<phase>" with batch 0-based and phase ``start`` (before the batch
changes anything: between batches), ``middle`` (after half of the batch's iterations: the
state is half-trained) or ``eval`` (a forward of the final evaluation; batch ignored: the first
forward after an edit is that batch's immediate evaluation, so it never stops there).

``Killable<Class>`` exists for every registered method (``KillableLoRA``, ...): it stops at
phase ``trained``, after the batch's edit() and before the runner records it, so a kill there
loses the batch's training, as a kill inside any method's edit() would.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from baselines.registry import EDITORS
from elder import ELDER

PAUSE = "ELDER_TEST_PAUSE"  # "<batch>:<phase>:<marker file>": write the marker, then sleep
CRASH = "ELDER_TEST_CRASH"  # "<batch>:<phase>": raise SimulatedKill there
NAN_BATCH = "ELDER_TEST_NAN_BATCH"  # 0-based batch whose loss DivergingELDER reports as NaN


class SimulatedKill(BaseException):
    """Stands in for a SIGKILL in an in-process test (BaseException: nothing catches it)."""


def _stop_if(batch: int, phase: str) -> None:
    for variable in (PAUSE, CRASH):
        spec = os.environ.get(variable)
        if not spec:
            continue
        at, when, *marker = spec.split(":", 2)
        if when != phase or (phase != "eval" and int(at) != batch):
            continue
        if variable == CRASH:
            raise SimulatedKill(spec)
        Path(marker[0]).write_text(spec)
        time.sleep(3600)  # the test kills the process here


def _pausing(editor: type) -> type:
    """``editor`` that stops after training batch n (this process's n-th edit() call)."""

    def edit(self, batch):
        stats = editor.edit(self, batch)
        self._edits = getattr(self, "_edits", 0) + 1
        _stop_if(self._edits - 1, "trained")
        return stats

    return type(f"Killable{editor.__name__}", (editor,), {"edit": edit, "__module__": __name__})


for _editor in EDITORS.values():
    globals()[f"Killable{_editor.__name__}"] = _pausing(_editor)


class PausingELDER(ELDER):
    """ELDER that stops where $ELDER_TEST_PAUSE or $ELDER_TEST_CRASH say."""

    _batch = -1

    def edit(self, batch):
        self._batch = len(self.codes) // len(batch)  # batches edited so far (equal sizes)
        self._iteration = 0
        self._stop_if("start")
        self._just_edited = True
        return super().edit(batch)

    def aux_loss(self, scores, preset):
        self._iteration += 1
        if self._iteration == self.config.iterations // 2 + 1:
            self._stop_if("middle")
        return super().aux_loss(scores, preset)

    def forward(self, enc):
        if not getattr(self, "_just_edited", False):
            self._stop_if("eval")
        self._just_edited = False
        return super().forward(enc)

    def _stop_if(self, phase: str) -> None:
        _stop_if(self._batch, phase)


class DivergingELDER(ELDER):
    """ELDER whose training loss becomes NaN at batch $ELDER_TEST_NAN_BATCH (0-based)."""

    def edit(self, batch):
        index = len(self.codes) // len(batch)
        stats = super().edit(batch)
        if index == int(os.environ.get(NAN_BATCH, "-1")):
            stats["loss"] = float("nan")
        return stats
