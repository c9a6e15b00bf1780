"""The study's plans: tiny plans run on a fresh checkout after `make tiny`; paper plans follow the paper
(docs/elasticity.md)."""
from pathlib import Path

import pytest

from common.config import to_dict
from common.plans import expand_plan, load_plan
from elasticity.run import PlanConfig
from tiny.build import DEFAULT_OUT_DIR, TinyBuildConfig

REPO = Path(__file__).resolve().parents[2]
PLANS = REPO / "elasticity" / "experiments_plans"
TINY_BASE = str((DEFAULT_OUT_DIR / "tiny-base").relative_to(REPO))  # outputs/tiny_models/tiny-base


def runs_of(name):
    path = PLANS / name
    return expand_plan(load_plan(path), PlanConfig, str(path))


@pytest.mark.parametrize("name", ["resistance_tiny.json", "rebound_tiny.json", "factors_tiny.json"])
def test_tiny_plans_start_from_the_built_tiny_base(name):
    # Not from a path that exists on one machine only (the plans once named /tmp/tiny_snapshot/tiny-base).
    runs = runs_of(name)
    assert runs and all(r.config.model == TINY_BASE for r in runs)
    for r in runs:
        assert all(not Path(source).is_absolute() and (REPO / source).exists()
                   for source in r.config.data_sources.values())


def test_tiny_factor_plan_shares_the_classifier_and_labels_tiny_base():
    factors = runs_of("factors_tiny.json")
    rebound = {r.config.experiment_name: r.config for r in runs_of("rebound_tiny.json")}
    # Same config, same run directory: the second plan skips the classifier the first one trained.
    assert to_dict(factors[0].config) == to_dict(rebound["classifier_imdb"])
    [tiny_base] = [r.config for r in factors if r.config.experiment == "rebound" and not r.config.pretrain_tokens]
    assert tiny_base.pretraining_tokens_label == TinyBuildConfig().pretrain_tokens


def test_rebound_paper_plan():
    runs = runs_of("rebound_paper.json")
    assert {(r.config.dataset, r.config.model) for r in runs} == {
        (d, m) for d in ("imdb", "beavertails") for m in ("meta-llama/Llama-2-7b-hf", "google/gemma-2b")}
    for r in runs:
        c = r.config
        assert (c.positive_sizes, c.negative_sizes, c.kl_epsilon) == (
            [1000, 2000, 5000, 10000], [100, 200, 500, 1000, 2000], 0.01)


def test_resistance_paper_plan_makes_the_27_comparisons():
    runs = runs_of("resistance_paper.json")
    assert {(r.config.dataset, r.config.model) for r in runs} == {
        (d, m) for d in ("alpaca", "truthful_qa", "beavertails")
        for m in ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-13b-hf", "meta-llama/Meta-Llama-3-8B")}
    assert sum(r.config.num_slices * (r.config.num_slices - 1) // 2 for r in runs) == 27
    assert all(r.config.dataset_polarity == ("positive" if r.config.dataset == "beavertails" else "all") for r in runs)


def test_factors_paper_plan():
    runs = runs_of("factors_paper.json")
    models = {(r.config.model, r.config.pretraining_tokens_label) for r in runs}
    assert models == {("Qwen/Qwen1.5-0.5B", 0), ("Qwen/Qwen1.5-4B", 0), ("Qwen/Qwen1.5-7B", 0),
                      ("TinyLlama/TinyLlama-1.1B-intermediate-step-955k-token-2T", 2e12),
                      ("TinyLlama/TinyLlama-1.1B-intermediate-step-1195k-token-2.5T", 2.5e12),
                      ("TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T", 3e12)}
    assert {r.config.dataset for r in runs} == {"imdb", "beavertails"} and len(runs) == 12


def test_run_directories_are_distinct():
    paper = [r.run_dir for name in ("resistance_paper.json", "rebound_paper.json", "factors_paper.json")
             for r in runs_of(name)]
    assert len(set(paper)) == len(paper)


@pytest.mark.parametrize("name", ["resistance_paper.json", "rebound_paper.json", "factors_paper.json"])
def test_paper_plans_train_fp32_master_weights(name):
    # bf16 weights with a bf16 AdamW state at lr 2e-5 lost ~70% of the update in a 10-step check.
    assert all((r.config.dtype, r.config.precision) == ("float32", "bf16") for r in runs_of(name))


def test_training_bf16_weights_at_a_small_lr_is_an_error_naming_the_fix(tmp_path):
    from common.errors import ConfigError

    base = {"experiment": "resistance", "model": "m", "dtype": "bfloat16", "lr": 2e-5}
    with pytest.raises(ConfigError, match=r"dtype: bfloat16 weights trained at lr 2e-05 lose most updates.*"
                                          r"use dtype float32 \(with precision bf16.*allow_bf16_weights true"):
        expand_plan({"name": "p", "configurations": [{"base_config": base}]}, PlanConfig)
    for opt_out in ({"allow_bf16_weights": True}, {"lora": {"r": 8}}, {"lr": 1e-3}, {"dtype": "float32"}):
        [run] = expand_plan({"name": "p", "configurations": [{"base_config": {**base, **opt_out}}]}, PlanConfig)
        assert run.config.model == "m"
