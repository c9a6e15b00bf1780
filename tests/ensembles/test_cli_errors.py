"""Bad plans end in one `error:` line naming the field, exit status 2: ensemble runs and H3Fusion's stages."""
import json

import pytest

from common.cli import study_main
from ensembles.config import EnsembleConfig
from ensembles.run import PlanConfig, run

BASE = {"pool": ["a/b/c", "d/e/f"], "dataset_path": "set.jsonl"}
H3 = {"model": "outputs/tiny_models/tiny-chat"}


def error_line(tmp_path, capsys, config_cls, base_config) -> str:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"configurations": [{"base_config": base_config}]}))
    with pytest.raises(SystemExit) as exit_info:
        study_main("ensembles", "test", config_cls, run, ["--plan_config_path", str(plan), "--dry_run"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    return err[0]


@pytest.mark.parametrize("change, message", [
    ({"pool": ["a/b/c"]}, "at least 2 members"),
    ({"pool": ["x", {"model": "x", "seed": 1}]}, "member 1: unknown key 'seed'"),
    ({"pool": ["x", {"name": "y"}]}, "member 1: \"model\""),
    ({"pool": ["m/x", "n/x"]}, "both named 'x'"),
    ({"train_fraction": 0.7, "validation_fraction": 0.3}, "leaves no test split"),
    ({"dataset_path": ""}, "dataset_path: required"),
])
def test_bad_configs(tmp_path, capsys, change, message):
    assert message in error_line(tmp_path, capsys, EnsembleConfig, {**BASE, **change})


def test_the_plan_config_builds_ensemble_runs_too(tmp_path, capsys):
    assert "at least 2 members" in error_line(tmp_path, capsys, PlanConfig, {**BASE, "pool": ["a/b/c"]})


@pytest.mark.parametrize("change, message", [
    ({"stage": "experts"}, "did you mean 'expert'"),
    ({"stage": "fusion", "top_k": 4}, "top_k: expected a value <= 3"),
    ({"stage": "fusion", "lora": {"r": 8}}, "trains the routers only"),
    ({"stage": "fusion", "experts": ["a", "b"]}, "unknown key 'experts'"),
    ({"stage": "fusion", "harmless_expert": "{outputs_dir}/expert_helpful_s{seed}"}, "of helpful_expert too"),
    ({"stage": "fusion", "harmful_judge": {"type": "beaver_dam", "model": "/no/such/judge"}}, "cannot load it"),
    ({"stage": "fusion", "helpful_scorer": {"type": "keyword_refusl"}}, "unknown scorer 'keyword_refusl'"),
    ({"stage": "fusion", "pool": ["a", "b"]}, "not a field of stage \"fusion\" (only of \"ensemble\")"),
    ({"stage": "expert", "expert": "funny"}, "\"funny\" is not one of"),
    ({"stage": "expert", "lora": {"r": 8, "target_modules": ["q_proj", "up_proj"]}}, "adapts the MLP only"),
    ({"stage": "expert", "lora": None}, "an expert is a LoRA"),
    ({"stage": "expert", "data_sources": {"helpfull": "x"}}, "did you mean 'helpful'"),
    ({"stage": "expert", "objective": "dpo"}, "cross_entropy (SFT) only"),
])
def test_bad_h3fusion_configs(tmp_path, capsys, change, message):
    assert message in error_line(tmp_path, capsys, PlanConfig, {**H3, **change})
