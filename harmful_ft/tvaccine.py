"""T-Vaccine (Liu et al. 2024, "Targeted Vaccine"): Vaccine on a few layers chosen by their harmful gradient.

Every `tvaccine_score_every` steps (200) each decoder layer l is scored by s_l = ||d h / d e_l||, the L2
norm of the gradient of the harmful loss h (summed over `tvaccine_score_samples` = 200 provider-held
harmful examples) at the output e_l of the layer's attention (the Vaccine site), over all tokens and
examples, all-reduced over processes. Every `tvaccine_sample_every` steps (20) S = `tvaccine_layers`
(8) distinct layers are drawn, each draw with probability proportional to s_l among the layers not yet
drawn (sequential sampling without replacement, seeded by the run seed and the draw). Each step is
then Vaccine's (harmful_ft/defenses.py) restricted to the drawn layers: eps_l = rho g_l /
||(g_l)_{l in S}|| with rho = `tvaccine_rho` (3), and the other decoder layers frozen for the step
(requires_grad false during its passes, restored after), so their parameters get no gradient and the
optimizer leaves them (and their moments) untouched. Parameters outside the decoder layers
(embeddings, final norm, head) are not sampled and train every step.

The public code's TAR writes a gradient through `param.data.grad = ...`, which sets the attribute of
a detached view and leaves `param.grad` unchanged: the optimizer never sees it. Here autograd writes
the step's gradient into `param.grad` of the drawn layers; tests/harmful_ft/test_tvaccine.py checks
that they, and only they, get one.
"""
from __future__ import annotations

import zlib
from typing import Optional, Sequence

import torch
from torch import Tensor

from common.data import PreferenceExample
from common.errors import ConfigError, TrainingError
from common.losses import cross_entropy
from harmful_ft.defenses import VaccineStrategy, decoder_layers, harmful_batch, site_hooks

TVACCINE_DEFAULTS = {"tvaccine_rho": 3.0, "tvaccine_layers": 8, "tvaccine_sample_every": 20,
                     "tvaccine_score_every": 200, "tvaccine_score_samples": 200}


def sample_layers(scores: Tensor, count: int, generator: torch.Generator) -> list[int]:
    """`count` distinct layer indices, each draw proportional to `scores` among the layers left (all
    layers when count >= their number). A layer scored 0 is drawn only once the positive ones are gone."""
    if count >= len(scores):
        return list(range(len(scores)))
    weights = scores.double().clamp_min(1e-300)
    return sorted(torch.multinomial(weights, count, replacement=False, generator=generator).tolist())


class TVaccineStrategy(VaccineStrategy):
    """Vaccine on the sampled layers only, the other decoder layers frozen (see the module docstring)."""

    def __init__(self, config, harmful_set: Optional[Sequence[PreferenceExample]]):
        super().__init__(config)
        if not harmful_set:
            raise ConfigError("defense 'tvaccine' needs a harmful set (prompts with harmful answers) during alignment")
        self.harmful_set = list(harmful_set)
        def read(name):  # the config's value, or the paper's for a config without the field
            default = TVACCINE_DEFAULTS[name]
            return type(default)(getattr(config, name, default))
        self.rho = read("tvaccine_rho")  # replaces Vaccine's vaccine_rho
        self.layers, self.sample_every = read("tvaccine_layers"), read("tvaccine_sample_every")
        self.score_every, self.score_samples = read("tvaccine_score_every"), read("tvaccine_score_samples")
        self.scores: Optional[Tensor] = None  # s_l of the last scoring
        self.chosen: Optional[list[int]] = None  # the layers of the current draw

    def score_layers(self, trainer) -> Tensor:
        """s_l = ||d h / d e_l|| over a seeded draw of `score_samples` harmful examples (new each scoring);
        the parameters' .grad untouched."""
        indices = harmful_batch(trainer.step // self.score_every, len(self.harmful_set),
                                min(self.score_samples, len(self.harmful_set)), trainer.config.seed)
        mine = [self.harmful_set[i] for i in indices[trainer.rank::trainer.world]]
        size = trainer.config.micro_batch_size or trainer.config.batch_size
        sites = super().sites(trainer)
        squares = torch.zeros(len(sites), device=trainer.device)
        for start in range(0, len(mine), size):
            captured: list[Optional[Tensor]] = [None] * len(sites)

            def capture(i, call, out):
                captured[i] = out
            with trainer.accelerator.no_sync(trainer.module), site_hooks(sites, capture, calls=1):
                chosen, _, _ = trainer.policy_logps(mine[start:start + size], with_rejected=False)
            grads = torch.autograd.grad(cross_entropy(chosen).sum(), captured, allow_unused=True)
            squares += torch.stack([torch.zeros((), device=trainer.device) if g is None else (g.float() ** 2).sum()
                                    for g in grads])
        return trainer.accelerator.reduce(squares, reduction="sum").sqrt().cpu()

    def sites(self, trainer):
        return [site for i, site in enumerate(super().sites(trainer)) if i in self.chosen]

    def step_gradients(self, trainer, micro, scale, weight):
        if trainer.world > 1:
            raise TrainingError("defense tvaccine with several processes: DDP cannot follow parameters frozen "
                                "for one step and not the next; run one process")
        if self.scores is None or trainer.step % self.score_every == 0:
            self.scores = self.score_layers(trainer)
        if self.chosen is None or trainer.step % self.sample_every == 0:
            key = (trainer.config.seed, trainer.step // self.sample_every)
            generator = torch.Generator().manual_seed(zlib.crc32(repr(key).encode()))
            self.chosen = sample_layers(self.scores, self.layers, generator)
        frozen = [p for i, layer in enumerate(decoder_layers(trainer.model)) if i not in self.chosen
                  for p in layer.parameters() if p.requires_grad]
        try:
            for p in frozen:
                p.requires_grad_(False)
            return super().step_gradients(trainer, micro, scale, weight)
        finally:
            for p in frozen:
                p.requires_grad_(True)
