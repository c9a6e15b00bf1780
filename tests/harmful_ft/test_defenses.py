"""Defenses as step strategies on a random tiny Llama: each step's gradient against a hand computation
(Vaccine in fp32 with the test's own hooks, Booster in float64), the no-defense limits (rho = 0,
lambda = 0) bit-equal to SFT, the exact weight restore, and accumulation = one big batch."""
import copy
import types
from dataclasses import dataclass

import pytest
import torch

from common.config import TrainConfig
from common.data import PreferenceExample, collate_pairs
from common.errors import ConfigError
from common.logprobs import sequence_logprobs
from common.trainer import Trainer
from harmful_ft.defenses import DEFENSES, decoder_layers, make_strategy, perturbation_sites, site_hooks
from tests.conftest import random_gemma2, random_llama

TOKENIZER = types.SimpleNamespace(pad_token_id=0)
LR = 1.0  # SGD: the weight change is the step's gradient


@dataclass
class DefenseConfig(TrainConfig):
    vaccine_rho: float = 2.0
    vaccine_site: str = "attention"
    booster_lambda: float = 5.0
    booster_alpha: float = 0.1


def config(config_class=DefenseConfig, /, **fields):
    """One unshuffled SGD step (lr LR) on batches of 4 of the random model; `fields` override. The other
    defenses' tests pass their own config class (with their defense's fields)."""
    base = dict(model="random", objective="cross_entropy", optimizer="sgd", lr=LR, batch_size=4, max_steps=1,
                shuffle=False)
    return config_class(**{**base, **fields})


def sft_examples(seed, count):
    g = torch.Generator().manual_seed(seed)

    def ids(n):
        return torch.randint(3, 97, (n,), generator=g).tolist()

    return [PreferenceExample(ids(3 + i % 4), ids(2 + i % 3), None, i) for i in range(count)]


@pytest.fixture
def aligned():
    return sft_examples(0, 8)


@pytest.fixture
def harmful():
    return sft_examples(1, 4)


def defense_trainer(defense, cfg, model, tmp_path, harmful=None, examples=None):
    """A Trainer of `model` on `examples` (default: sft_examples(0, 8)) with `defense`'s step strategy."""
    examples = sft_examples(0, 8) if examples is None else examples
    return Trainer(cfg, model, TOKENIZER, examples, tmp_path, strategy=make_strategy(defense, cfg, harmful))


def train(model, examples, tmp_path, defense, harmful=None, **kw):
    defense_trainer(defense, config(**kw), model, tmp_path, harmful, examples).train()
    return model


def step_gradient(before, after):
    return {k: (before[k] - v.detach()) / LR for k, v in after.named_parameters()}


def params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def mean_nll(model, examples):
    batch = collate_pairs(examples, 0)
    return -sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.completion_mask).mean()


def site_output_grads(model, sites, examples):
    """d (summed NLL of `examples`) / d (output of each site module), by retain_grad on hooked outputs;
    the model's parameter gradients are zeroed after."""
    outputs = []
    handles = [s.register_forward_hook(lambda m, a, out: outputs.append(out[0] if isinstance(out, tuple) else out))
               for s in sites]
    loss = mean_nll(model, examples) * len(examples)
    for o in outputs:
        o.retain_grad()
    loss.backward()
    for h in handles:
        h.remove()
    model.zero_grad()
    return [o.grad.detach() for o in outputs]


def assert_accumulation_is_one_big_batch(trainer_for, new_model, tmp_path, micro, **fields):
    """Two steps with one big batch and with micro batches of `micro` (each on a fresh `new_model()`, harmful
    set sft_examples(1, 6)) end at the same weights."""
    harmful = sft_examples(1, 6)
    runs = []
    for size in (None, micro):
        model = new_model()
        trainer_for(model, tmp_path / f"m{size}", harmful, max_steps=2, lr=0.1, micro_batch_size=size,
                    **fields).train()
        runs.append(params(model))
    for k in runs[0]:
        torch.testing.assert_close(runs[0][k], runs[1][k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.parametrize("site", ["attention", "layer"])
def test_vaccine_step_is_the_gradient_at_hidden_states_moved_by_rho_along_the_global_gradient(aligned, tmp_path,
                                                                                            site):
    rho, batch = 2.0, aligned[:4]
    model = random_llama()
    hand = copy.deepcopy(model)
    sites = [layer.self_attn if site == "attention" else layer for layer in hand.model.layers]
    grads = site_output_grads(hand, sites, batch)  # pass 1 by hand: d(sum of losses)/d(site outputs)
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
    eps = [rho * g / norm for g in grads]
    assert len(eps) == 2 and torch.sqrt(sum((e ** 2).sum() for e in eps)) == pytest.approx(rho, rel=1e-5)

    # Pass 2 by hand: the gradient of the batch-mean loss at the perturbed hidden states.
    def add(i):
        def hook(m, a, out):
            return (out[0] + eps[i], *out[1:]) if isinstance(out, tuple) else out + eps[i]
        return hook
    handles = [s.register_forward_hook(add(i)) for i, s in enumerate(sites)]
    mean_nll(hand, batch).backward()
    for h in handles:
        h.remove()
    expected = {k: p.grad for k, p in hand.named_parameters()}

    before = params(model)
    strategy_cfg = config(vaccine_rho=rho, vaccine_site=site)
    strategy = make_strategy("vaccine", strategy_cfg)
    Trainer(strategy_cfg, model, TOKENIZER, batch, tmp_path, strategy=strategy).train()
    assert strategy.last_norm == pytest.approx(norm.item(), rel=1e-5)
    got = step_gradient(before, model)
    sft = step_gradient(before, train(random_llama(), batch, tmp_path / "sft", "sft"))
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-4, atol=2e-6)
    assert any((got[k] - sft[k]).abs().max() > 1e-4 for k in got)  # the perturbation changed the step


@pytest.mark.parametrize("defense,field", [("vaccine", "vaccine_rho"), ("random_vaccine", "vaccine_rho"),
                                           ("booster", "booster_lambda")])
def test_zero_strength_is_sft_bit_for_bit(aligned, harmful, tmp_path, defense, field):
    sft = train(random_llama(), aligned, tmp_path / "sft", "sft", max_steps=2)
    defended = train(random_llama(), aligned, tmp_path / defense, defense, harmful, max_steps=2, **{field: 0.0})
    for (k, a), (_, b) in zip(sft.named_parameters(), defended.named_parameters()):
        assert torch.equal(a, b), k


def test_booster_step_matches_a_float64_recomputation(aligned, harmful, tmp_path):
    lam, alpha, batch = 5.0, 0.1, aligned[:4]  # the harmful set is one batch: the step's h is on all of it
    model = random_llama()
    w = copy.deepcopy(model).double()
    names = [k for k, _ in w.named_parameters()]

    def grad(loss_of, examples):
        w.zero_grad()
        loss_of(w, examples).backward()
        return {k: p.grad.clone() for k, p in w.named_parameters()}

    grad_f, grad_h = grad(mean_nll, batch), grad(mean_nll, harmful)
    norm = torch.sqrt(sum((g ** 2).sum() for g in grad_h.values()))
    originals = {k: p.detach().clone() for k, p in w.named_parameters()}
    with torch.no_grad():
        for k, p in w.named_parameters():
            p -= alpha * grad_h[k] / norm
    grad_h_moved = grad(mean_nll, harmful)
    expected = {k: grad_f[k] + lam * (grad_h[k] - grad_h_moved[k]) for k in names}
    assert any((grad_h[k] - grad_h_moved[k]).abs().max() > 1e-5 for k in names)  # the regulariser is not nil

    before = params(model)
    train(model, batch, tmp_path, "booster", harmful, booster_lambda=lam, booster_alpha=alpha)
    got = step_gradient(before, model)
    scale = max(e.abs().max().item() for e in expected.values())
    for k in names:
        torch.testing.assert_close(got[k].double(), expected[k], rtol=1e-4, atol=1e-5 * scale)
    assert all(torch.equal(originals[k], before[k].double()) for k in names)


def test_booster_restores_the_weights_bit_exactly_after_the_inner_pass(aligned, harmful, tmp_path):
    model = random_llama()
    cfg = config(batch_size=4, micro_batch_size=2)
    trainer = Trainer(cfg, model, TOKENIZER, aligned, tmp_path, strategy=make_strategy("booster", cfg, harmful))
    before = params(model)
    micro = trainer.micro_batches(trainer.batch_indices(0))
    trainer.strategy.step_gradients(trainer, micro, 1 / 4, 1.0)
    for k, p in model.named_parameters():
        assert torch.equal(p.detach(), before[k]), k
        assert p.grad is not None and p.grad.abs().sum() > 0, k
    h, h_moved = trainer.strategy.last_harmful_losses
    assert h_moved < h  # w' steps down the harmful loss: that reduction is what Booster penalises


@pytest.mark.parametrize("defense", ["sft", "vaccine", "random_vaccine", "booster"])
def test_accumulation_gives_the_step_of_one_big_batch(aligned, harmful, tmp_path, defense):
    full = train(random_llama(), aligned, tmp_path / "full", defense, harmful, max_steps=2, lr=0.1)
    for micro in (1, 2):
        split = train(random_llama(), aligned, tmp_path / f"m{micro}", defense, harmful, max_steps=2, lr=0.1,
                      micro_batch_size=micro)
        for (k, a), (_, b) in zip(full.named_parameters(), split.named_parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


def test_random_vaccine_noise_has_norm_rho_and_spares_padding(aligned, tmp_path):
    cfg = config(batch_size=4, vaccine_rho=3.0)
    trainer = Trainer(cfg, random_llama(), TOKENIZER, aligned, tmp_path, strategy=make_strategy("random_vaccine", cfg))
    sites = perturbation_sites(trainer.model, "attention")
    micro = trainer.micro_batches(trainer.batch_indices(0))
    noise = trainer.strategy.directions(trainer, micro, sites)[0]
    lengths = [aligned[i].length for i in micro[0]]
    for layer in noise:
        for row, length in enumerate(lengths):
            assert layer[row, length:].abs().sum() == 0 and layer[row, :length].abs().min() > 0
    # The step with the noise scaled to global norm rho differs from SFT, deterministically.
    a = train(random_llama(), aligned, tmp_path / "a", "random_vaccine", vaccine_rho=3.0)
    b = train(random_llama(), aligned, tmp_path / "b", "random_vaccine", vaccine_rho=3.0)
    sft = train(random_llama(), aligned, tmp_path / "sft", "sft")
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(x, y) for x, y in zip(a.parameters(), sft.parameters()))


def test_sites_are_found_by_role_on_other_architectures():
    model = random_gemma2()
    assert decoder_layers(model) == list(model.model.layers)
    assert perturbation_sites(model, "attention") == [layer.self_attn for layer in model.model.layers]


def test_vaccine_runs_on_gemma2(aligned, tmp_path):
    before = params(random_gemma2())
    model = train(random_gemma2(), aligned, tmp_path, "vaccine")
    assert any(not torch.equal(before[k], p) for k, p in model.named_parameters())


def test_a_hook_that_never_fires_is_an_error():
    used, unused = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with pytest.raises(AssertionError, match=r"fired \{1: 0\} times"):
        with site_hooks([used, unused], lambda i, call, out: None, calls=1):
            used(torch.zeros(1, 2))
    assert not used._forward_hooks and not unused._forward_hooks  # removed even on failure


def test_make_strategy_names_and_errors(harmful):
    assert set(DEFENSES) == {"sft", "vaccine", "random_vaccine", "booster", "tvaccine", "repnoise"}
    with pytest.raises(ConfigError, match="defense 'lisa': expected one of sft, vaccine"):
        make_strategy("lisa", config())
    with pytest.raises(ConfigError, match="booster' needs a harmful set"):
        make_strategy("booster", config())
    with pytest.raises(ConfigError, match="vaccine_site 'mlp'"):
        perturbation_sites(random_llama(), "mlp")
    with pytest.raises(ConfigError, match="gradient_checkpointing"):
        make_strategy("vaccine", config(gradient_checkpointing=True))
    assert make_strategy("booster", TrainConfig(objective="cross_entropy"), harmful).lam == 5.0  # paper default


TWO_PROCESS_SCRIPT = """
import sys, torch
from tests.harmful_ft.test_defenses import sft_examples, train
from tests.conftest import random_llama
from pathlib import Path
out = Path(sys.argv[1])
for defense in ("vaccine", "random_vaccine", "booster"):
    model = train(random_llama(), sft_examples(0, 8), out / defense, defense, sft_examples(1, 4), max_steps=2, lr=0.1,
                  micro_batch_size=1)
    if torch.distributed.get_rank() == 0:
        torch.save(model.state_dict(), out / f"{defense}.pt")
"""


@pytest.mark.slow
def test_two_processes_give_the_step_of_one_big_batch(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    script = tmp_path / "two.py"
    script.write_text(TWO_PROCESS_SCRIPT)
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run([str(torchrun), "--nproc_per_node", "2", str(script), str(tmp_path)], cwd=repo,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)})
    assert result.returncode == 0, result.stderr[-2000:]
    for defense in ("vaccine", "random_vaccine", "booster"):
        one = train(random_llama(), sft_examples(0, 8), tmp_path / f"one_{defense}", defense, sft_examples(1, 4),
                    max_steps=2, lr=0.1)
        two = torch.load(tmp_path / f"{defense}.pt")
        for k, p in one.named_parameters():
            torch.testing.assert_close(p.detach(), two[k], rtol=1e-5, atol=1e-6, msg=f"{defense} {k}")


@pytest.mark.parametrize("defense", ["vaccine", "booster"])
def test_defenses_train_lora_adapters_only(aligned, harmful, tmp_path, defense):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(random_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                      init_lora_weights=False))
    before = params(model)
    train(model, aligned, tmp_path, defense, harmful, lr=0.1)
    for k, p in model.named_parameters():
        assert torch.equal(p.detach(), before[k]) != p.requires_grad, k  # adapters moved, base weights did not
