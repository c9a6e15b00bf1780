"""`fsdp: true` (common/fsdp.py) through the CLI: 2 CPU processes (torchrun, gloo) train the same weights as
one process without FSDP, resume from a sharded checkpoint as if never stopped, and with LoRA train (and save)
only the adapters."""
import os
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from common.fsdp import decoder_layers
from common.tracking import read_jsonl
from tests.train_preferences.test_train_preferences import cli, plan_for, prefs  # noqa: F401 (fixture)

RUN = "dpo_dpo_lr0.0001"
COMMON = dict(optimizer="rmsprop", lr=1e-4, batch_size=4, num_epochs=1, save_model=True, eval_on_train=False,
              micro_batch_size=1)


def torchrun(port: int):
    return (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port), "-m")


def run(tmp_path: Path, name: str, model: str, data, launcher=None, env=None, **overrides):
    (tmp_path / name).mkdir(exist_ok=True)
    plan = plan_for(tmp_path / name, model, data, **{**COMMON, **overrides})
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        result = cli("--plan_config_path", str(plan), **({"launcher": launcher} if launcher else {}))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return result, tmp_path / name / "out" / RUN


def max_gap(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_decoder_layers_are_found_by_role():
    from tests.conftest import random_gemma2, random_llama

    for model in (random_llama(), random_gemma2()):
        layers = decoder_layers(model)
        assert len(layers) == 2 and all(type(m).__name__.endswith("DecoderLayer") for m in layers)


def train_losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "train"]


@pytest.mark.slow
def test_fsdp_two_processes_match_one_process(tmp_path, tiny_models, prefs):  # noqa: F811
    """16 pairs, 4 steps of 4 (2 micro-batches of 1 per process), SGD: FSDP over 2 processes ends at the
    weights of 1 process without FSDP (1e-5, fp32). SGD, because an adaptive optimizer (RMSprop, Adam)
    turns the last-bit differences of a reduce-scatter into 1e-4-size steps on near-zero gradients
    (measured: SGD 6e-8, RMSprop 1.6e-4 with FSDP, 1e-6 with DDP, on the same runs)."""
    sgd = dict(optimizer="sgd", lr=1e-2)
    one, one_dir = run(tmp_path, "1", tiny_models["base"], prefs, **sgd)
    assert one.returncode == 0, one.stderr[-2000:]
    two, two_dir = run(tmp_path, "2", tiny_models["base"], prefs, launcher=torchrun(29541), fsdp=True, **sgd)
    assert two.returncode == 0, two.stderr[-2000:]
    one_dir, two_dir = (d.parent / "dpo_dpo_lr0.01" for d in (one_dir, two_dir))
    a = load_file(one_dir / "model" / "model.safetensors")
    b = load_file(two_dir / "model" / "model.safetensors")
    initial = load_file(Path(tiny_models["base"]) / "model.safetensors")
    assert max_gap(a, initial) > 1e-3 and max_gap(a, b) < 1e-5, (max_gap(a, initial), max_gap(a, b))
    assert train_losses(one_dir) == pytest.approx(train_losses(two_dir), abs=1e-5)


@pytest.mark.slow
def test_fsdp_resumes_from_a_sharded_checkpoint(tmp_path, tiny_models, prefs):  # noqa: F811
    """RMSprop (state to shard and resume): an FSDP run killed after its step-2 checkpoint and restarted
    ends at the weights and losses of the uninterrupted FSDP run."""
    whole, whole_dir = run(tmp_path, "whole", tiny_models["base"], prefs, launcher=torchrun(29543), fsdp=True)
    assert whole.returncode == 0, whole.stderr[-2000:]
    two, two_dir = run(tmp_path, "2", tiny_models["base"], prefs, launcher=torchrun(29541), fsdp=True,
                       save_every_steps=2, env={"ALAB_CRASH_AT": "checkpoint_installed"})
    assert two.returncode != 0 and (two_dir / "checkpoint" / "sharded").is_dir(), two.stderr[-2000:]
    assert not (two_dir / "model").exists()
    two, two_dir = run(tmp_path, "2", tiny_models["base"], prefs, launcher=torchrun(29542), fsdp=True,
                       save_every_steps=2)
    assert two.returncode == 0, two.stderr[-2000:]
    assert "resumed from" in two.stderr and "at step 2" in two.stderr
    a = load_file(whole_dir / "model" / "model.safetensors")
    b = load_file(two_dir / "model" / "model.safetensors")
    assert max_gap(a, b) < 1e-6, max_gap(a, b)
    assert len(train_losses(two_dir)) == 4 and train_losses(whole_dir) == pytest.approx(train_losses(two_dir), abs=1e-6)

    from transformers import AutoModelForCausalLM  # the saved model is an ordinary one
    model = AutoModelForCausalLM.from_pretrained(two_dir / "model")
    assert model.config.num_hidden_layers == 2


@pytest.mark.slow
def test_fsdp_with_lora_trains_only_the_adapters(tmp_path, tiny_models, prefs):  # noqa: F811
    """LoRA + FSDP over 2 processes saves the same adapter as LoRA in 1 process; only lora_ weights."""
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    one, one_dir = run(tmp_path, "1", tiny_models["base"], prefs, lora=lora)
    assert one.returncode == 0, one.stderr[-2000:]
    two, two_dir = run(tmp_path, "2", tiny_models["base"], prefs, launcher=torchrun(29543), fsdp=True, lora=lora)
    assert two.returncode == 0, two.stderr[-2000:]
    a = load_file(one_dir / "model" / "adapter_model.safetensors")
    b = load_file(two_dir / "model" / "adapter_model.safetensors")
    assert a and all("lora_" in k for k in b)
    assert max(v.abs().max().item() for k, v in b.items() if "lora_B" in k) > 1e-3  # lora_B starts at 0
    assert max_gap(a, b) < 1e-5
