"""End to end through the CLI on the tiny model: a DPO plan, its metrics.jsonl, re-runs, 2 processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from common.tracking import read_jsonl

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def prefs(tmp_path):
    path = tmp_path / "prefs.jsonl"
    rows = (REPO / "data_files" / "pref_similarity" / "plain_tiny.jsonl").read_text().splitlines()[:16]
    path.write_text("\n".join(rows) + "\n")
    return path


def plan_for(tmp_path, model, dataset, **overrides):
    base = {"model": model, "dataset": str(dataset), "objective": "dpo", "optimizer": "adam", "lr": 3e-4,
            "batch_size": 4, "num_epochs": 2, "use_chat_template": False, "outputs_dir": str(tmp_path / "out"),
            "experiment_name": "dpo_{objective}_lr{lr}", **overrides}
    return write(tmp_path / "plan.json", {"name": "e2e", "configurations": [{"base_config": base}]})


def cli(*args, launcher=(sys.executable, "-m")):
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, "train_preferences", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env=env)


def test_dpo_plan_end_to_end(tmp_path, tiny_models, prefs):
    plan = plan_for(tmp_path, tiny_models["base"], prefs, device_map="cpu")  # the device_map loading path
    result = cli("--plan_config_path", str(plan))
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = tmp_path / "out" / "dpo_dpo_lr0.0003"
    rows = read_jsonl(run_dir / "metrics.jsonl")
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert [r["step"] for r in train] == list(range(1, 9))  # 16 examples / 4 per step * 2 epochs
    assert [(r["split"], r["step"]) for r in evals] == [("train", 0), ("train", 8)]
    assert train[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at the first step
    before, after = evals
    assert before["preferred_logprobs_change_mean"] == 0 and before["count"] == 16
    # DPO widened the gap between preferred and dispreferred log-probs on the training set.
    assert after["preferred_logprobs_change_mean"] - after["dispreferred_logprobs_change_mean"] > 1.0
    assert after["reward_accuracy"] > 0.8
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["num_examples"] == 16 and summary["steps"] == 8
    assert json.loads((run_dir / "config.json").read_text())["lr"] == 3e-4

    again = cli("--plan_config_path", str(plan))
    assert again.returncode == 0 and "skip (finished)" in again.stderr
    assert read_jsonl(run_dir / "metrics.jsonl") == rows


def test_bad_rows_and_missing_model_are_one_line_errors(tmp_path, tiny_models):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "b"}\n')
    result = cli("--plan_config_path", str(plan_for(tmp_path, tiny_models["base"], bad)))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {bad}: row 1: missing field 'rejected' (fields present: chosen, prompt)")
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n')
    result = cli("--plan_config_path", str(plan_for(tmp_path, str(tmp_path / "no_model"), good, experiment_name="x")))
    assert result.returncode == 2 and "no_model': no such directory" in result.stderr.splitlines()[-1]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path, tiny_models, prefs):
    """torchrun with 2 CPU processes (gloo) and 1 process, same global batch: same trained parameters."""
    common = dict(optimizer="sgd", lr=0.05, batch_size=8, num_epochs=1, save_model=True, eval_on_train=False)
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    result = cli("--plan_config_path", str(plan_for(tmp_path / "1", tiny_models["base"], prefs, **common)))
    assert result.returncode == 0, result.stderr[-2000:]
    two = plan_for(tmp_path / "2", tiny_models["base"], prefs, micro_batch_size=2, **common)
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533", "-m")
    result = cli("--plan_config_path", str(two), launcher=torchrun)
    assert result.returncode == 0, result.stderr[-2000:]

    a = load_file(tmp_path / "1" / "out" / "dpo_dpo_lr0.05" / "model" / "model.safetensors")
    b = load_file(tmp_path / "2" / "out" / "dpo_dpo_lr0.05" / "model" / "model.safetensors")
    initial = load_file(Path(tiny_models["base"]) / "model.safetensors")
    assert a.keys() == b.keys()
    moved = max((a[k] - initial[k]).abs().max().item() for k in a)
    gap = max((a[k] - b[k]).abs().max().item() for k in a)
    assert moved > 1e-4 and gap < 1e-6 * max(1.0, moved * 100), (moved, gap)
    metrics = [read_jsonl(tmp_path / d / "out" / "dpo_dpo_lr0.05" / "metrics.jsonl") for d in ("1", "2")]
    assert [r["loss"] for r in metrics[0]] == pytest.approx([r["loss"] for r in metrics[1]], abs=1e-5)


def test_held_out_eval_set_and_overrides(tmp_path, tiny_models):
    """eval_dataset: the held-out pairs get the same displacement metrics as the training set, at step 0,
    every eval_every_steps and at the end; --set overrides the plan."""
    rows = (REPO / "data_files" / "pref_similarity" / "plain_tiny.jsonl").read_text().splitlines()
    train, held_out = tmp_path / "train.jsonl", tmp_path / "held_out.jsonl"
    train.write_text("\n".join(rows[:8]) + "\n")
    held_out.write_text("\n".join(rows[30:36]) + "\n")
    plan = plan_for(tmp_path, tiny_models["base"], train, batch_size=4, num_epochs=1)
    result = cli("--plan_config_path", str(plan), "--set", f"eval_dataset={held_out}", "--set", "eval_every_steps=1",
                 "--set", "lr=0.001")
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = tmp_path / "out" / "dpo_dpo_lr0.001"
    evals = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    assert sorted((r["split"], r["step"], r["count"]) for r in evals) == [
        ("eval", 0, 6), ("eval", 1, 6), ("eval", 2, 6), ("train", 0, 8), ("train", 1, 8), ("train", 2, 8)]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["num_eval_examples"] == 6
    final = {r["split"]: r for r in evals if r["step"] == 2}
    assert summary["eval"]["eval"]["preferred_logprobs_change_mean"] == final["eval"]["preferred_logprobs_change_mean"]
    assert final["eval"]["preferred_logprobs_change_mean"] != 0  # the held-out log-probs moved too

    same = plan_for(tmp_path, tiny_models["base"], train, experiment_name="same")
    result = cli("--plan_config_path", str(same), "--set", f"eval_dataset={train}")
    assert result.returncode == 2 and "eval_split: the held-out set is the training set" in result.stderr


def test_the_example_plan_and_its_results(tmp_path, tiny_models):
    """train_preferences/experiments_plans/plain_tiny.json as the docs run it, then its results printer."""
    from train_preferences.results import main as results_main

    out = tmp_path / "plain_tiny"
    result = cli("--plan_config_path", "train_preferences/experiments_plans/plain_tiny.json",
                 "--set", f"outputs_dir={out}", "--set", f"model={tiny_models['base']}")
    assert result.returncode == 0, result.stderr[-2000:]
    text = results_main(["--experiments_dir", str(out)])
    for lr in ("0.0001", "0.0003"):
        records = read_jsonl(out / f"dpo_lr{lr}" / "metrics.jsonl")
        final = [r for r in records if r["kind"] == "eval"][-1]
        assert final["step"] == 10 and [r["step"] for r in records if r["kind"] == "eval"] == [0, 2, 4, 6, 8, 10]
        row = next(line.split() for line in text.splitlines() if line.startswith(f"dpo_lr{lr} "))
        assert row[4:6] == ["40", "10"]
        assert float(row[7]) == pytest.approx(final["preferred_logprobs_change_mean"], rel=1e-3, abs=1e-4)
        assert float(row[8]) == pytest.approx(final["dispreferred_logprobs_change_mean"], rel=1e-3, abs=1e-4)
    assert (out / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
