"""H3Fusion mechanics on the tiny model: experts carry alpha/r, identical experts reduce to one model,
the routers receive gradients and train."""
import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from common.models import load_model
from ensembles.h3fusion import PROJECTIONS, adapter_deltas, build_h3fusion, fusion_loss, moe_layers, train_routers


@pytest.fixture(scope="module")
def base(tiny_models):
    return load_model(tiny_models["chat"]).eval()


def random_lora(base, seed, r=4, alpha=16):
    """A LoRA with B != 0 (peft's init_lora_weights=False) and alpha != r, so a missing alpha/r shows."""
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=list(PROJECTIONS), init_lora_weights=False,
                        lora_dropout=0.0)
    return get_peft_model(copy.deepcopy(base), config).eval()


def tokens(seed=0, batch=2, length=12):
    ids = torch.randint(3, 2000, (batch, length), generator=torch.Generator().manual_seed(seed))
    return ids, torch.ones_like(ids)


def test_identical_zero_experts_with_top_k_all_equal_the_base_model(base):
    """In float64, so that 1e-6 measures the mixture and not float32 rounding through two layers."""
    ids, mask = tokens()
    base = copy.deepcopy(base).double()
    moe = build_h3fusion(copy.deepcopy(base), [{}, {}, {}], top_k=3)
    with torch.no_grad():
        torch.testing.assert_close(moe(input_ids=ids, attention_mask=mask).logits,
                                   base(input_ids=ids, attention_mask=mask).logits, atol=1e-6, rtol=0)


def test_identical_lora_experts_equal_peft_with_that_lora(base):
    """Checks the alpha/r scaling against peft's own forward (alpha/r = 4 here)."""
    ids, mask = tokens(1)
    base = copy.deepcopy(base).double()
    lora = random_lora(base, seed=1)
    deltas = adapter_deltas(lora)
    moe = build_h3fusion(copy.deepcopy(base), [deltas, deltas, deltas], top_k=3)
    unscaled = {k: d / 4 for k, d in deltas.items()}  # the public code's B A without alpha/r
    public = build_h3fusion(copy.deepcopy(base), [unscaled, unscaled, unscaled], top_k=3)
    with torch.no_grad():
        expected = lora(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(moe(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-6, rtol=0)
        assert not torch.allclose(public(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-2)


def test_routers_receive_gradients_and_train(base):
    experts = [adapter_deltas(random_lora(base, seed)) for seed in (2, 3, 4)]  # helpful, harmless, honest
    moe = build_h3fusion(copy.deepcopy(base), experts, top_k=2)
    assert all(not p.requires_grad for name, p in moe.named_parameters() if "router" not in name)
    ids, mask = tokens(2)
    fusion_loss(moe, ids, mask, gate_coeff=0.01).backward()
    layers = moe_layers(moe)
    assert len(layers) == 2
    assert all(layer.router.weight.grad is not None and layer.router.weight.grad.abs().sum() > 0 for layer in layers)
    before = [layer.router.weight.detach().clone() for layer in layers]
    losses = train_routers(moe, [tokens(3)] * 3, lr=1e-2)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert all(not torch.equal(b, layer.router.weight) for b, layer in zip(before, layers))


def test_gate_loss_is_one_when_balanced_and_larger_when_not(base):
    moe = build_h3fusion(copy.deepcopy(base), [{}, {}], top_k=1)
    layer = moe_layers(moe)[0]
    layer.router_probs = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    layer.top_indices = torch.tensor([[0], [1]])
    assert layer.gate_loss().item() == pytest.approx(1.0)  # 2 * (0.5 * 0.5 + 0.5 * 0.5)
    layer.router_probs = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
    layer.top_indices = torch.tensor([[0], [0]])
    assert layer.gate_loss().item() == pytest.approx(1.8)  # 2 * (1 * 0.9 + 0 * 0.1)
