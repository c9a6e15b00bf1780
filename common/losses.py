"""Preference losses as pure functions of summed sequence log-probabilities, bound once from a config.

Notation: logp = summed log-prob of the response tokens; z+ = logp_pi(y+) - logp_ref(y+),
z- likewise; D = z+ - z-; s = sigmoid; log s(x) is computed as `F.logsigmoid(x)` (stable). Every
function returns one loss per example (aot: per rank, see below); callers average.

The formulas below can be read and tested on their own. `LOSSES` registers each under its
`objective` name with the inputs it reads; `make_loss(config)` binds a registered loss to the config
once, passing every parameter of the formula after its two inputs (beta, label_smoothing, ...) from
the config field of the same name. A new loss with a new hyper-parameter is therefore a formula, one
`register_loss` line and a config field; the trainer does not change.

Where these differ from TRL's DPOTrainer (1.x) with the same names:
- ipo: unnormalised (D on summed log-probs, as the IPO paper's Eq. 17) by default; TRL divides each
  log-ratio by its response length first: `ipo_length_normalize: true`.
- dpo with label_smoothing e: cDPO, the same formula as TRL's "sigmoid" with label_smoothing.
- sft_coeff c and objective cross_entropy: by default (`sft_loss_type: sum`) the summed token NLL of
  y+ per example, averaged over the batch (the public Razin et al. code's SFT term), so it scales with
  response length; `sft_loss_type: token_mean` is TRL's "sft": the NLL averaged over all y+ tokens
  of the (micro-)batch. `objective: cross_entropy` with `sft_coeff` is an error (it would count the
  cross-entropy twice).
- sigmoid_norm is DPO on length-normalised z+, z-; with label_smoothing it is cDPO there (TRL
  ignores label_smoothing for it).
- aot / aot_unpaired sort over the batch (TRL's AOT): the i-th loss pairs the i-th smallest values,
  not example i; only their mean means anything.
- exo_pair needs label_smoothing > 0 (EXO's epsilon; the paper recommends 1e-3), as in TRL.
TRL's f-divergence options, WPO weighting and ld_alpha are not offered.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from common.errors import ConfigError


def dpo(z_chosen: Tensor, z_rejected: Tensor, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """DPO, with conservative label smoothing e (cDPO): -(1-e) log s(beta D) - e log s(-beta D)."""
    d = beta * (z_chosen - z_rejected)
    return -(1 - label_smoothing) * F.logsigmoid(d) - label_smoothing * F.logsigmoid(-d)


def ipo(z_chosen: Tensor, z_rejected: Tensor, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """IPO: (D - 1/(2 beta))^2, beta playing the role of tau."""
    return (z_chosen - z_rejected - 1 / (2 * beta)) ** 2


def hinge(z_chosen: Tensor, z_rejected: Tensor, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """SLiC hinge: relu(1 - beta D)."""
    return torch.relu(1 - beta * (z_chosen - z_rejected))


def robust(z_chosen: Tensor, z_rejected: Tensor, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """Robust DPO (unbiased under label noise e < 1/2): (-(1-e) log s(beta D) + e log s(-beta D)) / (1 - 2e)."""
    d = beta * (z_chosen - z_rejected)
    return (-(1 - label_smoothing) * F.logsigmoid(d) + label_smoothing * F.logsigmoid(-d)) / (1 - 2 * label_smoothing)


def nca_pair(z_chosen: Tensor, z_rejected: Tensor, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """NCA (pairwise): -log s(beta z+) - 0.5 log s(-beta z+) - 0.5 log s(-beta z-)."""
    return (-F.logsigmoid(beta * z_chosen) - 0.5 * F.logsigmoid(-beta * z_chosen)
            - 0.5 * F.logsigmoid(-beta * z_rejected))


def sppo_hard(z_chosen: Tensor, z_rejected: Tensor, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """SPPO with hard labels: (z+ - 1/(2 beta))^2 + (z- + 1/(2 beta))^2."""
    return (z_chosen - 1 / (2 * beta)) ** 2 + (z_rejected + 1 / (2 * beta)) ** 2


def apo_zero(z_chosen: Tensor, z_rejected: Tensor, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """APO-zero: (1 - s(beta z+)) + s(beta z-)."""
    return (1 - torch.sigmoid(beta * z_chosen)) + torch.sigmoid(beta * z_rejected)


def bco_pair(z_chosen: Tensor, z_rejected: Tensor, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """BCO (pairwise, no running shift): -log s(beta z+) - log s(-beta z-)."""
    return -F.logsigmoid(beta * z_chosen) - F.logsigmoid(-beta * z_rejected)


def exo_pair(z_chosen: Tensor, z_rejected: Tensor, beta: float, label_smoothing: float = 1e-3) -> Tensor:
    """EXO-pref (K = 2): KL(q || p), q = (s(beta D), s(-beta D)), p = (1 - e, e):
    q_w (log q_w - log(1 - e)) + q_l (log q_l - log e)."""
    d = beta * (z_chosen - z_rejected)
    return (torch.sigmoid(d) * (F.logsigmoid(d) - math.log1p(-label_smoothing))
            + torch.sigmoid(-d) * (F.logsigmoid(-d) - math.log(label_smoothing)))


def aot(first: Tensor, second: Tensor, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """AOT: cDPO on the batch-sorted values, -(1-e) log s(beta d_i) - e log s(-beta d_i) with
    d_i = sort(first)_i - sort(second)_i (paired: policy vs reference margins; unpaired: z+ vs z-)."""
    return dpo(torch.sort(first, dim=0).values, torch.sort(second, dim=0).values, beta, label_smoothing)


def apo_down(z_chosen: Tensor, z_rejected: Tensor, beta: float) -> Tensor:
    """APO-down: s(beta z+) + (1 - s(beta D))."""
    return torch.sigmoid(beta * z_chosen) + (1 - torch.sigmoid(beta * (z_chosen - z_rejected)))


def discopop(z_chosen: Tensor, z_rejected: Tensor, beta: float, discopop_tau: float = 0.05) -> Tensor:
    """DiscoPOP: (1 - m) (-log s(beta D)) + m exp(-beta D), m = s(beta D / tau)."""
    d = beta * (z_chosen - z_rejected)
    m = torch.sigmoid(d / discopop_tau)
    return (1 - m) * -F.logsigmoid(d) + m * torch.exp(-d)


def simpo(avg_chosen: Tensor, avg_rejected: Tensor, beta: float, simpo_gamma: float = 0.5) -> Tensor:
    """SimPO (reference-free): -log s(beta (avg_logp(y+) - avg_logp(y-)) - gamma), avg = logp / |y|."""
    return -F.logsigmoid(beta * (avg_chosen - avg_rejected) - simpo_gamma)


def cross_entropy(policy_chosen_logps: Tensor, chosen_lengths: Optional[Tensor] = None,
                  sft_loss_type: str = "sum") -> Tensor:
    """SFT on y+: -logp(y+), the summed token NLL of each example ("sum"); "token_mean" (TRL's "sft"):
    -sum_b logp(y+_b) / sum_b |y+_b|, the same value for every example of the batch."""
    if sft_loss_type == "sum":
        return -policy_chosen_logps
    if chosen_lengths is None:
        raise ValueError("sft_loss_type token_mean needs chosen_lengths")
    return (-policy_chosen_logps.sum() / chosen_lengths.sum()).expand_as(policy_chosen_logps)


# ----------------------------------------------------------------------------------------------
# Inputs: what a formula's first two arguments are, from the policy / reference log-probs


@dataclass
class PairLogps:
    """Summed log-probs of a batch, shape (B,); rejected and reference ones may be None."""

    policy_chosen: Tensor
    policy_rejected: Optional[Tensor]
    ref_chosen: Optional[Tensor]
    ref_rejected: Optional[Tensor]
    chosen_lengths: Optional[Tensor]
    rejected_lengths: Optional[Tensor]


def log_ratios(x: PairLogps, name: str) -> tuple[Tensor, Tensor]:
    """(z+, z-)."""
    if x.ref_chosen is None or x.ref_rejected is None:
        raise ValueError(f"{name} needs reference log-probs")
    return x.policy_chosen - x.ref_chosen, x.policy_rejected - x.ref_rejected


def _lengths(x: PairLogps, name: str) -> tuple[Tensor, Tensor]:
    if x.chosen_lengths is None or x.rejected_lengths is None:
        raise ValueError(f"{name} needs chosen_lengths and rejected_lengths")
    return x.chosen_lengths, x.rejected_lengths


def normalized_log_ratios(x: PairLogps, name: str) -> tuple[Tensor, Tensor]:
    """(z+ / |y+|, z- / |y-|)."""
    chosen_lengths, rejected_lengths = _lengths(x, name)
    z_chosen, z_rejected = log_ratios(x, name)
    return z_chosen / chosen_lengths, z_rejected / rejected_lengths


def ipo_log_ratios(x: PairLogps, name: str, ipo_length_normalize: bool = False) -> tuple[Tensor, Tensor]:
    """(z+, z-), divided by the response lengths with `ipo_length_normalize` (TRL's IPO)."""
    return normalized_log_ratios(x, name) if ipo_length_normalize else log_ratios(x, name)


def policy_and_reference_margins(x: PairLogps, name: str) -> tuple[Tensor, Tensor]:
    """(logp_pi(y+) - logp_pi(y-), logp_ref(y+) - logp_ref(y-)): AOT's paired inputs."""
    log_ratios(x, name)  # checks that the reference is there
    return x.policy_chosen - x.policy_rejected, x.ref_chosen - x.ref_rejected


def average_logps(x: PairLogps, name: str) -> tuple[Tensor, Tensor]:
    """(logp(y+) / |y+|, logp(y-) / |y-|), no reference."""
    chosen_lengths, rejected_lengths = _lengths(x, name)
    return x.policy_chosen / chosen_lengths, x.policy_rejected / rejected_lengths


def chosen_logps(x: PairLogps, name: str) -> tuple[Tensor, Optional[Tensor]]:
    """(logp(y+), |y+|): SFT reads neither y- nor a reference."""
    return x.policy_chosen, x.chosen_lengths


REFERENCE_FREE_INPUTS = (average_logps, chosen_logps)


# ----------------------------------------------------------------------------------------------
# Registry and binding


@dataclass(frozen=True)
class RegisteredLoss:
    formula: Callable[..., Tensor]
    inputs: Callable[..., tuple]

    @property
    def needs_reference(self) -> bool:
        return self.inputs not in REFERENCE_FREE_INPUTS

    @property
    def needs_rejected(self) -> bool:
        return self.inputs is not chosen_logps


LOSSES: dict[str, RegisteredLoss] = {}


def register_loss(name: str, formula: Callable[..., Tensor], inputs: Callable[..., tuple] = log_ratios) -> None:
    """Make `formula` the loss of `objective: name`; `inputs` gives its leading (Tensor) arguments."""
    if name in LOSSES:
        raise ValueError(f"loss {name!r} is registered twice: {LOSSES[name].formula.__module__}."
                         f"{LOSSES[name].formula.__qualname__} and {formula.__module__}.{formula.__qualname__}")
    LOSSES[name] = RegisteredLoss(formula, inputs)


for _name, _formula in {"dpo": dpo, "hinge": hinge, "robust": robust, "nca_pair": nca_pair,
                        "sppo_hard": sppo_hard, "apo_zero": apo_zero, "bco_pair": bco_pair,
                        "exo_pair": exo_pair, "aot_unpaired": aot, "apo_down": apo_down,
                        "discopop": discopop}.items():
    register_loss(_name, _formula)
register_loss("ipo", ipo, ipo_log_ratios)
register_loss("sigmoid_norm", dpo, normalized_log_ratios)  # TRL's: DPO on length-normalised z+, z-
register_loss("aot", aot, policy_and_reference_margins)
register_loss("simpo", simpo, average_logps)
register_loss("cross_entropy", cross_entropy, chosen_logps)


def hyper_parameters(fn: Callable, config, loss_name: str) -> dict:
    """fn's non-tensor parameters (after `x, name` for an inputs function), each from the config field
    of the same name; a parameter with a default may be missing from the config."""
    values = {}
    for p in inspect.signature(fn).parameters.values():
        if p.name in ("x", "name") or p.annotation in ("Tensor", Tensor):
            continue
        if hasattr(config, p.name):
            values[p.name] = getattr(config, p.name)
        elif p.default is inspect.Parameter.empty:
            raise ConfigError(f"loss {loss_name!r} needs the config field {p.name!r}, which "
                              f"{type(config).__name__} does not have")
    return values


class BoundLoss:
    """A registered loss with its hyper-parameters read from a config once; see `make_loss`."""

    def __init__(self, name: str, config):
        if name not in LOSSES:
            raise ConfigError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
        entry = LOSSES[name]
        self.name, self.formula, self.inputs = name, entry.formula, entry.inputs
        self.needs_reference, self.needs_rejected = entry.needs_reference, entry.needs_rejected
        self.input_kwargs = hyper_parameters(entry.inputs, config, name)
        self.formula_kwargs = hyper_parameters(entry.formula, config, name)
        self.beta = getattr(config, "beta", 1.0)
        self.sft_coeff = getattr(config, "sft_coeff", 0.0)
        self.sft_loss_type = getattr(config, "sft_loss_type", "sum")

    def __call__(self, policy_chosen_logps: Tensor, policy_rejected_logps: Optional[Tensor] = None,
                 ref_chosen_logps: Optional[Tensor] = None, ref_rejected_logps: Optional[Tensor] = None,
                 chosen_lengths: Optional[Tensor] = None, rejected_lengths: Optional[Tensor] = None,
                 ) -> tuple[Tensor, Tensor, Tensor]:
        """`(losses, chosen_rewards, rejected_rewards)`, each of shape (B,).

        Rewards are beta*z+ and beta*z- (detached); a loss on average log-probs (simpo) rewards
        beta*avg_logp, and without reference log-probs they are beta*logp; zeros without y-.
        `sft_coeff` c adds c * (-logp_pi(y+)) to every example's loss.
        """
        x = PairLogps(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
                      chosen_lengths, rejected_lengths)
        losses = self.formula(*self.inputs(x, self.name, **self.input_kwargs), **self.formula_kwargs)
        if self.sft_coeff:
            losses = losses + self.sft_coeff * cross_entropy(policy_chosen_logps, chosen_lengths, self.sft_loss_type)
        average = self.inputs is average_logps

        def rewards(policy: Optional[Tensor], ref: Optional[Tensor], lengths: Optional[Tensor]) -> Tensor:
            if policy is None:
                return torch.zeros_like(policy_chosen_logps).detach()
            if average:
                return (self.beta * policy / lengths).detach()
            return (self.beta * (policy - ref if ref is not None else policy)).detach()

        return (losses, rewards(policy_chosen_logps, ref_chosen_logps, chosen_lengths),
                rewards(policy_rejected_logps, ref_rejected_logps, rejected_lengths))


def make_loss(config) -> BoundLoss:
    """The loss of `config.objective`, bound to the config's hyper-parameters (beta, sft_coeff, ...)."""
    return BoundLoss(config.objective, config)
