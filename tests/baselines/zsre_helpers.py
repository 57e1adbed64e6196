"""Shared by the baseline tests: a few zsRE records and the teacher-forced argmax check."""

from __future__ import annotations

import torch
from hydra.utils import instantiate

from elder.editor import Editor, EditRecord
from elder.encoding import encode
from tests.conftest import compose_cfg


def records(n: int = 4) -> list[EditRecord]:
    return instantiate(compose_cfg(f"data.n_edits={n}").data).records


def target_is_argmax(editor: Editor, record: EditRecord) -> bool:
    """Every target token of the edit prompt is the edited model's teacher-forced argmax."""
    enc = encode(editor.model.tokenizer, [record.prompt], [record.target])
    logits = editor.forward(enc).logits[enc.target_mask]
    return bool(torch.equal(logits.argmax(-1), enc.target_ids))


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.hf.state_dict().items()}
