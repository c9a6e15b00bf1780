"""RepNoise on a random tiny Llama: the MMD against a naive double loop in float64 (0 for equal samples, > 0
for shifted ones), the step's gradient against one float64 backward of the whole loss written from
the model's hidden states, a finite loss with token id 0 in the data (masks, not ids), a constant hook
count over steps, and accumulation = one big batch."""
import copy
import functools
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from common.data import PreferenceExample, collate_pairs
from common.trainer import TrainerCallback
from harmful_ft.defenses import harmful_batch, make_strategy
from harmful_ft.repnoise import mmd
from tests.conftest import random_llama
from tests.harmful_ft.test_defenses import (
    DefenseConfig,
    assert_accumulation_is_one_big_batch,
    defense_trainer,
    mean_nll,
    sft_examples,
)
from tests.harmful_ft.test_defenses import config as defense_config


@dataclass
class RepNoiseConfig(DefenseConfig):
    repnoise_beta: float = 0.001
    repnoise_alpha: float = 1.0


config = functools.partial(defense_config, RepNoiseConfig)


def trainer_for(model, tmp_path, harmful, aligned=None, **kw):
    return defense_trainer("repnoise", config(**kw), model, tmp_path, harmful, aligned)


def naive_mmd(x, y, kernels=5, multiplier=2.0):
    """The public formula, entry by entry in float64."""
    z = [r.double() for r in torch.cat([x, y])]
    n, total = len(x), len(x) + len(y)
    d = [[((z[i] - z[j]) ** 2).sum() for j in range(total)] for i in range(total)]
    bandwidth = sum(d[i][j] for i in range(total) for j in range(total) if i != j).item() / (total * total - total)

    def k(i, j):
        return sum(math.exp(-d[i][j].item() / (bandwidth * multiplier ** (q - kernels // 2))) for q in range(kernels))
    xx = sum(k(i, j) for i in range(n) for j in range(n)) / n ** 2
    yy = sum(k(i, j) for i in range(n, total) for j in range(n, total)) / (total - n) ** 2
    xy = sum(k(i, j) for i in range(n) for j in range(n, total)) / (n * (total - n))
    return xx + yy - 2 * xy


def test_mmd_is_zero_for_equal_samples_positive_for_shifted_ones_and_matches_a_double_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 10, generator=g, dtype=torch.float64)
    y = torch.randn(6, 10, generator=g, dtype=torch.float64)
    assert abs(mmd(x, x).item()) < 1e-12
    assert mmd(x, x + 1.0).item() > 0.1
    assert mmd(x, x + 1.0).item() > mmd(x, x + 0.1).item() > 0
    assert mmd(x, y).item() == pytest.approx(naive_mmd(x, y), rel=1e-10)
    assert mmd(x[:4], y).item() == pytest.approx(naive_mmd(x[:4], y), rel=1e-10)  # unequal sizes
    assert mmd(x.float(), y.float()).item() == pytest.approx(naive_mmd(x, y), rel=1e-4)


def hand_loss(model, batch, harmful, beta, alpha, noise):
    """f + beta MMD - alpha log(L_harm + 1) from the model's hidden states and hooked MLP outputs."""
    layers = model.model.layers
    f = mean_nll(model, batch)
    h = collate_pairs(harmful, 0)
    mlp = []
    handles = [layer.mlp.register_forward_hook(lambda m, a, out: mlp.append(out)) for layer in layers]
    out = model(input_ids=h.input_ids, attention_mask=h.attention_mask, output_hidden_states=True)
    for handle in handles:
        handle.remove()
    answer = h.completion_mask.bool() & h.attention_mask.bool()
    target = answer[:, 1:]
    labels = h.input_ids[:, 1:][target]
    lens = [model.lm_head(model.model.norm(out.hidden_states[i + 1])) for i in range(len(layers) - 1)] + [out.logits]
    harm = sum(F.cross_entropy(logits[:, :-1][target].double(), labels) for logits in lens) / len(layers)
    noise_term = 0.0
    for i, o in enumerate(mlp):
        x = (o.double() * answer[..., None]).flatten(1)
        y = torch.zeros_like(o, dtype=torch.float64)
        for row in range(len(harmful)):
            y[row, answer[row]] = noise[row][i].double()
        noise_term = noise_term + mmd(x, y.flatten(1))  # mmd itself is checked against the double loop above
    return f + beta * noise_term / len(layers) - alpha * torch.log(harm + 1), harm


def test_step_is_the_gradient_of_the_whole_loss(tmp_path):
    beta, alpha, batch = 1.0, 1.0, sft_examples(0, 4)  # beta 1: the MMD's gradient is visible at the tolerance
    harmful_set = sft_examples(1, 4)
    model = random_llama()
    trainer = trainer_for(model, tmp_path, harmful_set, batch, repnoise_beta=beta, repnoise_alpha=alpha)
    order = harmful_batch(0, 4, 4, 0)  # the step's harmful batch, in its order
    harmful = [harmful_set[i] for i in order]
    noise = [trainer.strategy.noise(trainer, row, e.length - len(e.prompt_ids), 2, 32) for row, e in enumerate(harmful)]
    hand = copy.deepcopy(model).double()
    expected, harm = {}, None
    for b in (beta, 0.0):
        hand.zero_grad()
        loss, harm = hand_loss(hand, batch, harmful, b, alpha, noise)
        loss.backward()
        expected[b] = {k: p.grad.clone() for k, p in hand.named_parameters()}
    micro = trainer.micro_batches(trainer.batch_indices(0))
    trainer.strategy.step_gradients(trainer, micro, 1 / 4, 1.0)
    assert trainer.strategy.last_harmful_loss == pytest.approx(harm.item(), rel=1e-5)
    scale = max(g.abs().max().item() for g in expected[beta].values())
    visible = False
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad.double(), expected[beta][k], rtol=1e-4, atol=1e-5 * scale, msg=k)
        visible |= (expected[beta][k] - expected[0.0][k]).abs().max().item() > 1e-3 * scale
    assert visible  # the MMD term moves the step well beyond the tolerance


def test_token_id_zero_is_data_not_padding(tmp_path):
    """Answers and prompts full of token 0 (the pad id here): every answer token is scored and the loss
    is finite (the public code drops id-0 tokens from the harmful loss)."""
    harmful = [PreferenceExample([5, 0, 7], [0, 0, 9, 0], None, 0), PreferenceExample([0, 4], [0, 3], None, 1),
               PreferenceExample([6, 6, 0, 1], [2, 0, 0], None, 2), PreferenceExample([0], [0, 0, 0, 0, 8], None, 3)]
    trainer = trainer_for(random_llama(), tmp_path, harmful)
    grads, value, harm, terms = trainer.strategy.noise_gradients(trainer, [harmful])
    assert terms == 2 * sum(len(e.chosen_ids) for e in harmful)  # 2 layers x 14 answer tokens
    assert math.isfinite(value) and math.isfinite(harm) and value > 0
    trainer.train()
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_hooks_are_removed_every_step(tmp_path):
    model = random_llama()
    before = hook_count(model)
    counts = []

    class Count(TrainerCallback):
        def on_step_end(self, trainer, step):
            counts.append(hook_count(trainer.model))
    trainer = trainer_for(model, tmp_path, sft_examples(1, 4), max_steps=3, micro_batch_size=2)
    trainer.callbacks.append(Count())
    trainer.train()
    assert counts == [before] * 3


@pytest.mark.parametrize("micro", [1, 2])
def test_accumulation_gives_the_step_of_one_big_batch(tmp_path, micro):
    assert_accumulation_is_one_big_batch(trainer_for, random_llama, tmp_path, micro, repnoise_beta=1.0)


def test_needs_a_harmful_set_and_no_checkpointing():
    from common.errors import ConfigError

    with pytest.raises(ConfigError, match="repnoise' needs a harmful set"):
        make_strategy("repnoise", config())
    with pytest.raises(ConfigError, match="gradient_checkpointing"):
        make_strategy("repnoise", config(gradient_checkpointing=True), sft_examples(1, 2))


def test_paper_plan_carries_the_papers_values():
    from tests.harmful_ft.test_plans import align_config

    c = align_config("repnoise_llama2_7b.json", "repnoise")
    assert (c.repnoise_beta, c.repnoise_alpha, c.sft_loss_type, c.safety_data) == (
        0.001, 1.0, "token_mean", "repnoise_refusal")


def test_a_config_without_the_fields_gets_the_papers_values():
    from common.config import TrainConfig

    s = make_strategy("repnoise", TrainConfig(objective="cross_entropy"), sft_examples(1, 2))
    assert (s.beta, s.alpha) == (0.001, 1.0)
