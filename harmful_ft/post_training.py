"""Post-fine-tuning defenses: the provider changes the weights once the user's fine-tuning is over, before the
model is saved (a trainer callback's `on_train_end`, which runs before the trainer saves and merges).

Both act on the trainable weights: the new LoRA's A and B in a LoRA run (then merged, (alpha/r) B A), every
weight in a full fine-tuning; as the public code.

- `random_perturbation` (the Panacea paper's baseline): w <- w + z, z ~ N(0, std^2) per element
  (`random_perturbation_std`), drawn from the run seed and the parameter's name, so ||z|| is about
  sqrt(numel) x std.
- `panacea` (Wang et al. 2025, w-yibo/Panacea; lambda 0.001, rho 1, h(w+eps) clamped at 5): during the
  fine-tuning (`PanaceaStrategy`) each step's gradient is
      grad g(w) - lambda (grad h(w + eps) - grad h(w)),   eps = rho grad h(w) / ||grad h(w)||,
  g the user loss, h the harmful loss on a batch of the provider's harmful set (`panacea_num_harmful`
  samples outside the user, alignment and evaluation data), the gradient of h(w + eps) zero where the
  clamp is active; 3 forward/backward passes per step, the weights restored bit-exactly after the pass at
  w + eps. After training the inner maximiser at the final weights, eps* = rho grad h(w_T) / ||grad h(w_T)||
  with h over the whole harmful set, is added to the weights once (the re-aligned model w_T + eps*). The public
  code instead adds the last step's eps (computed at w_{T-1} on that step's harmful batch, before the last
  update), and does not run as shipped (`Pancacea` and `clip_loss_h` are undefined names).
Norms are over the whole trainable state of the global batch (fp32, all processes), as Booster's.
"""
from __future__ import annotations

import contextlib
import zlib
from typing import Sequence

import torch
from torch import Tensor

from common.data import PreferenceExample
from common.errors import ConfigError
from common.trainer import TrainerCallback
from harmful_ft.defenses import BoosterStrategy, harmful_batch


def direction(grads: Sequence[Tensor], rho: float) -> list[Tensor]:
    """rho g / ||g||, one L2 norm over all the tensors (zero when g is zero)."""
    norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads)).item()
    factor = rho / norm if norm > 0 else 0.0
    return [g.float() * factor for g in grads]


@contextlib.contextmanager
def shifted(params: Sequence[Tensor], deltas: Sequence[Tensor]):
    """The parameters moved by `deltas` inside the block, restored bit-exactly after it."""
    saved = [p.detach().clone() for p in params]
    try:
        add_to_weights(params, deltas)
        yield
    finally:
        with torch.no_grad():
            for p, w in zip(params, saved):
                p.copy_(w)


def add_to_weights(params: Sequence[Tensor], deltas: Sequence[Tensor]) -> float:
    """w += delta for every parameter; returns ||delta|| (fp32, over all of them)."""
    with torch.no_grad():
        for p, d in zip(params, deltas):
            p.add_(d.to(device=p.device, dtype=p.dtype))
    return torch.sqrt(sum((d.float() ** 2).sum() for d in deltas)).item()


class PanaceaStrategy(BoosterStrategy):
    """grad g(w) - lambda (grad h(w + eps) - grad h(w)) with eps = rho grad h / ||grad h|| (Booster's harmful
    set handling and fp32 global-batch harmful gradient, Panacea's combination)."""

    def __init__(self, config, harmful_set: Sequence[PreferenceExample]):
        if not harmful_set:
            raise ConfigError("finetune_defense 'panacea' needs a harmful set (panacea_num_harmful samples)")
        super().__init__(config, harmful_set)
        self.lam = float(config.panacea_lambda)
        self.rho = float(config.panacea_rho)
        self.clamp = float(config.panacea_clamp)
        self.last_eps = None  # the last step's eps (fp32), for inspection
        self.last_harmful_losses = None  # (h(w), h(w + eps)) global-batch means of the last step

    def harmful_micro_batches(self, trainer, indices: Sequence[int], size: int = 0) -> list[list[PreferenceExample]]:
        """This process's share of harmful examples `indices`, in micro-batches of `size` (default: the
        config's micro_batch_size, else one)."""
        mine = [self.harmful_set[i] for i in indices[trainer.rank::trainer.world]]
        size = size or trainer.config.micro_batch_size or max(len(mine), 1)
        return [mine[i:i + size] for i in range(0, len(mine), size)]

    def step_gradients(self, trainer, micro, scale, weight):
        indices = harmful_batch(trainer.step, len(self.harmful_set), trainer.config.batch_size, trainer.config.seed)
        harmful_micro = self.harmful_micro_batches(trainer, indices)
        grad_h, h = self.harmful_gradient(trainer, harmful_micro, len(indices))
        eps = direction(grad_h, self.rho)
        with shifted(trainer.params, eps):
            grad_moved, h_moved = self.harmful_gradient(trainer, harmful_micro, len(indices))
        self.last_eps, self.last_harmful_losses = eps, (h, h_moved)
        clamped = h_moved > self.clamp  # torch.clamp(h, max=5) passes no gradient above the bound
        stats = trainer.backward_micro_batches(micro, scale, weight)  # grad g(w), DDP-averaged
        with torch.no_grad():
            for p, g, g_moved in zip(trainer.params, grad_h, grad_moved):
                extra = (-self.lam * ((0.0 if clamped else g_moved) - g)).to(p.dtype)
                if p.grad is None:
                    p.grad = extra
                else:
                    p.grad.add_(extra)
        return stats

    def final_perturbation(self, trainer) -> tuple[list[Tensor], float]:
        """eps* = rho grad h(w) / ||grad h(w)|| at the current weights, h over the whole harmful set; and h(w)."""
        count = len(self.harmful_set)
        micro = self.harmful_micro_batches(trainer, range(count), trainer.config.micro_batch_size or
                                           trainer.config.batch_size)
        grad_h, h = self.harmful_gradient(trainer, micro, count)
        return direction(grad_h, self.rho), h


class PanaceaPerturbation(TrainerCallback):
    """After training: w <- w + eps* (PanaceaStrategy.final_perturbation), once."""

    def on_train_end(self, trainer):
        eps, h = trainer.strategy.final_perturbation(trainer)
        norm = add_to_weights(trainer.params, eps)
        return {"post_training": {"method": "panacea", "perturbation_norm": norm, "harmful_loss_before": h}}


def gaussian_noise(named_params: Sequence[tuple[str, Tensor]], std: float, seed: int) -> list[Tensor]:
    """N(0, std^2) per element, each tensor from its own generator (seed, parameter name)."""
    out = []
    for name, p in named_params:
        g = torch.Generator().manual_seed(zlib.crc32(f"{seed}:{name}".encode()))
        out.append(torch.randn(p.shape, generator=g) * std)
    return out


class RandomPerturbation(TrainerCallback):
    """After training: Gaussian noise of std `random_perturbation_std` added to every trainable weight, once."""

    def __init__(self, std: float, seed: int):
        self.std, self.seed = std, seed

    def on_train_end(self, trainer):
        named = [(n, p) for n, p in trainer.model.named_parameters() if p.requires_grad]
        norm = add_to_weights([p for _, p in named], gaussian_noise(named, self.std, self.seed))
        numel = sum(p.numel() for _, p in named)
        return {"post_training": {"method": "random_perturbation", "perturbation_norm": norm,
                                  "expected_norm": numel ** 0.5 * self.std, "std": self.std}}


def post_training_callbacks(config) -> list[TrainerCallback]:
    """The finetune stage's post-fine-tuning step for `finetune_defense` (none for the others)."""
    if config.finetune_defense == "panacea":
        return [PanaceaPerturbation()]
    if config.finetune_defense == "random_perturbation":
        return [RandomPerturbation(config.random_perturbation_std, config.seed)]
    return []
