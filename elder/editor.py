"""The editor interface every method implements, and the records it consumes.

The runner only ever calls :meth:`Editor.edit` with a batch of :class:`EditRecord` and
:meth:`Editor.forward` with an :class:`Encoded` batch; nothing in it knows a method's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import StoppingCriteria, StoppingCriteriaList

from elder.encoding import Encoded, encode
from elder.models import LoadedModel

__all__ = [
    "EditRecord",
    "Editor",
    "Encoded",
    "ForwardOutput",
    "GenerateOutput",
    "check_subjects",
]


@dataclass(frozen=True)
class EditRecord:
    """One edit of a stream: the request and the prompts that evaluate it."""

    prompt: str  # edit request x_e
    target: str  # new answer y_e
    rephrase: str  # a semantically equivalent prompt (generalization)
    loc_prompt: str  # an unrelated prompt (locality)
    loc_target: str  # its answer
    subject: str = ""  # the entity the fact is about (ROME needs it)
    case_id: int = -1  # position in the source file
    # The fact the edit states: several phrasings of one fact share it ("identically labeled
    # edits" in ELDER). Empty: the record is a fact of its own, known by its prompt.
    fact: str = ""

    @property
    def label(self) -> str:
        """The edit's target label: edits with the same target share it (GRACE, MELO)."""
        return self.target

    @property
    def fact_label(self) -> str:
        """The edit's fact label: the phrasings of one fact share it (ELDER's default)."""
        return self.fact or f"prompt:{self.prompt}"


def check_subjects(method: str, records: list[EditRecord]) -> None:
    """A ValueError naming the first record whose subject is empty or not in its prompt."""
    for r in records:
        if not r.subject or r.subject not in r.prompt:
            raise ValueError(
                f"{method}: subject {r.subject!r} of record case_id={r.case_id} is not in its "
                f"prompt {r.prompt!r}"
            )


@dataclass
class ForwardOutput:
    """Teacher-forced logits of the edited model, plus per-example facts a method reports."""

    logits: torch.Tensor  # (B, T, V)
    info: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (B,)


@dataclass
class GenerateOutput:
    """Generated tokens (B, new) of the edited model, plus per-example facts a method reports."""

    tokens: torch.Tensor
    info: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class NoOptions:
    """The config of an editor that has no options (the unedited model in tests)."""


class Editor(ABC):
    """A lifelong editor: owns the model, takes edit batches one after another.

    Constructing an editor may wrap modules of the model but must leave the model's function
    unchanged until the first :meth:`edit`.
    """

    name: ClassVar[str]  # the method's name in configs and results
    # The dataclass of the method's hyperparameters: the editor is built with its fields, and
    # it is the schema of ``conf/method/<name>.yaml`` (types checked when Hydra composes).
    config_class: ClassVar[type] = NoOptions
    # Config fields that only change how the edited model answers, not what edit() trains:
    # a saved run can be evaluated again with other values (``experiments.tools.variant``).
    inference_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, model: LoadedModel, **config: Any) -> None:
        self.model = model
        self.config = self.config_class(**config)  # the dataclass checks its own values

    @classmethod
    def upgrade_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """A method config read from an older run folder, in today's keys and meaning.

        Options added after a run keep the value that run ran with; by default none changed.
        """
        return config

    @property
    def hf(self) -> nn.Module:
        return self.model.hf

    def encode(self, records: list[EditRecord]) -> Encoded:
        """A batch of edits, prompt -> target, right-padded on the model's device."""
        return encode(
            self.model.tokenizer,
            [r.prompt for r in records],
            [r.target for r in records],
            self.model.device,
        )

    def check_stream(self, records: list[EditRecord]) -> None:
        """Raise ``ValueError`` now, before any edit, if this editor cannot take the stream."""
        return None  # by default any stream will do

    @abstractmethod
    def edit(self, batch: list[EditRecord]) -> dict[str, float]:
        """Apply one batch of edits; returns training statistics (e.g. final loss)."""

    def flush(self) -> dict[str, float]:
        """Apply the edits taken so far that a method still holds back; statistics as ``edit``.

        A method that plans its own order (LEMoE's K-means) buffers edits; the runner calls
        this once after the last batch, before the edited model is saved or evaluated. A
        checkpoint never does: :meth:`state` saves the buffer instead.
        """
        return {}

    @abstractmethod
    def extra_params(self) -> int:
        """Number of parameters the method adds to (or trains in) the base model."""

    @contextmanager
    def inference(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_last: torch.Tensor
    ) -> Iterator[dict[str, torch.Tensor]]:
        """The method's inference set-up around every forward pass of one batch: the
        teacher-forced pass of :meth:`forward`, or all decode steps of :meth:`generate`.

        ``input_ids``/``attention_mask`` (B, T) are the batch as it enters; ``prompt_last``
        (B,) is each row's last prompt token, where a method routes or looks up its key. The
        yielded dict is the output's ``info``: the method fills it with per-example facts
        (B,) by the end of the block. This is the one hook a method fills in; the plain model
        needs none.
        """
        yield {}

    @torch.no_grad()
    def forward(self, enc: Encoded) -> ForwardOutput:
        """Logits of the edited model under teacher forcing."""
        with self.inference(enc.input_ids, enc.attention_mask, enc.prompt_last) as info:
            logits = self.hf(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
        return ForwardOutput(logits, info)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        max_new_tokens: int,
        stop: StoppingCriteria | None = None,
    ) -> GenerateOutput:
        """Greedy continuation of *left*-padded prompts (B, T) by the edited model.

        The prompt's last token is column T-1 for every row; methods that route or look up a
        key at the last prompt token take it from there. A row ends at EOS, after
        ``max_new_tokens``, or where ``stop`` says it is done.
        """
        last = torch.full((input_ids.shape[0],), input_ids.shape[1] - 1, device=input_ids.device)
        with self.inference(input_ids, attention_mask, last) as info:
            sequences = self.hf.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.model.tokenizer.pad_token_id,
                stopping_criteria=None if stop is None else StoppingCriteriaList([stop]),
            )
        return GenerateOutput(sequences[:, input_ids.shape[1] :], info)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything :meth:`edit` has trained or accumulated, to checkpoint or save.

        Returns tensors (written as safetensors) and JSON-serialisable metadata; together with
        the base model they rebuild the edited model through :meth:`load_state`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not save its state yet")

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Restore what :meth:`state` returned (on an editor built with the same config)."""
        raise NotImplementedError(f"{type(self).__name__} does not load its state yet")
