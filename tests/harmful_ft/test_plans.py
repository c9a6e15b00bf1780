"""The plans expand, their stages name each other's models by templating, and the paper plans carry
the papers' hyper-parameters (docs/harmful_ft.md)."""
import json
from pathlib import Path

import pytest

from common.plans import expand_plan
from harmful_ft.run import PlanConfig

PLANS = Path(__file__).resolve().parents[2] / "harmful_ft" / "experiments_plans"


def expand(name):
    return expand_plan(json.loads((PLANS / name).read_text()), PlanConfig, name)


def align_config(name, defense):
    """The one alignment stage of plan `name`; it runs `defense`, without gradient checkpointing."""
    align = [r.config for r in expand(name) if r.config.stage == "align"]
    assert len(align) == 1 and align[0].defense == defense and not align[0].gradient_checkpointing
    return align[0]


@pytest.mark.parametrize("name", sorted(p.name for p in PLANS.glob("*.json")))
def test_stages_name_each_other(name):
    runs = expand(name)
    dirs = {str(r.run_dir) for r in runs}
    outside = [r for r in runs if not r.config.model.startswith(r.config.outputs_dir)]  # hub or base models
    assert all(r.config.stage == "align" or r.run_dir.name == "evaluate_base_s0" for r in outside)
    for r in runs:
        if r.config.stage != "align" and r.config.model.startswith(r.config.outputs_dir):  # not the base model
            assert str(Path(r.config.model).parent) in dirs, (r.origin, r.config.model)
        if r.config.stage == "evaluate" and Path(r.config.model).parent.name.startswith("finetune"):
            producer = next(x for x in runs if str(x.run_dir) == str(Path(r.config.model).parent))
            made, used = producer.config, r.config
            assert (made.task, made.p, made.n) == (used.task, used.p, used.n)


@pytest.mark.parametrize("name, align, finetune, protocol", [
    ("vaccine_llama2_7b.json", {"lr": 1e-3, "num_epochs": 50, "batch_size": 5, "num_align": 2000,
                                "safety_data": "beavertails_safe"}, {"lr": 1e-5, "num_epochs": 20}, (500, 500, 128)),
    ("booster_llama2_7b.json", {"lr": 5e-4, "num_epochs": 20, "batch_size": 10, "num_align": 5000,
                                "safety_data": "repnoise_refusal"}, {"lr": 1e-5, "num_epochs": 20}, (1000, 1000, 512)),
])
def test_paper_plans(name, align, finetune, protocol):
    runs = expand(name)
    by_stage = {s: [r.config for r in runs if r.config.stage == s] for s in ("align", "finetune", "evaluate")}
    assert len(by_stage["align"]) == 1 and len(by_stage["finetune"]) == 15 and len(by_stage["evaluate"]) == 16
    assert {c.p for c in by_stage["finetune"]} == {0.0, 0.01, 0.05, 0.1, 0.2}
    assert {c.task for c in by_stage["finetune"]} == {"sst2", "agnews", "gsm8k"}
    a = by_stage["align"][0]
    assert {k: getattr(a, k) for k in align} == align and a.merge_lora and a.weight_decay == 0.1
    assert all({k: getattr(c, k) for k in finetune} == finetune and c.n == 1000 for c in by_stage["finetune"])
    p = by_stage["evaluate"][0].protocol()
    assert (p["num_harmful_eval"], p["num_task_eval"], p["max_new_tokens"]) == protocol
    assert all(c.judge == {"type": "beaver_dam"} for c in by_stage["evaluate"])


@pytest.mark.parametrize("name, methods, align, finetune", [
    ("lisa_llama2_7b.json", {"none", "lisa"}, {"lr": 1e-3, "num_epochs": 30, "batch_size": 5, "num_align": 10000},
     {"lr": 1e-5, "batch_size": 5, "n": 5000, "weight_decay": 0.0, "lisa_rho": 1.0, "lisa_align_steps": 100,
      "lisa_finetune_steps": 900, "lisa_proximal_after": 0.1}),
    ("panacea_llama2_7b.json", {"none", "panacea", "random_perturbation"},
     {"lr": 5e-4, "num_epochs": 20, "batch_size": 10, "num_align": 5000},
     {"lr": 2e-5, "batch_size": 10, "n": 1000, "panacea_lambda": 0.001, "panacea_rho": 1.0, "panacea_clamp": 5.0,
      "panacea_num_harmful": 1000}),
])
def test_finetune_defense_paper_plans(name, methods, align, finetune):
    runs = expand(name)
    by_stage = {s: [r.config for r in runs if r.config.stage == s] for s in ("align", "finetune", "evaluate")}
    a = by_stage["align"][0]
    assert len(by_stage["align"]) == 1 and {k: getattr(a, k) for k in align} == align
    assert len(by_stage["finetune"]) == 15 * len(methods) == len(by_stage["evaluate"]) - 1
    assert {c.finetune_defense for c in by_stage["finetune"]} == methods
    assert all({k: getattr(c, k) for k in finetune} == finetune and c.num_epochs == 20 for c in by_stage["finetune"])
    assert {c.finetune_defense for c in by_stage["evaluate"] if c.finetune_defense != "none"} == methods - {"none"}


def test_zo_attack_plan_runs_the_mezo_lora_grid_after_the_vaccine_alignment():
    runs = expand("zo_attack_llama2_7b.json")
    by_stage = {s: [r.config for r in runs if r.config.stage == s] for s in ("align", "finetune", "evaluate")}
    vaccine = {r.config.stage: r.config for r in expand("vaccine_llama2_7b.json")}
    fields = ("model", "lora", "lr", "num_epochs", "batch_size", "num_align", "safety_data", "weight_decay")
    assert [{k: getattr(c, k) for k in fields} for c in by_stage["align"]] == [
        {k: getattr(vaccine["align"], k) for k in fields}]  # the same aligned model as the Vaccine plan
    finetune = by_stage["finetune"]
    assert {(c.optimizer, c.lr) for c in finetune} == {(o, lr) for o in ("mezo", "tezo") for lr in (1e-4, 5e-5)}
    assert all(c.zo_eps == 1e-2 and c.lora["r"] == 8 and c.n == 1000 and c.task == "sst2" for c in finetune)
    assert {c.p for c in finetune} == {0.0, 0.05, 0.1, 0.2} and len(finetune) == 16
    assert len(by_stage["evaluate"]) == 17 and by_stage["evaluate"][0].protocol()["num_harmful_eval"] == 500
