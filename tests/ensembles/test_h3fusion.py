"""H3Fusion mechanics on the tiny model: experts carry alpha/r, identical experts reduce to one model (logits,
log-probs and greedy generations), the merge is the mean delta, the routers receive gradients and train
through the shared trainer, and the gate losses against hand-worked values."""
import copy
import math

import pytest
import torch
from peft import LoraConfig, get_peft_model

from common.data import collate_sequences, tokenize_preference
from common.generation import generate
from common.logprobs import sequence_logprobs
from common.models import load_model, load_tokenizer
from common.trainer import Trainer
from ensembles.h3fusion import (
    PROJECTIONS,
    LowRank,
    RouterStrategy,
    adapter_deltas,
    add_deltas,
    build_h3fusion,
    gate_terms,
    mean_deltas,
    moe_layers,
    router_state,
)
from ensembles.h3fusion_config import FusionConfig


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
    unscaled = {k: LowRank(d.up / 4, d.down) for k, d in deltas.items()}  # the public code's B A without alpha/r
    public = build_h3fusion(copy.deepcopy(base), [unscaled, unscaled, unscaled], top_k=3)
    with torch.no_grad():
        expected = lora(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(moe(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-6, rtol=0)
        torch.testing.assert_close(add_deltas(copy.deepcopy(base), deltas)(input_ids=ids, attention_mask=mask).logits,
                                   expected, atol=1e-6, rtol=0)
        assert not torch.allclose(public(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-2)


def test_the_moe_of_one_expert_three_times_answers_as_that_expert(base, tiny_models):
    """Top-2 of identical experts (the routers' random init decides nothing): the same completion log-probs
    and the same greedy answers as the base with that expert's delta merged (float32)."""
    tokenizer = load_tokenizer(tiny_models["chat"])
    deltas = adapter_deltas(random_lora(base, seed=5, alpha=4))
    expert = add_deltas(copy.deepcopy(base), deltas)
    moe = build_h3fusion(copy.deepcopy(base), [deltas] * 3, top_k=2, seed=3).eval()
    prompts = ["What is the capital of France?", "Describe a cat.", "How many legs does a spider have?"]
    examples = [tokenize_preference(tokenizer, p, "The answer is short.") for p in prompts]
    batch = collate_sequences([e.prompt_ids for e in examples], [e.chosen_ids for e in examples],
                              tokenizer.pad_token_id)
    ids, attention, completion = batch.input_ids, batch.attention_mask, batch.completion_mask
    with torch.no_grad():
        torch.testing.assert_close(sequence_logprobs(moe, ids, attention, completion),
                                   sequence_logprobs(expert, ids, attention, completion), atol=1e-4, rtol=0)
    answers = [generate(m, tokenizer, prompts, max_new_tokens=12, temperature=0.0, progress=False)
               for m in (moe, expert)]
    assert answers[0] == answers[1] and all(answers[0])


def test_the_merge_is_the_mean_of_the_dense_deltas(base):
    experts = [adapter_deltas(random_lora(base, seed)) for seed in (6, 7, 8)]
    merged = mean_deltas(experts)
    key = "1.down_proj"
    expected = sum(e[key].up @ e[key].down for e in experts) / 3
    torch.testing.assert_close(merged[key].dense(), expected, atol=1e-6, rtol=0)
    assert merged[key].up.shape[1] == 12  # rank 3 x 4: no dense matrix is kept


def test_routers_receive_gradients_and_train_through_the_shared_trainer(base, tiny_models, tmp_path):
    tokenizer = load_tokenizer(tiny_models["chat"])
    experts = [adapter_deltas(random_lora(base, seed)) for seed in (2, 3, 4)]  # helpful, harmless, honest
    moe = build_h3fusion(copy.deepcopy(base), experts, top_k=2)
    assert all(not p.requires_grad for name, p in moe.named_parameters() if "router" not in name)
    config = FusionConfig(model=tiny_models["chat"], lr=1e-2, batch_size=6, max_steps=3, eval_batch_size=8)
    examples = [tokenize_preference(tokenizer, f"Tell me about the number {i}.", f"It is {i}.", index=i)
                for i in range(6)]
    strategy = RouterStrategy(config, sources=[0, 1, 2, 0, 1, 2])
    trainer = Trainer(config, moe, tokenizer, examples, tmp_path, strategy=strategy)
    terms = strategy.losses(trainer, [0, 1, 2])
    terms.losses.sum().backward()
    layers = moe_layers(moe)
    assert len(layers) == 2
    assert all(layer.router.weight.grad is not None and layer.router.weight.grad.abs().sum() > 0 for layer in layers)
    moe.zero_grad()
    before = router_state(moe)
    summary = trainer.train()
    after = router_state(moe)
    assert summary["steps"] == 3 and math.isfinite(summary["train"]["loss"])
    assert {"lm_loss", "gate_loss"} <= set(summary["train"])
    assert all(not torch.equal(before[k], after[k]) for k in before)


def layer_with(base, probs, top, top_k):
    """A MoE layer whose last forward routed `probs` (B, T, E) with top-k indices `top`."""
    moe = build_h3fusion(copy.deepcopy(base), [{}] * probs.shape[-1], top_k=top_k)
    layer = moe_layers(moe)[0]
    layer.router_probs, layer.top_indices = probs, top
    return layer


def test_balance_gate_loss_is_one_when_balanced_and_larger_when_not(base):
    layer = layer_with(base, torch.tensor([[[0.9, 0.1], [0.1, 0.9]]]), torch.tensor([[[0], [1]]]), top_k=1)
    assert layer.gate_loss().item() == pytest.approx(1.0)  # 2 * (0.5 * 0.5 + 0.5 * 0.5)
    layer = layer_with(base, torch.tensor([[[0.9, 0.1], [0.9, 0.1]]]), torch.tensor([[[0], [0]]]), top_k=1)
    assert layer.gate_loss().item() == pytest.approx(1.8)  # 2 * (1 * 0.9 + 0 * 0.1)
    # a padding token (mask 0) routed elsewhere does not count: still 1.8 over the one real token
    layer = layer_with(base, torch.tensor([[[0.9, 0.1], [0.1, 0.9]]]), torch.tensor([[[0], [1]]]), top_k=1)
    assert layer.gate_loss(torch.tensor([[True, False]])).item() == pytest.approx(1.8)


def test_source_gate_loss_by_hand(base):
    """Two sequences, three experts, two layers; sequence 0 has one padding token. By hand:
    seq 0 mean over its 2 real tokens: layer A [0.6, 0.3, 0.1], layer B [0.4, 0.4, 0.2] -> mean [0.5, 0.35, 0.15];
    source 0 -> -log 0.5. seq 1 (3 tokens, all [0.2, 0.2, 0.6] in both layers), source 2 -> -log 0.6."""
    pad = [0.0, 0.0, 1.0]
    a = torch.tensor([[[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], pad], [[0.2, 0.2, 0.6]] * 3])
    b = torch.tensor([[[0.4, 0.5, 0.1], [0.4, 0.3, 0.3], pad], [[0.2, 0.2, 0.6]] * 3])
    top = torch.zeros(2, 3, 2, dtype=torch.long)
    layers = [layer_with(base, a, top, 2), layer_with(base, b, top, 2)]
    mask = torch.tensor([[True, True, False], [True, True, True]])
    got = gate_terms(layers, mask, "source", torch.tensor([0, 2]))
    torch.testing.assert_close(got, torch.tensor([-math.log(0.5), -math.log(0.6)]), atol=1e-6, rtol=0)
    balance = gate_terms(layers, mask, "balance", torch.tensor([0, 2]))
    assert balance.shape == (2,) and balance[0] == balance[1]

