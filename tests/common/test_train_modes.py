"""How the trainer holds the model: train mode without dropout, gradient checkpointing, LoRA saved as peft does."""
import types

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from common.config import TrainConfig
from common.data import PreferenceExample, collate_pairs
from common.logprobs import sequence_logprobs
from common.trainer import Trainer
from tests.conftest import random_llama

TOKENIZER = types.SimpleNamespace(pad_token_id=0, save_pretrained=lambda path: None)


@pytest.fixture
def pairs():
    g = torch.Generator().manual_seed(4)

    def ids(n):
        return torch.randint(3, 97, (n,), generator=g).tolist()

    return [PreferenceExample(ids(3 + i % 3), ids(2 + i % 4), ids(2 + i % 2), i) for i in range(8)]


def config(**kw):
    return TrainConfig(**{**dict(model="random", optimizer="adam", lr=1e-2, batch_size=4, max_steps=3), **kw})


@torch.no_grad()
def logps(model, examples):
    batch = collate_pairs(examples, 0)
    return sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.completion_mask)


def test_model_stays_in_train_mode_without_dropout(pairs, tmp_path):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, attention_dropout=0.5,
                                         attn_implementation="eager"))
    model.train()
    assert not torch.equal(logps(model, pairs), logps(model, pairs))  # dropout is live
    Trainer(config(), model, TOKENIZER, pairs, tmp_path)
    assert model.training and model.config.attention_dropout == 0.0
    assert all(layer.self_attn.attention_dropout == 0.0 for layer in model.model.layers)
    first = logps(model, pairs)
    assert torch.equal(first, logps(model, pairs))
    torch.testing.assert_close(first, logps(model.eval(), pairs), atol=1e-6, rtol=0)


def test_gradient_checkpointing_gives_the_same_parameters(pairs, tmp_path):
    plain, checkpointed = random_llama(), random_llama()
    Trainer(config(micro_batch_size=2), plain, TOKENIZER, pairs, tmp_path / "a").train()
    trainer = Trainer(config(micro_batch_size=2, gradient_checkpointing=True), checkpointed, TOKENIZER, pairs,
                      tmp_path / "b")
    assert getattr(checkpointed, "is_activation_checkpointing", None) or checkpointed.is_gradient_checkpointing
    trainer.train()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)


@pytest.fixture
def lora_model(tmp_path):
    from peft import LoraConfig, get_peft_model

    random_llama().save_pretrained(tmp_path / "base")
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    return get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", r=4, target_modules=["q_proj", "v_proj"]))


@pytest.mark.parametrize("checkpointing", [False, True])
def test_lora_run_saves_a_peft_adapter(pairs, tmp_path, lora_model, checkpointing):
    from peft import PeftModel

    summary = Trainer(config(save_model=True, lora={"r": 4}, gradient_checkpointing=checkpointing), lora_model,
                      TOKENIZER, pairs, tmp_path / "run").train()
    saved = tmp_path / "run" / "model"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in saved.iterdir()}
    assert not (saved / "model.safetensors").exists()
    total = sum(p.numel() for p in lora_model.parameters())
    trainable = sum(p.numel() for p in lora_model.parameters() if p.requires_grad)
    assert (summary["trainable_parameters"], summary["total_parameters"]) == (trainable, total) and trainable < total
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), saved).eval()
    trained = logps(lora_model.eval(), pairs)
    assert not torch.allclose(trained, logps(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), pairs))
    torch.testing.assert_close(logps(loaded, pairs), trained, atol=1e-5, rtol=0)


def test_merge_lora_saves_the_full_model(pairs, tmp_path, lora_model):
    Trainer(config(save_model=True, lora={"r": 4}, merge_lora=True), lora_model, TOKENIZER, pairs,
            tmp_path / "run").train()
    saved = tmp_path / "run" / "model"
    assert (saved / "model.safetensors").exists() and not (saved / "adapter_config.json").exists()
    torch.testing.assert_close(logps(AutoModelForCausalLM.from_pretrained(saved), pairs),
                               logps(lora_model.eval(), pairs), atol=1e-5, rtol=0)


def test_share_prompt_trains_to_the_same_parameters(pairs, tmp_path, monkeypatch):
    """`share_prompt` scores each pair as one (prompt, chosen, rejected) row: the same training up to float
    rounding, and the same logged metrics (they are computed from the pairs' rows either way)."""
    import json

    import common.logprobs

    calls = []
    shared_logprobs = common.logprobs.shared_prompt_logprobs
    monkeypatch.setattr(common.logprobs, "shared_prompt_logprobs",
                        lambda *args: calls.append(args[1].shape) or shared_logprobs(*args))
    plain, shared = random_llama(), random_llama()
    Trainer(config(), plain, TOKENIZER, pairs, tmp_path / "a").train()
    Trainer(config(share_prompt=True), shared, TOKENIZER, pairs, tmp_path / "b").train()
    for (name, a), b in zip(plain.named_parameters(), shared.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0, msg=name)
    assert [shape[0] for shape in calls] == [8, 4, 4, 4]  # a row per pair: the reference pass, then 3 steps
    records = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()
                if '"train"' in line] for run in ("a", "b")]
    assert [r["tokens"] for r in records[0]] == [r["tokens"] for r in records[1]]
    assert [r["loss"] for r in records[0]] == pytest.approx([r["loss"] for r in records[1]], abs=1e-5)
