"""Step strategies: how the one trainer turns a micro-batch of training examples into per-example losses.

A defense, an optimiser's objective or another model head is a strategy over the shared trainer, never
a second training loop. The trainer owns everything else (data order, micro-batching and its
world / batch_size scaling, DDP, clipping, the lr schedule, checkpoints, logging). A strategy says:

- `wrap(model)`: the module accelerate prepares; its forward is the one that runs the model, so DDP's
  hooks see it (a bare `model(...)` call inside a DDP-wrapped module would skip gradient sync);
- `losses(trainer, indices)`: `StepTerms` of the training examples `trainer.train_set[i]`: per-example
  losses (the trainer sums them, scales and backpropagates), per-example metrics (averaged over the
  global batch in the step's train record, names in `metrics`), and the number of real tokens;
- `needs_reference`: whether the trainer computes reference log-probs of the training set first;
- `scores_sequences`: whether the trainer's preference evaluation (`eval_sets`) applies;
- `step_gradients(trainer, micro, scale, weight)`: how a step's gradient is formed. The default
  backpropagates `losses` once per micro-batch (`trainer.backward_micro_batches`); a multi-pass
  defense (Vaccine, Booster: harmful_ft/defenses.py) runs its extra forward/backward passes here and
  leaves the parameters' `.grad` holding the step's gradient. The trainer then all-reduces the
  returned sums, clips and steps the optimizer, whatever the strategy.

`PreferenceStrategy` (the default) is the log-prob path of the preference losses and SFT
(`SequenceLogProbs` + `make_loss`); `ClassificationStrategy` trains a sequence classifier.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.logprobs import SequenceLogProbs
from common.losses import make_loss


class StepTerms(NamedTuple):
    losses: Tensor  # (n,) per-example losses, with grad
    metrics: dict[str, Tensor]  # name -> (n,) per-example values, detached
    tokens: Tensor  # scalar: real (non-padding) tokens in the forward


class StepStrategy:
    """Base class; see the module docstring."""

    metrics: tuple[str, ...] = ()
    needs_reference = False
    scores_sequences = False

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def losses(self, trainer, indices: Sequence[int]) -> StepTerms:
        raise NotImplementedError

    def step_gradients(self, trainer, micro: list[list[int]], scale: float, weight: float) -> Tensor:
        """Fill the parameters' `.grad` with the gradient of the step whose micro-batches (this
        process's share of the global batch) are `micro`; each example's loss counts `scale` times
        (DDP then averages over processes); return `trainer.backward_micro_batches`' sums."""
        return trainer.backward_micro_batches(micro, scale, weight)


class PreferenceStrategy(StepStrategy):
    """Summed completion log-probs of y+ (and y- when the loss uses it) in one forward, then the
    config's bound loss (`make_loss`) against the cached reference log-probs."""

    metrics = ("chosen_rewards", "rejected_rewards", "reward_margin", "reward_accuracy", "preferred_logprobs")
    scores_sequences = True

    def __init__(self, config):
        self.loss = make_loss(config)
        self.needs_reference = self.loss.needs_reference
        self.pack = getattr(config, "pack_sequences", False)

    def wrap(self, model: nn.Module) -> nn.Module:
        return SequenceLogProbs(model, pack=self.pack)

    def examples(self, trainer, indices: Sequence[int]) -> list:
        """The examples `indices` name: the training set's (a strategy that also trains on another set,
        e.g. Lisa's alignment steps, reads them from there)."""
        return [trainer.train_set[i] for i in indices]

    def losses(self, trainer, indices: Sequence[int]) -> StepTerms:
        from common.trainer import TRAIN  # local: the trainer imports this module

        examples = self.examples(trainer, indices)
        chosen, rejected, batch = trainer.policy_logps(examples, self.loss.needs_rejected)
        ref_chosen = ref_rejected = None
        if TRAIN in trainer.reference:
            ref_c, ref_r = trainer.reference[TRAIN]
            ref_chosen = ref_c[indices].to(trainer.device)
            ref_rejected = ref_r[indices].to(trainer.device) if ref_r is not None else None
        lengths = batch.completion_lengths.float()
        n = len(examples)
        losses, cr, rr = self.loss(chosen, rejected, ref_chosen, ref_rejected, lengths[:n],
                                   lengths[n:] if rejected is not None else None)
        metrics = {"chosen_rewards": cr, "rejected_rewards": rr, "reward_margin": cr - rr,
                   "reward_accuracy": (cr > rr).float(), "preferred_logprobs": chosen.detach()}
        return StepTerms(losses, metrics, batch.attention_mask.sum())


@dataclass
class ClassificationExample:
    """One labelled text as token ids, for `ClassificationStrategy`."""

    input_ids: list[int]
    label: int
    index: int = 0

    @property
    def length(self) -> int:
        return len(self.input_ids)


class ClassificationStrategy(StepStrategy):
    """Per-example cross-entropy of a sequence classifier (e.g. AutoModelForSequenceClassification)
    on `ClassificationExample`s; reference-free. Rows are right-padded with the tokenizer's pad id,
    which the classifier's config must know (it pools the last non-padding token)."""

    metrics = ("accuracy",)

    def losses(self, trainer, indices: Sequence[int]) -> StepTerms:
        examples = [trainer.train_set[i] for i in indices]
        width = max(e.length for e in examples)
        input_ids = torch.full((len(examples), width), trainer.pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, e in enumerate(examples):
            input_ids[row, :e.length] = torch.tensor(e.input_ids)
            attention_mask[row, :e.length] = 1
        labels = torch.tensor([e.label for e in examples], device=trainer.device)
        with trainer.autocast():
            logits = trainer.module(input_ids=input_ids.to(trainer.device),
                                    attention_mask=attention_mask.to(trainer.device)).logits
        losses = F.cross_entropy(logits.float(), labels, reduction="none")
        correct = (logits.detach().argmax(-1) == labels).float()
        return StepTerms(losses, {"accuracy": correct}, attention_mask.sum().to(trainer.device))
