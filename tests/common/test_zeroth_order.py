"""Zeroth-order optimisers in the shared trainer: MeZO's estimate, seed replay, restore, a DPO run, micro-batches,
TeZO's projection, TeZO-Adam against a hand-rolled loop, 2 processes against 1."""
import math
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from common.config import TrainConfig
from common.data import PreferenceExample
from common.errors import TrainingError
from common.strategies import ClassificationExample, StepStrategy, StepTerms
from common.tracking import read_jsonl
from common.trainer import Trainer, TrainerCallback
from common.zeroth_order import MeZO, TeZOAdam
from tests.common.test_fsdp import max_gap, run, torchrun
from tests.conftest import random_llama
from tests.train_preferences.test_train_preferences import prefs  # noqa: F401 (fixture)

TOKENIZER = types.SimpleNamespace(pad_token_id=0)
DIM = 12


class Quadratic(nn.Module):
    """One parameter w (a DIM-vector, or a matrix) and the loss 0.5 (w - a)^T A (w - a) per example."""

    def __init__(self, shape=(DIM,)):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        n = math.prod(shape)
        self.w = nn.Parameter(torch.randn(shape, generator=g, dtype=torch.float64))
        self.a = torch.randn(n, generator=g, dtype=torch.float64)
        m = torch.randn(n, n, generator=g, dtype=torch.float64)
        self.A = m @ m.T / n + torch.eye(n, dtype=torch.float64)

    def loss(self):
        d = self.w.reshape(-1) - self.a
        return 0.5 * d @ self.A @ d

    def gradient(self):
        return (self.A @ (self.w.detach().reshape(-1) - self.a)).reshape(self.w.shape)


class QuadraticStrategy(StepStrategy):
    def losses(self, trainer, indices):
        value = trainer.model.loss()
        return StepTerms(value.expand(len(indices)), {}, torch.tensor(len(indices)))


def quadratic_run(tmp_path, steps, optimizer="mezo", lr=0.0, model=None, **kw):
    model = model or Quadratic()
    cfg = TrainConfig(model="quadratic", optimizer=optimizer, lr=lr, batch_size=2, max_steps=steps, seed=3,
                      shuffle=False, **kw)
    data = [ClassificationExample([1], 0, i) for i in range(2)]
    trainer = Trainer(cfg, model, TOKENIZER, data, tmp_path, strategy=QuadraticStrategy())
    trainer.train()
    return trainer, [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["kind"] == "train"]


def cosine(a, b):
    return (a.reshape(-1) @ b.reshape(-1) / (a.norm() * b.norm())).item()


def test_mezo_estimate_averaged_over_seeds_is_the_gradient(tmp_path):
    # lr 0: the weights stay put, so every step is an independent draw of the estimate c z at the same w.
    trainer, rows = quadratic_run(tmp_path, 1500)
    model, opt = trainer.model, trainer.optimizer
    assert all(p.grad is None for p in model.parameters())  # no backward ran
    mean = sum(r["projected_grad"] * opt.direction(0, model.w.data, r["step"] - 1) for r in rows) / len(rows)
    assert cosine(mean, model.gradient()) > 0.9
    # c is the directional derivative <grad, z> (central differences are exact on a quadratic)
    z = opt.direction(0, model.w.data, 7)
    assert rows[7]["projected_grad"] == pytest.approx((model.gradient() * z).sum().item(), rel=1e-6)


def test_seed_replay_and_the_update_rule(tmp_path):
    model = Quadratic()
    w0 = model.w.detach().clone()
    trainer, rows = quadratic_run(tmp_path, 1, lr=0.05, model=model)
    opt = trainer.optimizer
    z = opt.direction(0, model.w.data, 0)
    assert torch.equal(z, opt.direction(0, model.w.data, 0))  # replayed, never stored
    assert not torch.equal(z, opt.direction(0, model.w.data, 1))  # a fresh z each step
    assert opt.state_dict()["state"] == {}
    # the step's c recomputed independently at w0 from the same z, then w1 = w0 - lr c z
    probe = Quadratic()
    with torch.no_grad():
        probe.w.copy_(w0 + 1e-3 * z)
        plus = probe.loss()
        probe.w.copy_(w0 - 1e-3 * z)
        minus = probe.loss()
    c = ((plus - minus) / 2e-3).item()
    assert rows[0]["projected_grad"] == pytest.approx(c, rel=1e-6)
    assert torch.allclose(model.w.detach(), w0 - 0.05 * c * z, atol=1e-12)


def test_weight_decay_skips_vectors(tmp_path):
    opt = MeZO([nn.Parameter(torch.ones(3, 2)), nn.Parameter(torch.ones(2))], lr=0.1, weight_decay=0.5, eps=1e-3,
               seed=0)
    with torch.no_grad():
        opt.apply(0, 0.0, 0.1)  # c = 0: only decay moves the weights
    matrix, vector = opt.params
    assert torch.allclose(matrix, torch.full((3, 2), 1 - 0.1 * 0.5)) and torch.equal(vector, torch.ones(2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_perturb_restore_returns_the_weights_and_measures_the_error(dtype):
    model = random_llama().to(dtype)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = MeZO([p for p in model.parameters()], lr=0.0, weight_decay=0.0, eps=1e-3, seed=0)
    with torch.no_grad():
        measured = opt.perturb(5, 1.0, measure=True)
        opt.perturb(5, -2.0)
        opt.perturb(5, 1.0)
    actual = max((p.detach() - before[k]).abs().max().item() for k, p in model.named_parameters())
    assert measured == actual  # the replay on a copy is the cycle's own rounding
    largest = max(v.abs().max().item() for v in before.values())
    assert actual <= 4 * torch.finfo(dtype).eps * largest  # a few ulps of the largest weight
    if dtype == torch.float32:
        assert actual < 1e-6


def test_tezo_estimate_is_the_projection_onto_span_of_its_factors(tmp_path):
    model = Quadratic(shape=(12, 10))
    trainer, rows = quadratic_run(tmp_path, 600, optimizer="tezo", tezo_rank=2, model=model)
    opt, w = trainer.optimizer, model.w.data
    mean = sum(r["projected_grad"] * opt.direction(0, w, r["step"] - 1) for r in rows) / len(rows)
    u, v, _ = opt.factors(0, w, 0)
    u2, v2, tau = opt.factors(0, w, 1)
    assert torch.equal(u, u2) and torch.equal(v, v2)  # U, V fixed for the run, tau per step
    assert torch.allclose(opt.direction(0, w, 1), (u * tau) @ v.T / math.sqrt(2))
    basis = torch.stack([torch.outer(u[:, k], v[:, k]).reshape(-1) for k in range(2)], 1)  # (120, 2)
    g = model.gradient().reshape(-1)
    projection = basis @ torch.linalg.lstsq(basis, g[:, None]).solution[:, 0]
    assert cosine(mean, projection) > 0.9
    assert cosine(mean, g) < 0.5  # a 2-dimensional subspace of 120: far from the full gradient


def hand_rolled_tezo_adam(model, opt, steps, lr, eps, wd=0.0, b1=0.9, b2=0.999):
    """TeZO-Adam's trajectory recomputed in float64 from the closed-form moments of the coefficients
    (m_t = (1 - b1) sum_s b1^(t-s) g_s, v_t likewise with g_s^2) and explicit rank-1 sums: the random draws
    are the optimizer's (seed replay is tested above), everything else is computed here."""
    w, probe, gs, out = model.w.detach().clone(), Quadratic(model.w.shape), [], []
    matrix = w.dim() == 2
    r = opt.rank
    for t in range(steps):
        if matrix:
            u, v, tau = opt.factors(0, w, t)
            z = sum(tau[k] * torch.outer(u[:, k], v[:, k]) for k in range(r)) / math.sqrt(r)
            coefficients = tau
        else:
            z = opt.direction(0, w, t)
            coefficients = z
        with torch.no_grad():
            probe.w.copy_(w + eps * z)
            plus = probe.loss().item()
            probe.w.copy_(w - eps * z)
            minus = probe.loss().item()
        gs.append((plus - minus) / (2 * eps) * coefficients)
        m = (1 - b1) * sum(b1 ** (t - s) * g for s, g in enumerate(gs)) / (1 - b1 ** (t + 1))
        second = (1 - b2) * sum(b2 ** (t - s) * g * g for s, g in enumerate(gs)) / (1 - b2 ** (t + 1))
        if matrix:
            first = sum(m[k] * torch.outer(u[:, k], v[:, k]) for k in range(r)) / math.sqrt(r)
            full_second = sum(second[k] * torch.outer(u[:, k] ** 2, v[:, k] ** 2) for k in range(r)) / r
            w = w - lr * (first / (full_second.sqrt() + 1e-8) + wd * w)
        else:
            w = w - lr * m / (second.sqrt() + 1e-8)  # no decay on vectors
        out.append(w)
    return out, m, second


@pytest.mark.parametrize("shape", [(6, 5), (DIM,)])
def test_tezo_adam_follows_a_hand_rolled_adam_on_tau(tmp_path, shape):
    model = Quadratic(shape=shape)
    start = Quadratic(shape=shape)  # the same seeded weights, left at w0 for the hand-rolled run
    trainer, rows = quadratic_run(tmp_path, 3, optimizer="tezo_adam", tezo_rank=2, lr=0.01, model=model,
                                  weight_decay=0.1)
    opt = trainer.optimizer
    expected, m, second = hand_rolled_tezo_adam(start, opt, 3, lr=0.01, eps=1e-3, wd=0.1)
    assert torch.allclose(model.w.detach(), expected[-1], atol=1e-10, rtol=0)
    assert not torch.allclose(expected[-1], start.w.detach(), atol=1e-3)  # it moved
    state = opt.state[model.w]
    assert state["exp_avg"].shape == ((2,) if len(shape) == 2 else shape)  # r numbers per matrix
    # the stored moments are the bias-uncorrected ones of the closed forms
    assert torch.allclose(state["exp_avg"], m * (1 - 0.9 ** 3), atol=1e-12)
    assert torch.allclose(state["exp_avg_sq"], second * (1 - 0.999 ** 3), atol=1e-12)


def pairs():
    g = torch.Generator().manual_seed(0)

    def ids(n):
        return torch.randint(3, 97, (n,), generator=g).tolist()

    return [PreferenceExample(ids(4), ids(6), ids(6), i) for i in range(8)]


def llama_config(**kw):
    return TrainConfig(**{"model": "random", "objective": "dpo", "optimizer": "mezo", "lr": 1e-2, "batch_size": 8,
                          "shuffle": False, **kw})


def test_mezo_dpo_lowers_the_loss_of_a_tiny_llama(tmp_path):
    model = random_llama()
    trainable = sum(p.numel() for p in model.parameters())
    Trainer(llama_config(max_steps=100), model, TOKENIZER, pairs(), tmp_path).train()
    rows = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["kind"] == "train"]
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference (+- eps)
    assert sum(r["loss"] for r in rows[-10:]) / 10 < 0.62  # 0.693 -> ~0.55 in the probe runs
    assert all(0 <= r["restore_error"] < 1e-5 for r in rows) and "grad_norm" not in rows[0]
    assert all(p.grad is None for p in model.parameters()) and trainable > 0


def test_micro_batches_give_the_same_update(tmp_path):
    one, micro = random_llama(), random_llama()
    Trainer(llama_config(max_steps=3), one, TOKENIZER, pairs(), tmp_path / "a").train()
    Trainer(llama_config(max_steps=3, micro_batch_size=3), micro, TOKENIZER, pairs(), tmp_path / "b").train()
    a = [r["projected_grad"] for r in read_jsonl(tmp_path / "a" / "metrics.jsonl") if r["kind"] == "train"]
    b = [r["projected_grad"] for r in read_jsonl(tmp_path / "b" / "metrics.jsonl") if r["kind"] == "train"]
    assert a == pytest.approx(b, rel=1e-3, abs=1e-4)  # only the summation order of the losses differs
    for p, q in zip(one.parameters(), micro.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_zo_refuses_a_multi_pass_strategy(tmp_path):
    class TwoPass(QuadraticStrategy):
        def step_gradients(self, trainer, micro, scale, weight):
            return trainer.backward_micro_batches(micro, scale, weight)

    cfg = TrainConfig(model="q", optimizer="mezo", batch_size=2, max_steps=1)
    with pytest.raises(TrainingError, match="multi-pass strategy TwoPass would be ignored"):
        Trainer(cfg, Quadratic(), TOKENIZER, [ClassificationExample([1], 0, 0)], tmp_path, strategy=TwoPass())


class StopAt(TrainerCallback):
    def on_step_end(self, trainer, step):
        if step == 3:
            raise KeyboardInterrupt


def test_interrupted_mezo_run_resumes_to_the_same_weights(tmp_path):
    cfg = llama_config(max_steps=5, save_every_steps=2, batch_size=4)
    straight = random_llama()
    Trainer(cfg, straight, TOKENIZER, pairs(), tmp_path / "straight").train()
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, random_llama(), TOKENIZER, pairs(), tmp_path / "resumed", callbacks=[StopAt()]).train()
    resumed = random_llama()
    Trainer(cfg, resumed, TOKENIZER, pairs(), tmp_path / "resumed").train()  # from the step-2 checkpoint
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)  # z is a function of (seed, step): the resumed steps draw the same z


def test_mezo_with_lora_moves_only_the_adapters(tmp_path):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)  # B != 0: a live adapter
    model = get_peft_model(random_llama(), lora)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    Trainer(llama_config(max_steps=2, lr=1e-3, zo_eps=1e-2), model, TOKENIZER, pairs(), tmp_path).train()
    for k, p in model.named_parameters():
        assert torch.equal(p, before[k]) != p.requires_grad, k  # adapters moved, frozen weights bit-identical


def test_mezo_with_fsdp_is_refused_at_the_config():
    from common.config import FieldError

    with pytest.raises(FieldError, match="optimizer mezo with fsdp is not supported") as info:
        TrainConfig(model="m", optimizer="mezo", fsdp=True).validate()
    assert info.value.field == "fsdp"
    with pytest.raises(FieldError, match="optimizer tezo_adam with fsdp is not supported"):
        TrainConfig(model="m", optimizer="tezo_adam", fsdp=True).validate()
    TrainConfig(model="m", optimizer="tezo", tezo_rank=2).validate()  # a plain ZO config passes


def test_interrupted_tezo_adam_run_resumes_its_moments(tmp_path):
    cfg = llama_config(optimizer="tezo_adam", tezo_rank=2, lr=1e-3, max_steps=4, save_every_steps=2, batch_size=4)
    straight = random_llama()
    Trainer(cfg, straight, TOKENIZER, pairs(), tmp_path / "straight").train()
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, random_llama(), TOKENIZER, pairs(), tmp_path / "resumed", callbacks=[StopAt()]).train()
    resumed = random_llama()
    Trainer(cfg, resumed, TOKENIZER, pairs(), tmp_path / "resumed").train()
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)  # the tau moments came back from the checkpoint


def test_tezo_adam_moments_stay_fp32_through_a_checkpoint_of_bf16_weights():
    def optimizer(weights):
        return TeZOAdam(weights, lr=1e-3, weight_decay=0.0, eps=1e-2, seed=0, rank=2)

    weights = [nn.Parameter(torch.ones(6, 4, dtype=torch.bfloat16)), nn.Parameter(torch.ones(4, dtype=torch.bfloat16))]
    saved = optimizer(weights)
    with torch.no_grad():
        saved.apply(0, 0.123456789, 1e-3)
    loaded = optimizer(weights)
    loaded.load_state_dict(saved.state_dict())  # torch alone would cast the moments to bfloat16
    for p in weights:
        for key in ("exp_avg", "exp_avg_sq"):
            assert loaded.state[p][key].dtype == torch.float32
            assert torch.equal(loaded.state[p][key], saved.state[p][key])


@pytest.mark.slow
@pytest.mark.parametrize("optimizer,port", [("mezo", 29551), ("tezo", 29552), ("tezo_adam", 29553)])
def test_two_processes_give_the_weights_of_one(tmp_path, tiny_models, prefs, optimizer, port):  # noqa: F811
    """torchrun, 2 CPU processes (gloo), against 1 process on the same global batches (16 pairs, 4 steps of 4,
    micro-batches of 1): each process sums its share's losses, the sums are all-reduced, the seed is shared,
    so both compute the same projected gradient and z and end at the same weights."""
    zo = dict(optimizer=optimizer, tezo_rank=2, zo_eps=1e-3)
    one, one_dir = run(tmp_path, "1", tiny_models["base"], prefs, **zo)
    assert one.returncode == 0, one.stderr[-2000:]
    two, two_dir = run(tmp_path, "2", tiny_models["base"], prefs, launcher=torchrun(port), **zo)
    assert two.returncode == 0, two.stderr[-2000:]
    a = load_file(one_dir / "model" / "model.safetensors")
    b = load_file(two_dir / "model" / "model.safetensors")
    initial = load_file(Path(tiny_models["base"]) / "model.safetensors")
    assert max_gap(a, initial) > 1e-5 and max_gap(a, b) < 1e-7, (max_gap(a, initial), max_gap(a, b))
    grads = [[r["projected_grad"] for r in read_jsonl(d / "metrics.jsonl") if r["kind"] == "train"]
             for d in (one_dir, two_dir)]
    assert len(grads[0]) == 4 and grads[0] == pytest.approx(grads[1], rel=1e-9)
