"""The memory planner against a real step of the tiny model (random weights from its config.json).

Measured: parameters, gradients and optimizer state by summing their tensors' bytes after one RMSprop step,
and activations as the bytes autograd saves for the backward (torch.autograd.graph.saved_tensors_hooks,
each storage counted once). On CPU neither RSS (the torch runtime's hundreds of MB swamp a few MB of
tensors) nor tracemalloc (it does not see torch's C++ allocator) resolves these figures; the saved-tensor
count is what the CUDA allocator's peak would add on top of the weights, minus kernel workspaces."""
import json
from pathlib import Path

import pytest
import torch

from common.logprobs import SequenceLogProbs
from common.memory import MemoryOptions, figures, main, parameter_counts, read_model_config

REPO = Path(__file__).resolve().parents[2]


def measured_step(config_path: Path, rows: int, length: int) -> dict:
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_path))
    module = SequenceLogProbs(model)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4)
    vocab = model.config.vocab_size
    input_ids = torch.randint(3, vocab, (rows, length))
    attention_mask = torch.ones_like(input_ids)
    completion_mask = torch.zeros_like(input_ids)
    completion_mask[:, length // 2:] = 1
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logps = module(input_ids, attention_mask, completion_mask)
    logps.sum().backward()
    optimizer.step()
    nbytes = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    return {"parameters": nbytes(model.parameters()), "gradients": nbytes(p.grad for p in model.parameters()),
            "optimizer": nbytes(v for s in optimizer.state.values() for v in s.values() if v.dim()),
            "activations": sum(saved.values())}


def test_tiny_model_figures_are_within_30_percent_of_a_real_step(tiny_models):
    config = Path(tiny_models["base"]) / "config.json"
    measured = measured_step(config, rows=4, length=64)  # micro-batch of 2 pairs
    options = MemoryOptions(model=str(config), batch_size=2, max_length=64)
    planned = figures(read_model_config(str(config)), options, "single")
    for key in ("parameters", "gradients", "optimizer"):
        assert planned[key] == measured[key], key  # exact: shapes from config.json
    assert planned["activations"] == pytest.approx(measured["activations"], rel=0.3), (planned, measured)
    total = sum(measured.values())
    assert planned["total"] == pytest.approx(total, rel=0.3)


def test_llama_3_8b_fixture_and_the_command(tmp_path, capsys):
    path = REPO / "data_files" / "model_configs" / "llama-3-8b.json"
    counts = parameter_counts(read_model_config(str(path)), None)
    assert counts["total"] == 8_030_261_248  # Meta-Llama-3-8B's published parameter count
    lora = parameter_counts(read_model_config(str(path)), {"r": 8, "target_modules": ["q_proj", "v_proj"]})
    assert lora["trainable"] == 32 * 8 * ((4096 + 4096) + (4096 + 1024))  # r * (in + out) per adapted matrix
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"name": "p", "configurations": [{"base_config": {
        "optimizer": "adam", "batch_size": 8, "micro_batch_size": 1, "max_length": 512, "precision": "bf16",
        "gradient_checkpointing": True}}]}))
    result = main(["--model", str(path), "--plan", str(plan), "--gpus", "4"])
    single = result["layouts"]["1 GPU"]
    assert single["optimizer"] == 2 * single["gradients"] == 2 * 4 * counts["total"]  # adam: 2 fp32 states
    assert result["layouts"]["FSDP x4"]["optimizer"] == single["optimizer"] / 4
    assert result["fsdp_gpus_needed"] == 2  # 8B * 16 bytes = 128 GB of state: two 80 GB GPUs with room
    assert "FSDP x4" in capsys.readouterr().out


def test_missing_config_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--model", str(tmp_path / "nothing")])
    assert exit_.value.code == 2 and "no config.json there" in capsys.readouterr().err


@pytest.mark.parametrize("optimizer", ["mezo", "tezo", "tezo_adam"])
def test_zeroth_order_figures_of_the_tiny_model_by_hand(tiny_models, optimizer):
    """Tiny model (config.json: hidden 128, 4 heads of 32, intermediate 384, 2 layers, vocab 2293, untied),
    batch 2 DPO pairs of 64 tokens, fp32, rank 4; every figure written out from those numbers."""
    config = read_model_config(str(Path(tiny_models["base"]) / "config.json"))
    options = MemoryOptions(model="tiny", optimizer=optimizer, tezo_rank=4, batch_size=2, max_length=64)
    planned = figures(config, options, "single")
    h, i, layers, vocab = 128, 384, 2, 2293
    weights = layers * (4 * h * h + 3 * h * i + 2 * h) + 2 * vocab * h + h
    assert planned["parameters"] == 4 * weights and planned["gradients"] == 0
    largest = vocab * h  # the embedding (and LM head): the biggest z materialised, twice (z and the restore copy)
    state = 2 * 4 * (4 * (7 * layers + 2) + (2 * layers + 1) * h) if optimizer == "tezo_adam" else 0
    assert planned["optimizer"] == state + 2 * largest * 4
    tokens = 2 * 2 * 64  # chosen and rejected rows
    one_layer = (10 * h + 3 * h + 4 * i) * 4  # per token, fp32, one layer at a time: nothing kept for a backward
    assert planned["activations"] == tokens * one_layer + 2 * tokens * 0.5 * vocab * 4 + tokens * h * 4
    assert planned["activations"] < figures(config, MemoryOptions(model="tiny", batch_size=2, max_length=64),
                                            "single")["activations"] / 1.5  # below backprop's 2 layers' worth


def test_tezo_adam_state_equals_a_real_optimizers(tiny_models):
    """The planner's tezo_adam state against the moments a real TeZOAdam keeps after one update."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from common.memory import zeroth_order_state
    from common.zeroth_order import TeZOAdam

    path = Path(tiny_models["base"]) / "config.json"
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    optimizer = TeZOAdam(list(model.parameters()), lr=1e-6, weight_decay=0.0, eps=1e-3, seed=0, rank=4)
    with torch.no_grad():
        optimizer.apply(0, 0.5, 1e-6)
    kept = sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values())
    counts = parameter_counts(read_model_config(str(path)), None)
    assert zeroth_order_state(counts, MemoryOptions(model="tiny", optimizer="tezo_adam", tezo_rank=4)) == kept


def test_zeroth_order_command_has_no_fsdp_column(tmp_path, capsys):
    path = REPO / "data_files" / "model_configs" / "llama-3-8b.json"
    result = main(["--model", str(path), "--optimizer", "mezo", "--gpus", "4", "--dtype", "bfloat16",
                   "--precision", "bf16", "--lora", '{"r": 8}'])
    assert list(result["layouts"]) == ["1 GPU", "replicas x4"] and result["fsdp_gpus_needed"] is None
    single = result["layouts"]["1 GPU"]
    assert single["gradients"] == 0 and single["optimizer"] == 2 * 8 * 4096 * 2  # LoRA B (4096 x 8), bf16
    assert "zeroth order: no FSDP" in capsys.readouterr().out
