"""ELDER variants for runner tests: one that pauses mid-stream (to be killed), one that diverges.

They are reached as ``method._target_=tests.experiments.fakes.<Name>``, the way any method is.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from elder import ELDER

PAUSE = "ELDER_TEST_PAUSE"  # "<batch>:<start|middle>:<marker file>", batch 0-based
STOP_BATCH = "ELDER_TEST_NAN_BATCH"


class PausingELDER(ELDER):
    """ELDER that, if $ELDER_TEST_PAUSE asks, writes a marker file and sleeps in one batch.

    ``start``: before the batch changes anything (between batches); ``middle``: after half
    of the batch's iterations (the editor's state is then half-trained).
    """

    def edit(self, batch):
        self._batch = len(self.codes) // len(batch)  # batches edited so far (equal sizes)
        self._iteration = 0
        self._pause_if("start")
        return super().edit(batch)

    def aux_loss(self, scores, preset):
        self._iteration += 1
        if self._iteration == self.config.iterations // 2 + 1:
            self._pause_if("middle")
        return super().aux_loss(scores, preset)

    def _pause_if(self, phase: str) -> None:
        spec = os.environ.get(PAUSE)
        if not spec:
            return
        batch, when, marker = spec.split(":", 2)
        if int(batch) == self._batch and when == phase:
            Path(marker).write_text(f"{batch}:{phase}")
            time.sleep(600)  # the test kills the process here


class DivergingELDER(ELDER):
    """ELDER whose training statistics become NaN at batch $ELDER_TEST_NAN_BATCH (0-based)."""

    def edit(self, batch):
        index = len(self.codes) // len(batch)
        stats = super().edit(batch)
        if index == int(os.environ.get(STOP_BATCH, "-1")):
            stats["loss"] = float("nan")
        return stats
