"""T-Vaccine on a random 4-layer Llama: the layer scores against hand-computed harmful-gradient norms, the
draw's frequencies against the exact probabilities of sequential sampling, the step against a hand
Vaccine restricted to the drawn layers, only those layers (and the parameters outside the decoder
layers) getting a gradient, and accumulation = one big batch."""
import copy
import functools
import itertools
from dataclasses import dataclass

import pytest
import torch

from common.trainer import TrainerCallback
from harmful_ft.defenses import make_strategy
from harmful_ft.tvaccine import sample_layers
from tests.conftest import random_llama
from tests.harmful_ft.test_defenses import (
    DefenseConfig,
    assert_accumulation_is_one_big_batch,
    defense_trainer,
    mean_nll,
    sft_examples,
    site_output_grads,
)
from tests.harmful_ft.test_defenses import config as defense_config


@dataclass
class TVaccineConfig(DefenseConfig):
    tvaccine_rho: float = 3.0
    tvaccine_layers: int = 2
    tvaccine_sample_every: int = 20
    tvaccine_score_every: int = 200
    tvaccine_score_samples: int = 200


config = functools.partial(defense_config, TVaccineConfig)


def llama4():
    return random_llama(num_layers=4)


def trainer_for(model, tmp_path, harmful, **kw):
    return defense_trainer("tvaccine", config(**kw), model, tmp_path, harmful)


def attention_output_grads(model, examples):
    return site_output_grads(model, [layer.self_attn for layer in model.model.layers], examples)


def test_scores_are_the_harmful_gradient_norms_at_each_attention_output(tmp_path):
    harmful = sft_examples(1, 6)
    model = llama4()
    expected = torch.stack([g.norm() for g in attention_output_grads(copy.deepcopy(model), harmful)])
    trainer = trainer_for(model, tmp_path, harmful, tvaccine_score_samples=6)
    got = trainer.strategy.score_layers(trainer)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-7)
    assert all(p.grad is None for p in model.parameters())  # scoring leaves .grad untouched


def exact_inclusion(probs, count):
    """P(layer in the draw) for sequential sampling without replacement, by enumerating ordered draws."""
    inclusion = [0.0] * len(probs)
    for order in itertools.permutations(range(len(probs)), count):
        p, left = 1.0, 1.0
        for i in order:
            p *= probs[i] / left
            left -= probs[i]
        for i in order:
            inclusion[i] += p
    return inclusion


@pytest.mark.parametrize("count", [1, 2])
def test_draw_frequencies_follow_the_scores(count):
    scores = torch.tensor([4.0, 1.0, 2.0, 0.5, 2.5])
    probs = (scores / scores.sum()).tolist()
    draws = 20000
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(len(scores))
    for _ in range(draws):
        chosen = sample_layers(scores, count, g)
        assert len(set(chosen)) == count
        counts[chosen] += 1
    expected = torch.tensor(exact_inclusion(probs, count)) * draws
    if count == 1:  # proportional to the scores: chi-square, 4 degrees of freedom, 99.9% quantile 18.47
        torch.testing.assert_close(expected / draws, scores / scores.sum())
        assert ((counts - expected) ** 2 / expected).sum() < 18.47
    else:  # each count within 4 binomial standard deviations of the exact inclusion probability
        p = expected / draws
        assert ((counts - expected).abs() <= 4 * (draws * p * (1 - p)).sqrt()).all(), (counts, expected)
    assert sample_layers(scores, 9, g) == [0, 1, 2, 3, 4]  # S >= L: every layer


def test_only_the_drawn_layers_get_gradients_and_the_step_is_vaccine_on_them(tmp_path):
    rho, batch, harmful = 3.0, sft_examples(0, 4), sft_examples(1, 6)
    model = llama4()
    hand = copy.deepcopy(model)
    trainer = trainer_for(model, tmp_path, harmful, tvaccine_rho=rho)
    micro = trainer.micro_batches(trainer.batch_indices(0))
    trainer.strategy.step_gradients(trainer, micro, 1 / 4, 1.0)
    chosen = trainer.strategy.chosen
    assert len(chosen) == 2
    layer_of = {id(p): i for i, layer in enumerate(model.model.layers) for p in layer.parameters()}
    for name, p in model.named_parameters():
        assert p.requires_grad, name  # the freeze lasts one step
        if layer_of.get(id(p), chosen[0]) in chosen:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    # By hand: Vaccine whose perturbation lives on the drawn layers' attention outputs only.
    g = attention_output_grads(hand, batch)
    norm = torch.sqrt(sum((g[i] ** 2).sum() for i in chosen))
    eps = {i: rho * g[i] / norm for i in chosen}

    def add(i):
        return lambda m, a, out: (out[0] + eps[i], *out[1:])
    handles = [hand.model.layers[i].self_attn.register_forward_hook(add(i)) for i in chosen]
    mean_nll(hand, batch).backward()
    for h in handles:
        h.remove()
    for (name, p), (_, q) in zip(model.named_parameters(), hand.named_parameters()):
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=2e-6, msg=name)


def test_layers_are_redrawn_and_rescored_on_schedule(tmp_path):
    harmful = sft_examples(1, 6)
    trainer = trainer_for(llama4(), tmp_path, harmful, tvaccine_layers=1, tvaccine_sample_every=2,
                          tvaccine_score_every=4, max_steps=8)
    scored, draws, score = [], [], trainer.strategy.score_layers

    def counting(t):
        scored.append(t.step)
        return score(t)
    trainer.strategy.score_layers = counting

    class Record(TrainerCallback):
        def on_step_end(self, t, step):
            draws.append(list(t.strategy.chosen))
    trainer.callbacks.append(Record())
    trainer.train()
    assert scored == [0, 4]
    assert all(draws[k] == draws[k + 1] for k in (0, 2, 4, 6))  # one draw per two steps


@pytest.mark.parametrize("micro", [1, 2])
def test_accumulation_gives_the_step_of_one_big_batch(tmp_path, micro):
    assert_accumulation_is_one_big_batch(trainer_for, llama4, tmp_path, micro, tvaccine_sample_every=1)


def test_needs_a_harmful_set():
    from common.errors import ConfigError

    with pytest.raises(ConfigError, match="tvaccine' needs a harmful set"):
        make_strategy("tvaccine", config())


def test_paper_plan_carries_the_papers_values():
    from tests.harmful_ft.test_plans import align_config

    c = align_config("tvaccine_llama2_7b.json", "tvaccine")
    assert (c.tvaccine_rho, c.tvaccine_layers, c.tvaccine_sample_every, c.tvaccine_score_every,
            c.tvaccine_score_samples, c.lr, c.num_epochs, c.batch_size) == (3.0, 8, 20, 200, 200, 1e-3, 50, 5)


def test_a_config_without_the_fields_gets_the_papers_values():
    from common.config import TrainConfig

    s = make_strategy("tvaccine", TrainConfig(objective="cross_entropy"), sft_examples(1, 2))
    assert (s.rho, s.layers, s.sample_every, s.score_every, s.score_samples) == (3.0, 8, 20, 200, 200)
