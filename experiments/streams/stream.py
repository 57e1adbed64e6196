"""An edit stream: the edits, batch after batch, and the probes that evaluate them."""

from __future__ import annotations

from dataclasses import dataclass

from elder.editor import EditRecord


@dataclass(frozen=True)
class Probe:
    """One evaluated (prompt, target) pair of a stream."""

    prompt: str
    target: str
    case_id: int = -1
    # CounterFact's neighborhood prompts: the new target of the case's edit. The neighborhood
    # score asks whether the edited model still prefers ``target`` (the truth) over it.
    alt: str = ""


Probes = dict[str, list[Probe]]  # split ("edit", "rephrase", "locality") -> probes


def edit_probes(records: list[EditRecord]) -> list[Probe]:
    """Each record's own edit prompt and target."""
    return [Probe(r.prompt, r.target, r.case_id) for r in records]


def record_probes(records: list[EditRecord]) -> Probes:
    """Each record probed by its own prompt, rephrase and locality prompt."""
    return {
        "edit": edit_probes(records),
        "rephrase": [Probe(r.rephrase, r.target, r.case_id) for r in records],
        "locality": [Probe(r.loc_prompt, r.loc_target, r.case_id) for r in records],
    }


@dataclass
class EditStream:
    """A named edit stream, consumed batch after batch, and the probes that evaluate it."""

    name: str
    records: list[EditRecord]
    batch_size: int
    held_out: Probes | None = None  # explicit rephrase / locality probes (else the records')

    def probes(self) -> Probes:
        """The probes of every split: the edits themselves, then the held-out phrasings."""
        return {**record_probes(self.records), **(self.held_out or {})}

    def batches(self) -> list[list[EditRecord]]:
        return [
            self.records[i : i + self.batch_size]
            for i in range(0, len(self.records), self.batch_size)
        ]
