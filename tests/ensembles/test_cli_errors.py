"""Bad plans end in one `error:` line naming the field, exit status 2."""
import json

import pytest

from ensembles.__main__ import EnsembleConfig, run, study_main

BASE = {"pool": ["a/b/c", "d/e/f"], "dataset_path": "set.jsonl"}


@pytest.mark.parametrize("change, message", [
    ({"pool": ["a/b/c"]}, "at least 2 members"),
    ({"pool": ["x", {"model": "x", "seed": 1}]}, "member 1: unknown key 'seed'"),
    ({"pool": ["x", {"name": "y"}]}, "member 1: \"model\""),
    ({"pool": ["m/x", "n/x"]}, "both named 'x'"),
    ({"train_fraction": 0.7, "validation_fraction": 0.3}, "leaves no test split"),
    ({"dataset_path": ""}, "dataset_path: required"),
])
def test_bad_configs(tmp_path, capsys, change, message):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"configurations": [{"base_config": {**BASE, **change}}]}))
    with pytest.raises(SystemExit) as exit_info:
        study_main("ensembles", "test", EnsembleConfig, run, ["--plan_config_path", str(plan), "--dry_run"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
