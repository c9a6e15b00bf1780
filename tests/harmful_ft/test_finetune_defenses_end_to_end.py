"""The fine-tuning-stage and post-fine-tuning defenses through the CLI: the tiny plan (align -> finetune under
each finetune_defense -> evaluate), 3 steps per training run, and the results table telling the methods apart."""
import csv
from pathlib import Path

import pytest

from common.tracking import read_json, read_jsonl
from harmful_ft import results

METHODS = ("none", "lisa", "panacea", "random_perturbation")


@pytest.fixture(scope="module")
def runs(run_plan, tmp_path_factory) -> Path:
    # 3 steps: Lisa (K_align 2, K_ft 3) takes 2 alignment steps, then a user step with the proximal term
    out = tmp_path_factory.mktemp("finetune_defenses") / "runs"
    return run_plan("finetune_defenses_tiny.json", out, "--set", "max_steps=3")


def finetune_dir(runs, method):
    return runs / f"finetune_sft_{method}_sst2_p0.2_n60_s0"


def test_each_method_trains_and_perturbs_as_configured(runs):
    for method in METHODS:
        summary = read_json(finetune_dir(runs, method) / "summary.json")
        assert summary["steps"] == 3 and summary["train"]["grad_norm"] > 0, method
        assert (finetune_dir(runs, method) / "model" / "model.safetensors").is_file()
        post = summary.get("post_training")
        if method == "panacea":
            assert post["method"] == "panacea" and post["perturbation_norm"] == pytest.approx(1.0, rel=1e-4)
        elif method == "random_perturbation":
            assert post["perturbation_norm"] == pytest.approx(post["expected_norm"], rel=0.05)
        else:
            assert post is None
    config = read_json(finetune_dir(runs, "lisa") / "config.json")
    assert (config["lisa_align_steps"], config["lisa_finetune_steps"], config["finetune_defense"]) == (2, 3, "lisa")


def test_lisa_alignment_steps_train_on_the_alignment_data(runs):
    """Steps 1-2 train on refusals (the align stage's data, already learned: low loss), step 3 on the user's
    data (SST2-like and harmful answers, new to the model: the loss the SFT run has at its first step)."""
    def losses(method):
        return [r["loss"] for r in read_jsonl(finetune_dir(runs, method) / "metrics.jsonl") if r["kind"] == "train"]
    lisa, sft = losses("lisa"), losses("none")
    assert max(lisa[:2]) < min(sft) and lisa[2] > max(lisa[:2])


def test_evaluations_and_the_table_tell_the_methods_apart(runs, capsys):
    for method in METHODS:
        summary = read_json(runs / f"evaluate_sft_{method}_sst2_p0.2_n60_s0" / "summary.json")
        assert summary["finetune_defense"] == method and summary["defense"] == "sft"
    results.main(["--experiments_dir", str(runs)])
    assert "ft/post defense" in capsys.readouterr().out
    rows = list(csv.DictReader(open(runs / "harmful_ft_results.csv")))
    assert sorted(r["finetune_defense"] or "none" for r in rows) == sorted(METHODS)  # the table writes none as blank
