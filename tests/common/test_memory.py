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
