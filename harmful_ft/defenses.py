"""Alignment-stage defenses against harmful fine-tuning, as step strategies over the one shared trainer.

A defense decides how a step's gradient is formed from named losses: the alignment loss f (the
config's objective on the training set, usually `cross_entropy` on refusals), the harmful loss h
(cross-entropy of harmful answers, provider-held data) and, at the user stage, the user loss g. Each
is a `StepStrategy` (common/strategies.py); the multi-pass ones override `step_gradients`, so data
order, micro-batching, DDP, clipping and the optimizer stay the trainer's.

Every quantity that the papers compute over "the batch" is computed over the GLOBAL batch (all
micro-batches of all processes): norms are summed over micro-batches and all-reduced before they
are used, so gradient accumulation and N processes give the step of one big batch (the public
multi-pass trainers normalise per micro-batch and `zero_grad` inside the step).

- `sft`: no defense, f alone (the config's objective: `PreferenceStrategy`).
- `vaccine` (Huang et al. 2024, rho = 2): pass 1 computes g_l = d f / d e_l for the output e_l of every
  decoder layer's attention (`vaccine_site: "attention"`, the public code's hook site) or of every
  decoder layer (`"layer"`), without touching the parameters' gradients; eps_l = rho * g_l /
  ||(g_1, ..., g_L)||, one L2 norm over all layers, tokens and examples of the global batch; pass 2
  runs f with e_l + eps_l (eps constant) and its gradient is the update.
- `random_vaccine`: one pass with a Gaussian direction of the same global norm rho (the ablation).
- `booster` (Huang et al. 2025, lambda 5, alpha 0.1): minimise f(w) + lambda (h(w) - h(w')),
  w' = w - alpha grad h(w) / ||grad h(w)||; first-order gradient
  grad f(w) + lambda (grad h(w) - grad h(w')), 3 forward/backward per step, the weights restored
  bit-exactly after the pass at w'; ||grad h|| in fp32 over the whole trainable state and all processes.
- `tvaccine` (harmful_ft/tvaccine.py) and `repnoise` (harmful_ft/repnoise.py), in their own modules.

Hyper-parameters are read from the config under the names in `DEFAULTS` (a config without the field
gets the paper's value).
"""
from __future__ import annotations

import contextlib
import math
import zlib
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from common.data import PreferenceExample, collate_pairs
from common.errors import ConfigError
from common.logprobs import base_model_of
from common.losses import cross_entropy
from common.strategies import PreferenceStrategy, StepStrategy

DEFAULTS = {"vaccine_rho": 2.0, "vaccine_site": "attention", "booster_lambda": 5.0, "booster_alpha": 0.1}
ATTENTION_NAMES = ("self_attn", "attn", "attention", "self_attention")  # Llama/Qwen/Gemma, GPT-2, NeoX, Falcon/Bloom


def setting(config, name: str):
    return getattr(config, name, DEFAULTS[name])


# ----------------------------------------------------------------------------------------------
# Where the hidden states are: found by module role, on any decoder architecture


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder blocks of a causal LM (under peft too): the ModuleList of the decoder holding
    `num_hidden_layers` modules of one class."""
    base = base_model_of(model)
    count = getattr(base.config, "num_hidden_layers", None)
    for module in base.get_decoder().modules():
        if isinstance(module, nn.ModuleList) and len(module) and len(module) == count \
                and len({type(m) for m in module}) == 1:
            return list(module)
    raise ConfigError(f"{type(base).__name__}: no ModuleList of {count} decoder layers found; "
                      f"Vaccine needs a decoder with one block per hidden layer")


def perturbation_sites(model: nn.Module, site: str) -> list[nn.Module]:
    """The modules whose first output Vaccine perturbs: each layer, or each layer's attention."""
    layers = decoder_layers(model)
    if site == "layer":
        return layers
    if site != "attention":
        raise ConfigError(f"vaccine_site {site!r}: expected 'attention' or 'layer'")
    sites = []
    for i, layer in enumerate(layers):
        found = [getattr(layer, n) for n in ATTENTION_NAMES if isinstance(getattr(layer, n, None), nn.Module)]
        if not found:
            children = ", ".join(n for n, _ in layer.named_children())
            raise ConfigError(f"decoder layer {i} ({type(layer).__name__}) has no attention child named one of "
                              f"{', '.join(ATTENTION_NAMES)} (children: {children}); use vaccine_site 'layer'")
        sites.append(found[0])
    return sites


def first_output(output):
    return output[0] if isinstance(output, tuple) else output


def replace_first_output(output, value: Tensor):
    return (value, *output[1:]) if isinstance(output, tuple) else value


@contextlib.contextmanager
def site_hooks(sites: Sequence[nn.Module], hook: Callable[[int, int, Tensor], Optional[Tensor]], calls: int):
    """Forward hooks calling `hook(site index, call number, first output)` (a returned tensor replaces
    the output); always removed; asserts on exit that every site ran exactly `calls` times (a hook
    that never fires would silently turn the defense off)."""
    fired = [0] * len(sites)

    def make(i):
        def forward_hook(module, args, output):
            fired[i] += 1
            new = hook(i, fired[i] - 1, first_output(output))
            return None if new is None else replace_first_output(output, new)
        return forward_hook

    handles = [s.register_forward_hook(make(i)) for i, s in enumerate(sites)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
    wrong = {i: n for i, n in enumerate(fired) if n != calls}
    if wrong:
        raise AssertionError(f"Vaccine hooks fired {wrong} times (site: count), expected {calls} each: the model's "
                             f"forward bypasses or repeats them")


# ----------------------------------------------------------------------------------------------
# Vaccine and its random ablation


class VaccineStrategy(PreferenceStrategy):
    """f at hidden states perturbed by the global-norm-rho direction that increases f most."""

    def __init__(self, config):
        super().__init__(config)
        self.rho = float(setting(config, "vaccine_rho"))
        self.site = setting(config, "vaccine_site")
        self.last_norm = None  # global ||(g_1..g_L)|| of the last step (before the factor rho / norm)
        if getattr(config, "gradient_checkpointing", False):
            raise ConfigError("gradient_checkpointing: Vaccine's hooks would fire again in the recomputation; "
                              "set it false for the vaccine defenses")

    def directions(self, trainer, micro: list[list[int]], sites) -> list[list[Tensor]]:
        """Per micro-batch, per site: g_l = d f / d e_l (pass 1; the parameters' .grad untouched)."""
        result = []
        for chunk in micro:
            captured: list[Optional[Tensor]] = [None] * len(sites)

            def capture(i, call, out):
                captured[i] = out
            with trainer.accelerator.no_sync(trainer.module), site_hooks(sites, capture, calls=1):
                terms = self.losses(trainer, chunk)
            grads = torch.autograd.grad(terms.losses.sum(), captured, allow_unused=True)
            result.append([torch.zeros_like(c) if g is None else g.detach() for c, g in zip(captured, grads)])
        return result

    def sites(self, trainer) -> list[nn.Module]:
        """The modules whose output is perturbed (T-Vaccine: those of the sampled layers)."""
        return perturbation_sites(trainer.model, self.site)

    def step_gradients(self, trainer, micro, scale, weight):
        sites = self.sites(trainer)
        eps = self.directions(trainer, micro, sites)
        squares = sum((g.float() ** 2).sum() for per_site in eps for g in per_site) * weight
        norm = trainer.accelerator.reduce(squares.reshape(1), reduction="sum").sqrt().item()
        self.last_norm = norm
        factor = self.rho / norm if norm > 0 else 0.0

        def perturb(i, call, out):  # call k of a site is micro-batch k's forward
            return out + (eps[call][i] * factor).to(out.dtype)
        with site_hooks(sites, perturb, calls=len(micro)):  # pass 2: the trainer's own accumulation
            return trainer.backward_micro_batches(micro, scale, weight)


class RandomVaccineStrategy(VaccineStrategy):
    """One pass of f with a Gaussian perturbation of global norm rho (Vaccine's ablation). Each row
    draws its noise from its own seed (run seed, step, example, chosen/rejected), on real tokens only,
    so the step does not depend on how the batch is split."""

    def directions(self, trainer, micro, sites):
        hidden = base_model_of(trainer.model).config.hidden_size
        result = []
        for chunk in micro:
            examples = [trainer.train_set[i] for i in chunk]
            if not self.loss.needs_rejected:  # the rows `policy_logps` scores
                examples = [PreferenceExample(e.prompt_ids, e.chosen_ids) for e in examples]
            lengths = collate_pairs(examples, trainer.pad_id).attention_mask.sum(-1).tolist()
            noise = torch.zeros(len(sites), len(lengths), max(lengths), hidden)
            for r, length in enumerate(lengths):
                key = (trainer.config.seed, trainer.step, chunk[r % len(chunk)], r >= len(chunk))
                g = torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))
                noise[:, r, :length] = torch.randn(len(sites), length, hidden, generator=g)
            result.append([n.to(trainer.device) for n in noise])
        return result


# ----------------------------------------------------------------------------------------------
# Booster


def harmful_batch(step: int, count: int, batch_size: int, seed: int) -> list[int]:
    """Indices into the harmful set for optimizer step `step`: consecutive batches of a seeded
    permutation, a new permutation each pass over the set."""
    per_pass = math.ceil(count / batch_size)
    epoch, k = divmod(step, per_pass)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 7919 + 17 + epoch)).tolist()
    return order[k * batch_size:(k + 1) * batch_size]


def harmful_micro_batches(trainer, harmful_set: Sequence[PreferenceExample]) -> tuple[list[list], int]:
    """This process's micro-batches of the step's harmful batch (`batch_size` examples of `harmful_set`,
    `harmful_batch`'s draw) and the global batch's size."""
    indices = harmful_batch(trainer.step, len(harmful_set), trainer.config.batch_size, trainer.config.seed)
    mine = [harmful_set[i] for i in indices[trainer.rank::trainer.world]]
    size = trainer.config.micro_batch_size or max(len(mine), 1)
    return [mine[i:i + size] for i in range(0, len(mine), size)], len(indices)


class BoosterStrategy(PreferenceStrategy):
    """grad f(w) + lambda (grad h(w) - grad h(w - alpha grad h / ||grad h||)), h on a harmful batch of
    `batch_size` examples per step."""

    def __init__(self, config, harmful_set: Sequence[PreferenceExample]):
        super().__init__(config)
        if not harmful_set:
            raise ConfigError("defense 'booster' needs a harmful set (prompts with harmful answers) during alignment")
        self.harmful_set = list(harmful_set)
        self.lam = float(setting(config, "booster_lambda"))
        self.alpha = float(setting(config, "booster_alpha"))
        self.last_harmful_losses = None  # (h(w), h(w')) global-batch means of the last step

    def harmful_gradient(self, trainer, micro: list[list[PreferenceExample]], total: int) -> tuple[list[Tensor], float]:
        """fp32 gradient of the global-batch mean of h w.r.t. the trainable parameters (all-reduced over
        processes; `.grad` untouched) and the mean h itself."""
        grads = [torch.zeros_like(p, dtype=torch.float32) for p in trainer.params]
        loss_sum = torch.zeros(1, device=trainer.device)
        for chunk in micro:
            with trainer.accelerator.no_sync(trainer.module):
                chosen, _, _ = trainer.policy_logps(chunk, with_rejected=False)
            losses = cross_entropy(chosen)
            parts = torch.autograd.grad(losses.sum() / total, trainer.params, allow_unused=True)
            for g, part in zip(grads, parts):
                if part is not None:
                    g += part.float()
            loss_sum += losses.detach().sum()
        flat = trainer.accelerator.reduce(torch.cat([g.reshape(-1) for g in grads] + [loss_sum]), reduction="sum")
        out, offset = [], 0
        for g in grads:
            out.append(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
        return out, (flat[-1] / total).item()

    def step_gradients(self, trainer, micro, scale, weight):
        harmful_micro, total = harmful_micro_batches(trainer, self.harmful_set)
        grad_h, h = self.harmful_gradient(trainer, harmful_micro, total)
        norm = torch.sqrt(sum((g ** 2).sum() for g in grad_h)).item()
        saved = [p.detach().clone() for p in trainer.params]
        try:
            with torch.no_grad():
                step = self.alpha / norm if norm > 0 else 0.0
                for p, g in zip(trainer.params, grad_h):
                    p.sub_((g * step).to(p.dtype))
            grad_h_moved, h_moved = self.harmful_gradient(trainer, harmful_micro, total)
        finally:
            with torch.no_grad():
                for p, w in zip(trainer.params, saved):
                    p.copy_(w)
        self.last_harmful_losses = (h, h_moved)
        stats = trainer.backward_micro_batches(micro, scale, weight)  # grad f(w), DDP-averaged
        with torch.no_grad():
            for p, g, g_moved in zip(trainer.params, grad_h, grad_h_moved):
                extra = (self.lam * (g - g_moved)).to(p.dtype)
                if p.grad is None:
                    p.grad = extra
                else:
                    p.grad.add_(extra)
        return stats


# ----------------------------------------------------------------------------------------------


def tvaccine(config, harmful_set):
    from harmful_ft.tvaccine import TVaccineStrategy  # its module imports this one

    return TVaccineStrategy(config, harmful_set)


def repnoise(config, harmful_set):
    from harmful_ft.repnoise import RepNoiseStrategy  # its module imports this one

    return RepNoiseStrategy(config, harmful_set)


DEFENSES = {
    "sft": lambda config, harmful_set: PreferenceStrategy(config),
    "vaccine": lambda config, harmful_set: VaccineStrategy(config),
    "random_vaccine": lambda config, harmful_set: RandomVaccineStrategy(config),
    "booster": lambda config, harmful_set: BoosterStrategy(config, harmful_set),
    "tvaccine": tvaccine,
    "repnoise": repnoise,
}
NEEDS_HARMFUL_SET = ("booster", "tvaccine", "repnoise")  # defenses that read provider-held harmful data


def make_strategy(name: str, config, harmful_set: Optional[Sequence[PreferenceExample]] = None) -> StepStrategy:
    """The step strategy of defense `name` (a key of `DEFENSES`) bound to `config`'s hyper-parameters;
    `harmful_set`: harmful SFT examples (rejected_ids None), needed by those in `NEEDS_HARMFUL_SET`."""
    if name not in DEFENSES:
        raise ConfigError(f"defense {name!r}: expected one of {', '.join(DEFENSES)}")
    return DEFENSES[name](config, harmful_set)
