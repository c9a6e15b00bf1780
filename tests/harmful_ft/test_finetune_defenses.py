"""Fine-tuning-stage (Lisa) and post-fine-tuning (Panacea, random perturbation) defenses on a random tiny
Llama: every step's gradient and the final perturbation against a float64 hand computation, Lisa's
schedule against a simulation of the public trainer's clock, the noise's norm and seeding."""
import copy
import functools
from dataclasses import dataclass

import pytest
import torch

from common.config import TrainConfig
from common.data import collate_pairs
from common.errors import TrainingError
from common.logprobs import sequence_logprobs
from common.trainer import Trainer, TrainerCallback
from harmful_ft.lisa import LisaStrategy, alignment_batch, alignment_steps_before, is_alignment_step
from harmful_ft.post_training import PanaceaPerturbation, PanaceaStrategy, RandomPerturbation, gaussian_noise
from tests.conftest import random_llama
from tests.harmful_ft.test_defenses import TOKENIZER, sft_examples
from tests.harmful_ft.test_defenses import config as defense_config


@dataclass
class DefenseConfig(TrainConfig):
    lisa_rho: float = 1.0
    lisa_align_steps: int = 1
    lisa_finetune_steps: int = 2
    lisa_proximal_after: float = 0.0
    panacea_lambda: float = 0.5
    panacea_rho: float = 1.0
    panacea_clamp: float = 100.0


config = functools.partial(defense_config, DefenseConfig, weight_decay=0.0)


class Weights(TrainerCallback):
    """The trainable weights after every step (index 0: before training)."""

    def __init__(self):
        self.after = []

    def on_train_begin(self, trainer):
        self.after = [{k: p.detach().clone() for k, p in trainer.model.named_parameters()}]

    def on_step_end(self, trainer, step):
        self.after.append({k: p.detach().clone() for k, p in trainer.model.named_parameters()})


def grad64(model, weights, examples):
    """Gradient (float64) of the mean NLL of `examples` at `weights`, by a copy of the model."""
    w = copy.deepcopy(model).double()
    w.load_state_dict({k: v.double() for k, v in weights.items()})
    batch = collate_pairs(examples, 0)
    (-sequence_logprobs(w, batch.input_ids, batch.attention_mask, batch.completion_mask).mean()).backward()
    return {k: p.grad for k, p in w.named_parameters()}


def close(got, expected):
    scale = max(e.abs().max().item() for e in expected.values())
    for k in expected:
        torch.testing.assert_close(got[k].double(), expected[k], rtol=1e-4, atol=1e-5 * scale, msg=k)


# ----------------------------------------------------------------------------------------------
# Lisa


def public_lisa_states(steps, align_steps, finetune_steps):
    """The public LisaTrainer's check_mode, replayed: the state each training step runs in."""
    status, clock, states = "alignment", 0, []
    for s in range(steps):
        if status == "alignment" and clock % align_steps == 0 and s != 0:
            status, clock = "finetune", 0
        elif status == "finetune" and clock % finetune_steps == 0 and s != 0:
            status, clock = "alignment", 0
        states.append(status == "alignment")
        clock += 1
    return states


@pytest.mark.parametrize("align_steps, finetune_steps", [(100, 900), (2, 3), (1, 1)])
def test_lisa_alternates_as_the_public_trainer(align_steps, finetune_steps):
    states = public_lisa_states(2500, align_steps, finetune_steps)
    assert [is_alignment_step(s, align_steps, finetune_steps) for s in range(2500)] == states
    assert [alignment_steps_before(s, align_steps, finetune_steps) for s in range(2500)] == \
           [sum(states[:s]) for s in range(2500)]


def test_alignment_batches_are_seeded_permutations_continuing_across_passes():
    stream = [i for k in range(7) for i in alignment_batch(k, 5, 3, seed=0)]  # 21 draws from 5 examples
    for start in range(0, 20, 5):
        assert sorted(stream[start:start + 5]) == list(range(5))
    assert stream[:5] != stream[5:10] and alignment_batch(2, 5, 3, seed=0) == alignment_batch(2, 5, 3, seed=0)


def test_lisa_steps_train_on_alignment_then_user_data_with_the_proximal_pull(tmp_path):
    """K_align 1, K_ft 2: step 0 on the alignment batch (no proximal term: it starts at step > 0), step 1
    on user batch 1 (the anchor is the weights when fine-tuning began: a zero pull), step 2 on user batch
    0 with rho (w2 - w1)."""
    rho, user, alignment = 0.7, sft_examples(0, 8), sft_examples(2, 4)  # one alignment batch = the whole set
    model = random_llama()
    cfg = config(max_steps=3, lisa_rho=rho)
    strategy, weights = LisaStrategy(cfg, alignment), Weights()
    Trainer(cfg, copy.deepcopy(model), TOKENIZER, user, tmp_path, strategy=strategy, callbacks=[weights]).train()
    w = weights.after

    def step(t):
        return {k: w[t][k] - w[t + 1][k] for k in w[t]}  # SGD, lr 1: the step's gradient

    close(step(0), grad64(model, w[0], alignment))
    close(step(1), grad64(model, w[1], user[4:8]))
    g = grad64(model, w[2], user[0:4])
    pull = {k: rho * (w[2][k].double() - w[1][k].double()) for k in g}
    assert max(p.abs().max().item() for p in pull.values()) > 1e-3  # the term is not nil
    close(step(2), {k: g[k] + pull[k] for k in g})
    assert strategy.last_proximal == pytest.approx(rho / 2 * sum((p / rho).pow(2).sum().item()
                                                                 for p in pull.values()), rel=1e-4)


def test_lisa_proximal_term_waits_for_its_share_of_the_steps(tmp_path):
    user, alignment = sft_examples(0, 8), sft_examples(2, 4)
    cfg = config(max_steps=3, lisa_proximal_after=0.7)  # on at step t > 2.1: never in 3 steps
    strategy, weights = LisaStrategy(cfg, alignment), Weights()
    model = random_llama()
    Trainer(cfg, copy.deepcopy(model), TOKENIZER, user, tmp_path, strategy=strategy, callbacks=[weights]).train()
    w = weights.after
    close({k: w[2][k] - w[3][k] for k in w[2]}, grad64(model, w[2], user[0:4]))
    assert strategy.last_proximal is None


def test_lisa_refuses_to_resume_without_its_anchor(tmp_path):
    cfg = config(max_steps=3)
    trainer = Trainer(cfg, random_llama(), TOKENIZER, sft_examples(0, 8), tmp_path,
                      strategy=LisaStrategy(cfg, sft_examples(2, 4)))
    trainer.step = 2
    with pytest.raises(TrainingError, match="cannot resume"):
        trainer.train_step(2)


# ----------------------------------------------------------------------------------------------
# Panacea


def panacea_expected(model, weights, user, harmful, lam, rho, clamp):
    grad_g, grad_h = grad64(model, weights, user), grad64(model, weights, harmful)
    norm = torch.sqrt(sum((g ** 2).sum() for g in grad_h.values()))
    eps = {k: rho * g / norm for k, g in grad_h.items()}
    moved = {k: v.double() + eps[k] for k, v in weights.items()}
    w = copy.deepcopy(model).double()
    w.load_state_dict(moved)
    batch = collate_pairs(harmful, 0)
    h_moved = -sequence_logprobs(w, batch.input_ids, batch.attention_mask, batch.completion_mask).mean()
    grad_moved = grad64(model, moved, harmful)
    if h_moved.item() > clamp:
        grad_moved = {k: torch.zeros_like(g) for k, g in grad_moved.items()}
    return {k: grad_g[k] - lam * (grad_moved[k] - grad_h[k]) for k in grad_g}, eps


@pytest.mark.parametrize("clamp", [100.0, 1e-3])  # 1e-3: h(w + eps) is above the clamp, its gradient is 0
def test_panacea_step_matches_a_float64_recomputation(tmp_path, clamp):
    lam, rho, user, harmful = 0.5, 1.0, sft_examples(0, 4), sft_examples(1, 4)  # one harmful batch = the set
    model = random_llama()
    cfg = config(panacea_lambda=lam, panacea_rho=rho, panacea_clamp=clamp)
    strategy, weights = PanaceaStrategy(cfg, harmful), Weights()
    Trainer(cfg, copy.deepcopy(model), TOKENIZER, user, tmp_path, strategy=strategy, callbacks=[weights]).train()
    w = weights.after
    expected, eps = panacea_expected(model, w[0], user, harmful, lam, rho, clamp)
    close({k: w[0][k] - w[1][k] for k in w[0]}, expected)
    trainable = [k for k, _ in model.named_parameters()]
    close(dict(zip(trainable, strategy.last_eps)), eps)


def test_panacea_adds_eps_at_the_final_weights_once_after_training(tmp_path):
    """w_T + rho grad h(w_T) / ||grad h(w_T)||, h over the whole harmful set (6 examples: two batches)."""
    rho, user, harmful = 0.3, sft_examples(0, 8), sft_examples(1, 6)
    model = random_llama()
    cfg = config(max_steps=2, lr=0.1, panacea_rho=rho)
    weights, trained = Weights(), copy.deepcopy(model)
    trainer = Trainer(cfg, trained, TOKENIZER, user, tmp_path, strategy=PanaceaStrategy(cfg, harmful),
                      callbacks=[weights, PanaceaPerturbation()])
    summary = trainer.train()
    w_T = weights.after[-1]
    grad_h = grad64(model, w_T, harmful)
    norm = torch.sqrt(sum((g ** 2).sum() for g in grad_h.values()))
    added = {k: p.detach() - w_T[k] for k, p in trained.named_parameters()}
    close(added, {k: rho * g / norm for k, g in grad_h.items()})
    assert summary["post_training"]["perturbation_norm"] == pytest.approx(rho, rel=1e-5)  # one eps, not two


# ----------------------------------------------------------------------------------------------
# Random perturbation


def test_random_perturbation_adds_seeded_noise_of_norm_sqrt_numel_std(tmp_path):
    """Defined by its per-element std: ||z|| = sqrt(numel) std within 3% (the norm's relative sd is
    1 / sqrt(2 numel), under 0.2% here); the same seed gives the same noise, another seed another."""
    std, model = 0.02, random_llama()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    cfg = config(lr=0.0)  # the step moves nothing: only the post-training noise changes the weights
    summary = Trainer(cfg, model, TOKENIZER, sft_examples(0, 4), tmp_path,
                      callbacks=[RandomPerturbation(std, seed=5)]).train()
    added = {k: p.detach() - before[k] for k, p in model.named_parameters()}
    numel = sum(v.numel() for v in added.values())
    norm = torch.sqrt(sum((v.double() ** 2).sum() for v in added.values())).item()
    assert norm == pytest.approx(numel ** 0.5 * std, rel=0.03)
    assert summary["post_training"]["perturbation_norm"] == pytest.approx(norm, rel=1e-5)
    flat = torch.cat([v.reshape(-1) for v in added.values()])
    assert flat.mean().abs() < 3 * std / numel ** 0.5 and flat.std().item() == pytest.approx(std, rel=0.03)
    named = list(model.named_parameters())
    same = gaussian_noise(named, std, seed=5)
    for (k, v), z in zip(added.items(), same):
        torch.testing.assert_close(v, z, rtol=0, atol=1e-6, msg=k)  # applied once, from (seed, name)
    other = gaussian_noise(named, std, seed=6)
    assert not any(torch.equal(a, b) for a, b in zip(same, other))


@pytest.mark.parametrize("fields, message", [
    ({"finetune_defense": "lisa", "optimizer": "mezo"}, "forward-only optimizer mezo"),
    ({"finetune_defense": "panacea", "optimizer": "tezo"}, "forward-only optimizer tezo"),
    ({"finetune_defense": "shield"}, "shield"),
])
def test_bad_finetune_defense_settings_are_one_clear_error(fields, message):
    from common.config import from_dict
    from common.errors import ConfigError
    from harmful_ft.config import FinetuneConfig

    with pytest.raises(ConfigError, match=message):
        from_dict(FinetuneConfig, {"model": "outputs/tiny_models/tiny-chat", **fields}).validate()
