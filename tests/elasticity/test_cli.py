"""Bad input: config checks name the field; through the command line, one `error:` line and exit status 2."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.plans import expand_plan
from elasticity.run import PlanConfig

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def plan(tmp_path, **base):
    return {"name": "bad", "configurations": [{"base_config": {"model": "some/model", "outputs_dir": str(tmp_path),
                                                                **base}}]}


@pytest.mark.parametrize("base, message", [
    ({"dataset": "imbd"}, "base_config.dataset: unknown dataset 'imbd'; did you mean 'imdb'"),
    ({"compression_datasets": ["txt"]}, "base_config.compression_datasets: unknown dataset 'txt'"),
    ({"experiment": "rebound", "dataset": "alpaca", "scorer": {"type": "keyword_refusal"}}, "needs a labelled dataset"),
    ({"experiment": "rebound", "dataset": "imdb"}, "configurations\\[0\\].scorer: rebound scores generations"),
    ({"experiment": "rebound", "dataset": "imdb", "scorer": {"type": "x"}, "negative_sizes": [0]},
     "negative_sizes: expected a non-empty list of positive integers"),
    ({"experiment": "rebound", "dataset": "imdb", "scorer": {"type": "x"}, "num_heldout": 50, "num_test_prompts": 64,
      "num_compression_examples": 50}, "num_test_prompts: the rows come from the 50 held-out rows"),
    ({"experiment": "rebound", "dataset": "imdb", "scorer": {"type": "x"}, "num_kl_examples": 201},
     "num_kl_examples: the rows come from the 200 held-out rows"),
    ({"dataset": "alpaca", "dataset_polarity": "positive"}, "alpaca has no labels"),
    ({"num_generation_heldout": 300}, "must be smaller than num_generation_prompts"),
    ({"pretrain_tokens": 100, "pretrain_spec": {"hidden": 8}}, "unknown TinyModelSpec field 'hidden'"),
    ({"pretrain_tokens": 100, "pretrain_spec": {"hidden_size": "64"}},
     "pretrain_spec.hidden_size: expected a positive"),
    ({"pretrain_tokens": 100, "pretrain_spec": {"hidden_size": 60, "num_heads": 8}}, "hidden_size 60 is not divisible"),
    ({"pretrain_tokens": 100, "pretrain_spec": {"num_kv_heads": 3}}, "num_heads 4 is not divisible by num_kv_heads 3"),
    ({"pretrain_tokens": 100, "pretrain_spec": {"rms_norm_eps": 0}}, "pretrain_spec.rms_norm_eps: expected a positive"),
])
def test_config_errors_name_the_field(tmp_path, base, message):
    with pytest.raises(ConfigError, match=message):
        expand_plan(plan(tmp_path, **base), PlanConfig)


@pytest.mark.parametrize("base, message", [
    ({"experiment": "classifier", "dataset": "imdb", "kl_epsilon": 0.1},
     "configurations[0].base_config.kl_epsilon: not a field of experiment \"classifier\" (only of \"rebound\")"),
    ({"experiment": "classifier", "dataset": "imdb", "pretrain_tokens": 100},
     "base_config.pretrain_tokens: not a field of experiment \"classifier\" (only of \"resistance\", \"rebound\")"),
    ({"experiment": "rebound", "dataset": "imdb", "scorer": {"type": "x"}, "dataset_polarity": "positive"},
     "dataset_polarity: not a field of experiment \"rebound\" (only of \"classifier\", \"resistance\")"),
    ({"num_test_prompts": 10}, "num_test_prompts: not a field of experiment \"resistance\" (only of \"rebound\")"),
    ({"experiment": "rebound", "kl_epsilom": 0.1}, "kl_epsilom: unknown key 'kl_epsilom'; did you mean 'kl_epsilon'?"),
    ({"experiment": "rebund"}, "experiment: \"rebund\" is not one of \"classifier\", \"resistance\", \"rebound\"; "
                               "did you mean 'rebound'?"),
])
def test_a_field_the_runs_stage_does_not_use_is_an_error_naming_the_stage(tmp_path, base, message):
    with pytest.raises(ConfigError) as e:
        expand_plan(plan(tmp_path, **base), PlanConfig)
    assert message in str(e.value)


def test_command_line_errors_are_one_line_with_status_2(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan(tmp_path, experiment="resistance", dataset="alpaca",
                                    data_sources={"alpaca": "./no/such.jsonl"})))
    result = run_cli("elasticity", "--plan_config_path", str(path))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: ./no/such.jsonl: file not found"] and "Traceback" not in result.stderr
    result = run_cli("elasticity.results", "--experiments_dir", str(tmp_path / "none"))
    assert result.returncode == 2 and result.stderr.strip() == f"error: {tmp_path / 'none'}: no such directory"
