"""Lisa (Huang et al. 2024, "Lazy Safety Alignment", git-disl/Lisa; rho 1, K_align 100, K_ft 900): the
provider's fine-tuning-stage defense, a step strategy over the shared trainer.

The provider alternates two states on the one set of trainable weights, starting with alignment: step t
(0-based) is an alignment step when t mod (K_align + K_ft) < K_align (the public LisaTrainer's clock). An
alignment step trains on a batch of the provider's alignment data (the align stage's selection) in place
of the user batch, which is skipped, as in the public code: the run takes the same epochs x
ceil(n / batch_size) steps, K_align / (K_align + K_ft) of them on alignment data. Alignment batches are
consecutive draws from seeded permutations of the alignment set, continuing across cycles.

Proximal term (Bi-State Optimization): at steps t > lisa_proximal_after x total steps (the public
`steps > 0.1 * len(dataloader) * epochs`), the loss gains (rho/2) ||w - w_other||^2, w_other the other
state's last iterate. The other state's last iterate is the weights when the current state began (both
start at the initial weights), so one copy of the trainable weights is kept. Its gradient rho (w - w_other)
is added to the data gradient before clipping and the optimizer step, as the public code's loss term.
"""
from __future__ import annotations

from typing import Sequence

import torch

from common.data import PreferenceExample
from common.errors import ConfigError, TrainingError
from common.strategies import PreferenceStrategy


def is_alignment_step(step: int, align_steps: int, finetune_steps: int) -> bool:
    return step % (align_steps + finetune_steps) < align_steps


def alignment_steps_before(step: int, align_steps: int, finetune_steps: int) -> int:
    cycles, within = divmod(step, align_steps + finetune_steps)
    return cycles * align_steps + min(within, align_steps)


def alignment_batch(k: int, count: int, size: int, seed: int) -> list[int]:
    """Indices into the alignment set of the k-th alignment batch of `size`: positions k*size .. (k+1)*size - 1
    of the concatenated seeded permutations of range(count) (a new permutation per pass over the set)."""
    perms: dict[int, list[int]] = {}
    out = []
    for position in range(k * size, (k + 1) * size):
        epoch, i = divmod(position, count)
        if epoch not in perms:
            g = torch.Generator().manual_seed(seed * 7919 + 29 + epoch)
            perms[epoch] = torch.randperm(count, generator=g).tolist()
        out.append(perms[epoch][i])
    return out


class LisaStrategy(PreferenceStrategy):
    """SFT alternating between alignment and user batches, with the proximal pull towards the other state."""

    def __init__(self, config, alignment_set: Sequence[PreferenceExample]):
        super().__init__(config)
        if not alignment_set:
            raise ConfigError("finetune_defense 'lisa' needs alignment data (num_align samples)")
        if self.needs_reference:
            raise ConfigError("finetune_defense 'lisa' trains with cross_entropy (SFT) only")
        self.alignment_set = list(alignment_set)
        self.rho = float(config.lisa_rho)
        self.align_steps, self.finetune_steps = config.lisa_align_steps, config.lisa_finetune_steps
        self.proximal_after = float(config.lisa_proximal_after)
        self.anchor = None  # trainable weights when the current state began (the other state's last iterate)
        self.aligning = False  # inside an alignment step's backward: `examples` reads the alignment set
        self.last_proximal = None  # (rho/2) ||w - w_other||^2 of the last step; None while the term is off

    def examples(self, trainer, indices):
        if self.aligning:
            return [self.alignment_set[i] for i in indices]
        return super().examples(trainer, indices)

    def step_gradients(self, trainer, micro, scale, weight):
        step = trainer.step
        aligning = is_alignment_step(step, self.align_steps, self.finetune_steps)
        if self.anchor is None and step:
            raise TrainingError(f"{trainer.run_dir}: Lisa cannot resume at step {step}: its proximal anchor (the "
                                f"weights at the last state switch) is not in the checkpoint; delete the "
                                f"checkpoint to restart the run")
        if self.anchor is None or aligning != is_alignment_step(step - 1, self.align_steps, self.finetune_steps):
            self.anchor = [p.detach().clone() for p in trainer.params]
        if aligning:
            stats = self.alignment_gradients(trainer, step)
        else:
            stats = trainer.backward_micro_batches(micro, scale, weight)
        self.last_proximal = None
        if step > self.proximal_after * trainer.total_steps and self.rho > 0:
            squares = 0.0
            with torch.no_grad():
                for p, a in zip(trainer.params, self.anchor):
                    diff = p.float() - a.float()
                    squares += (diff ** 2).sum().item()
                    extra = (self.rho * diff).to(p.dtype)
                    if p.grad is None:
                        p.grad = extra
                    else:
                        p.grad.add_(extra)
            self.last_proximal = self.rho / 2 * squares
        return stats

    def alignment_gradients(self, trainer, step: int):
        """The trainer's accumulation over an alignment batch as large as the user batch it replaces."""
        size = len(trainer.batch_indices(step))
        k = alignment_steps_before(step, self.align_steps, self.finetune_steps)
        indices = alignment_batch(k, len(self.alignment_set), size, trainer.config.seed)
        mine = sorted(indices[trainer.rank::trainer.world], key=lambda i: self.alignment_set[i].length, reverse=True)
        chunk = trainer.config.micro_batch_size or max(len(mine), 1)
        micro, weight = [mine[i:i + chunk] for i in range(0, len(mine), chunk)], 1.0
        if not micro:  # fewer examples than processes: join the collective with a zero-weight example
            micro, weight = [indices[:1]], 0.0
        self.aligning = True
        try:
            return trainer.backward_micro_batches(micro, weight * trainer.world / len(indices), weight)
        finally:
            self.aligning = False
