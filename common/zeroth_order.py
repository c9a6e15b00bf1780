"""Zeroth-order optimisers (MeZO; TeZO): the update from two forward passes, no backward, no `.grad`.

MeZO (Malladi et al. 2023, princeton-nlp/MeZO), per optimizer step t:
  z ~ N(0, I) over the trainable parameters, regenerated from a seed of (config seed, t, parameter)
  so it is never stored; the weights are perturbed in place: w + eps z, forward L+; w - eps z, forward
  L-; + eps z restores w (up to rounding, measured: `restore_error`); the projected gradient
  c = (L+ - L-) / (2 eps), with L the GLOBAL batch-mean loss (each process sums its micro-batches'
  losses, the sums are all-reduced), so every process computes the same c from the same seed and
  applies the same update w <- w - lr (c z + wd w); as MeZO, no weight decay on biases and norms (here:
  parameters with fewer than 2 dimensions, whatever the architecture names them).

The loss is the trainer's strategy's `losses` (any objective: DPO, SFT, ...) under `torch.no_grad`;
only parameters with `requires_grad` (LoRA adapters or all weights) are perturbed. There is no
gradient accumulation to do: micro-batches only split the forward.

`restore_error` is max |w_after - w_before| of the +eps, -2 eps, +eps cycle. Keeping a copy of w to
compare would double the memory MeZO saves, so each parameter's cycle is replayed on a temporary copy
just before it is perturbed: the same in-place ops on the same values round identically, so the
replay's error is the cycle's (tests check it against a real copy).

TeZO (arXiv 2501.19057; no official code) replaces z, per weight MATRIX (m x n), by the low-rank
Z = U diag(tau) V^T with U (m x r), V (n x r) fixed for the run and tau ~ N(0, I_r) drawn each step.
What the paper leaves open, chosen here: U, V entries N(0, 1) drawn from a seed of (config seed,
parameter), regenerated each step rather than stored (m r + n r numbers, cheap next to the forward);
Z is scaled by 1/sqrt(r) so its entries have unit variance like MeZO's z (MeZO's eps / lr grids are a
starting point); parameters with fewer than 2 dimensions (biases, norms) get MeZO's dense z; tensors
with more than 2 are treated as (shape[0], rest) matrices. E over tau of c Z is sum_k B_k <grad, B_k>
with B_k = u_k v_k^T / sqrt(r): for m, n >> r nearly the projection of the gradient onto
span{u_k v_k^T} (times mn / r). Its hyper-parameters are unverified.

TeZO-Adam (`tezo_adam`) keeps Adam's moments on the r coefficients of the estimate only: per matrix,
g = c tau (the estimate is U diag(g) V^T / sqrt(r)), m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2,
bias-corrected m^, v^ (t = optimizer step + 1); the full-matrix moments are rebuilt from them as
M = U diag(m^) V^T / sqrt(r) and, keeping only the j = l terms of the elementwise square of
sum_k g_k u_k v_k^T, V = (U o U) diag(v^) (V o V)^T / r; w <- w - lr (M / (sqrt(V) + 1e-8) + wd w)
(decay decoupled, as AdamW: a decay term inside the moments would need full-size moments). So the
state is 2 r floats per matrix (fp32 at least), against 2 per weight for Adam. Vectors (biases,
norms; dense z) keep ordinary Adam moments of c z, 2 floats per entry, and no decay (MeZO's rule).
Betas (0.9, 0.999) and the 1e-8 are Adam's defaults, not tuned for ZO; the rebuilt V is our reading
of the paper (no official code).
"""
from __future__ import annotations

import hashlib
import math
from typing import Sequence

import torch
from torch import Tensor, nn

from common.config import ZEROTH_ORDER_OPTIMIZERS
from common.errors import TrainingError

OPTIMIZERS = ZEROTH_ORDER_OPTIMIZERS


def direction_seed(seed: int, step: int, index: int) -> int:
    """A generator seed for parameter `index` at optimizer step `step` (step -1: the run's fixed draws)."""
    return int.from_bytes(hashlib.sha1(f"{seed}:{step}:{index}".encode()).digest()[:8], "little") % 2**63


def gaussian(shape, p: Tensor, seed: int) -> Tensor:
    generator = torch.Generator(device=p.device).manual_seed(seed)
    return torch.randn(shape, generator=generator, device=p.device, dtype=p.dtype)


class MeZO(torch.optim.Optimizer):
    """ZO-SGD over `params`; the trainer calls `update` instead of backward + `step` (`owns_update`)."""

    owns_update = True

    def __init__(self, params: Sequence[Tensor], lr: float, weight_decay: float, eps: float, seed: int):
        super().__init__(list(params), {"lr": lr, "weight_decay": weight_decay, "eps": eps})
        self.seed = seed

    @property
    def params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def step(self, closure=None):
        raise TypeError(f"{type(self).__name__} owns the update: call update(trainer, ...), not step()")

    def direction(self, index: int, p: Tensor, step: int) -> Tensor:
        """The perturbation of parameter `index` at `step`, the same on every call (replayed)."""
        return gaussian(p.shape, p, direction_seed(self.seed, step, index))

    def perturb(self, step: int, factor: float, measure: bool = False) -> float:
        """w += factor * eps * z in place; with `measure`, the largest restore error of the whole cycle."""
        eps, error = self.param_groups[0]["eps"], 0.0
        for index, p in enumerate(self.params):
            z = self.direction(index, p.data, step)
            if measure:  # replay +eps, -2 eps, +eps on a copy: the same ops round the same way
                copy = torch.add(p.data, z, alpha=eps).add_(z, alpha=-2 * eps).add_(z, alpha=eps)
                error = max(error, copy.sub_(p.data).abs_().max().item())
                del copy
            p.data.add_(z, alpha=factor * eps)
        return error

    def apply(self, step: int, projected_grad: float, lr: float) -> None:
        """w <- w - lr (c z + wd w); no decay on parameters with fewer than 2 dimensions (MeZO's rule)."""
        decay = self.param_groups[0]["weight_decay"]
        for index, p in enumerate(self.params):
            z = self.direction(index, p.data, step).mul_(projected_grad)
            if decay and p.dim() >= 2:
                z.add_(p.data, alpha=decay)
            p.data.add_(z, alpha=-lr)

    @torch.no_grad()
    def update(self, trainer, micro: list[list[int]], weight: float, batch_size: int, lr: float,
               step: int) -> tuple[Tensor, dict]:
        """One ZO step on this process's micro-batches `micro` of a global batch of `batch_size`
        examples (`weight` 0: a zero-weight share); the all-reduced sums (loss, metrics, tokens) as the
        backward path returns them, here the mean of the two passes', and the step's ZO statistics."""
        for group in self.param_groups:
            group["lr"] = lr
        eps = self.param_groups[0]["eps"]
        restore_error = self.perturb(step, 1.0, measure=True)
        plus = forward_sums(trainer, micro, weight)
        self.perturb(step, -2.0)
        minus = forward_sums(trainer, micro, weight)
        self.perturb(step, 1.0)
        projected_grad = ((plus[0] - minus[0]) / batch_size / (2 * eps)).item()
        if not math.isfinite(projected_grad):
            raise TrainingError(f"{trainer.run_dir}: non-finite zeroth-order projected gradient at step {step + 1} "
                                f"(L+ sum {plus[0].item()}, L- sum {minus[0].item()}); try a lower lr or zo_eps")
        self.apply(step, projected_grad, lr)
        return (plus + minus) / 2, {"projected_grad": projected_grad, "restore_error": restore_error}


class TeZO(MeZO):
    """MeZO with the low-rank perturbation Z = U diag(tau) V^T / sqrt(r) per weight matrix (module docstring)."""

    def __init__(self, params: Sequence[Tensor], lr: float, weight_decay: float, eps: float, seed: int, rank: int):
        super().__init__(params, lr, weight_decay, eps, seed)
        self.rank = rank

    def factors(self, index: int, p: Tensor, step: int) -> tuple[Tensor, Tensor, Tensor]:
        """U (m x r) and V (n x r), fixed for the run, and this step's tau (r,)."""
        m, n = p.shape[0], p[0].numel()
        fixed = gaussian((m + n, self.rank), p, direction_seed(self.seed, -1, index))
        tau = gaussian((self.rank,), p, direction_seed(self.seed, step, index))
        return fixed[:m], fixed[m:], tau

    def direction(self, index: int, p: Tensor, step: int) -> Tensor:
        if p.dim() < 2:
            return super().direction(index, p, step)
        u, v, tau = self.factors(index, p, step)
        return ((u * tau) @ v.T).div_(math.sqrt(self.rank)).view(p.shape)


class TeZOAdam(TeZO):
    """TeZO with Adam moments of the r coefficients of each matrix's estimate (module docstring)."""

    betas, adam_eps = (0.9, 0.999), 1e-8

    def apply(self, step: int, projected_grad: float, lr: float) -> None:
        (b1, b2), decay, t = self.betas, self.param_groups[0]["weight_decay"], step + 1
        for index, p in enumerate(self.params):
            if p.dim() < 2:  # dense z: plain Adam moments of c z
                u = v = None
                g = at_least_fp32(self.direction(index, p.data, step)).mul_(projected_grad)
            else:
                u, v, tau = (at_least_fp32(x) for x in self.factors(index, p.data, step))
                g = tau.mul_(projected_grad)
            state = self.state[p]
            if not state:
                state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(g), torch.zeros_like(g)
            m, s = state["exp_avg"], state["exp_avg_sq"]
            m.mul_(b1).add_(g, alpha=1 - b1)
            s.mul_(b2).addcmul_(g, g, value=1 - b2)
            m_hat, s_hat = m / (1 - b1 ** t), s / (1 - b2 ** t)
            if u is None:
                update = m_hat.div_(s_hat.sqrt_().add_(self.adam_eps))
            else:
                first = (u * m_hat) @ v.T / math.sqrt(self.rank)
                second = (u * u * s_hat) @ (v * v).T / self.rank
                update = first.div_(second.sqrt_().add_(self.adam_eps)).view(p.shape)
                if decay:
                    update.add_(p.data, alpha=decay)
            p.data.add_(update.to(p.dtype), alpha=-lr)

    def load_state_dict(self, state_dict: dict) -> None:
        """As torch's, but the moments stay fp32 (torch casts state to each parameter's dtype)."""
        super().load_state_dict(state_dict)
        for index, saved in state_dict["state"].items():
            p = self.params[index]
            self.state[p].update({k: v.to(p.device) for k, v in saved.items()})


def at_least_fp32(x: Tensor) -> Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def make(config, params: Sequence[Tensor]) -> MeZO:
    """The zeroth-order optimizer `config.optimizer` names, over the trainable `params`."""
    if config.optimizer == "mezo":
        return MeZO(params, config.lr, config.weight_decay, config.zo_eps, config.seed)
    kind = {"tezo": TeZO, "tezo_adam": TeZOAdam}[config.optimizer]
    return kind(params, config.lr, config.weight_decay, config.zo_eps, config.seed, config.tezo_rank)


def forward_sums(trainer, micro: list[list[int]], weight: float) -> Tensor:
    """All-reduced sums (loss, each metric, tokens) of the strategy's losses over `micro`, no backward."""
    names = trainer.strategy.metrics
    # float64: c divides the difference of two nearly equal sums by 2 eps (no float64 on MPS)
    dtype = torch.float32 if trainer.device.type == "mps" else torch.float64
    stats = torch.zeros(2 + len(names), device=trainer.device, dtype=dtype)
    for chunk in micro:
        terms = trainer.loss_terms(chunk)
        stats += weight * torch.stack([terms.losses.detach().sum(), *(terms.metrics[k].sum() for k in names),
                                       terms.tokens.float()])
    return trainer.accelerator.reduce(stats, reduction="sum")


def place(module: nn.Module, accelerator) -> nn.Module:
    """The module on the process's device, without DDP (a forward-only optimizer needs no gradient sync,
    and DDP's gradient buckets would cost the memory MeZO saves); the trainable weights broadcast from
    process 0, as DDP does, so every process starts from the same weights. A `device_map` model stays."""
    if not any(getattr(m, "hf_device_map", None) for m in module.modules()):
        module.to(accelerator.device)
    if accelerator.num_processes > 1:
        for p in module.parameters():
            if p.requires_grad:
                torch.distributed.broadcast(p.data, src=0)
    return module
