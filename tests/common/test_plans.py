"""Plan expansion, validation messages, and the runner's skip / force / only / resume behaviour."""
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.config import RunConfig, option
from common.errors import ConfigError
from common.plans import expand_plan, run_plan, run_status

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ToyConfig(RunConfig):
    objective: str = option("dpo", choices=["dpo", "ipo"])
    lr: float = option(1e-7, min=0.0)
    train_samples_random_seed: int = option(0)
    tokens: list[str] = option(["Yes", "No"])
    load_model_checkpoint: str = option("")
    steps: int = option(100, min=1)


def plan(base=None, options=None, **top):
    return {"name": "toy", "configurations": [{"base_config": base or {}, "options": options or {}}], **top}


def test_cartesian_options_and_templating():
    runs = expand_plan(plan({"experiment_name": "post_sft_{objective}_seed_{train_samples_random_seed}"},
                            {"objective": ["dpo", "ipo"], "train_samples_random_seed": [1, 2, 3]}), ToyConfig)
    names = [r.config.experiment_name for r in runs]
    assert names == ["post_sft_dpo_seed_1", "post_sft_dpo_seed_2", "post_sft_dpo_seed_3",
                     "post_sft_ipo_seed_1", "post_sft_ipo_seed_2", "post_sft_ipo_seed_3"]
    assert [r.index for r in runs] == list(range(6))
    assert runs[4].run_dir == Path("outputs/post_sft_ipo_seed_2")


def test_templates_reach_defaults_other_templates_and_other_runs_outputs():
    runs = expand_plan(plan({"outputs_dir": "out/{objective}", "experiment_name": "run_{steps}",
                             "load_model_checkpoint": "{outputs_dir}/sft/model"}), ToyConfig)
    config = runs[0].config
    assert config.experiment_name == "run_100"  # a default filled in
    assert config.load_model_checkpoint == "out/dpo/sft/model"  # a templated field filled in


def test_repetitions_vary_seed_and_name():
    runs = expand_plan(plan({"experiment_name": "r", "seed": 10}, repetitions=3), ToyConfig)
    assert [(r.config.experiment_name, r.config.seed) for r in runs] == [("r_rep0", 10), ("r_rep1", 11), ("r_rep2", 12)]
    runs = expand_plan(plan({"experiment_name": "r{repetition}"}, repetitions=2), ToyConfig)
    assert [r.config.experiment_name for r in runs] == ["r0", "r1"]


def test_skip_plan_and_configuration():
    assert expand_plan(plan(skip=True), ToyConfig) == []
    p = {"configurations": [{"base_config": {"experiment_name": "a"}, "skip": True},
                            {"base_config": {"experiment_name": "b"}}]}
    assert [r.config.experiment_name for r in expand_plan(p, ToyConfig)] == ["b"]


@pytest.mark.parametrize("bad_plan,message", [
    (plan({"lr": "fast"}), 'plan.json: configurations[0].base_config.lr: expected a number, got "fast"'),
    (plan({"lrr": 0.1}), "plan.json: configurations[0].base_config.lrr: unknown key 'lrr'; did you mean 'lr'?"),
    (plan(options={"seeed": [1]}),
     "plan.json: configurations[0].options.seeed: unknown key 'seeed'; did you mean 'seed'?"),
    (plan(options={"lr": [0.1, "x"]}), 'plan.json: configurations[0].options.lr[1]: expected a number, got "x"'),
    (plan(options={"lr": 0.1}),
     "plan.json: configurations[0].options.lr: expected a non-empty list of values, got 0.1"),
    (plan({"objective": "dpoo"}),
     'plan.json: configurations[0].base_config.objective: "dpoo" is not one of "dpo", "ipo"; did you mean \'dpo\'?'),
    (plan({"lr": -1}), "plan.json: configurations[0].base_config.lr: expected a value >= 0.0, got -1"),
    (plan({"steps": 1.5}), "plan.json: configurations[0].base_config.steps: expected an integer, got 1.5"),
    (plan({"tokens": ["Yes", 3]}),
     'plan.json: configurations[0].base_config.tokens: expected a list of a string, got ["Yes", 3]'),
    (plan({"experiment_name": "x_{sed}"}),
     "plan.json: configurations[0].base_config.experiment_name: template {sed} names no config field; "
     "did you mean 'seed'?"),
    (plan(options={"seed": [1, 2]}),
     "plan.json: runs 0 (configurations[0] (seed=1)) and 1 (configurations[0] (seed=2)) both write to outputs/run"),
    ({"configurations": []}, "plan.json: configurations: expected a non-empty list of objects"),
    ({"configurations": [{}], "descripton": ""}, "plan.json: unknown key 'descripton'; did you mean 'description'?"),
    ({"configurations": [{"base_confg": {}}]},
     "plan.json: configurations[0]: unknown key 'base_confg'; did you mean 'base_config'?"),
])
def test_bad_plans_name_the_json_path(bad_plan, message):
    with pytest.raises(ConfigError) as e:
        expand_plan(bad_plan, ToyConfig, "plan.json")
    assert str(e.value).startswith(message)


def write_plan(tmp_path, p):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(p))
    return path


def test_runner_skips_finished_runs_and_resumes_partial_ones(tmp_path):
    calls = []

    def run_fn(config, run_dir):
        calls.append(config.experiment_name)
        if config.experiment_name == "s2" and calls.count("s2") == 1:
            raise KeyboardInterrupt  # interrupted mid-run: no summary.json
        (run_dir / "artifact.txt").write_text("x")
        return {"value": config.seed}

    p = write_plan(tmp_path, plan({"outputs_dir": str(tmp_path / "out"), "experiment_name": "s{seed}"},
                                  {"seed": [1, 2, 3]}))
    with pytest.raises(KeyboardInterrupt):
        run_plan(p, ToyConfig, run_fn)
    assert calls == ["s1", "s2"]
    out = tmp_path / "out"
    assert json.loads((out / "s1" / "summary.json").read_text()) == {"status": "finished", "value": 1}
    assert json.loads((out / "s1" / "config.json").read_text())["seed"] == 1
    assert not (out / "s2" / "summary.json").exists()

    runs = run_plan(p, ToyConfig, run_fn)  # again: s1 skipped, s2 re-run, s3 run
    assert calls == ["s1", "s2", "s2", "s3"]
    assert [run_status(r) for r in runs] == ["finished"] * 3
    assert (out / "s1" / "log.txt").exists()

    run_plan(p, ToyConfig, run_fn, only=[2], force=True)
    assert calls[-1] == "s3" and len(calls) == 5


def test_changed_config_is_an_error_unless_forced(tmp_path):
    def run_fn(config, run_dir):
        return {"lr": config.lr}

    base = {"outputs_dir": str(tmp_path), "experiment_name": "a"}
    run_plan(write_plan(tmp_path, plan(base)), ToyConfig, run_fn)
    changed = write_plan(tmp_path, plan({**base, "lr": 0.5}))
    with pytest.raises(ConfigError, match=r"holds a run with a different config \(lr: 1e-07 -> 0.5\)"):
        run_plan(changed, ToyConfig, run_fn)
    run_plan(changed, ToyConfig, run_fn, force=True)
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["lr"] == 0.5


def test_config_json_names_the_study_and_older_runs_without_it_stay_finished(tmp_path):
    calls = []
    p = write_plan(tmp_path, plan({"outputs_dir": str(tmp_path), "experiment_name": "a"}))
    run_plan(p, ToyConfig, lambda c, d: calls.append(1) or {})
    stored = json.loads((tmp_path / "a" / "config.json").read_text())
    assert stored["study"] == "tests"  # the package of ToyConfig
    del stored["study"]  # a run written before config.json named its study
    (tmp_path / "a" / "config.json").write_text(json.dumps(stored))
    runs = run_plan(p, ToyConfig, lambda c, d: calls.append(2) or {})
    assert calls == [1] and run_status(runs[0]) == "finished"
    stored["study"] = "elasticity"  # another study's run in this directory
    (tmp_path / "a" / "config.json").write_text(json.dumps(stored))
    with pytest.raises(ConfigError, match=r'different config \(study: "elasticity" -> "tests"\)'):
        run_plan(p, ToyConfig, lambda c, d: {})


def test_dry_run_lists_runs_without_running(tmp_path, capsys):
    p = write_plan(tmp_path, plan({"outputs_dir": str(tmp_path), "experiment_name": "d{seed}"}, {"seed": [0, 1]}))
    run_plan(p, ToyConfig, lambda c, d: pytest.fail("dry run ran"), dry_run=True)
    out = capsys.readouterr().out
    assert "2 runs" in out and f"[1] new      {tmp_path}/d1" in out
    with pytest.raises(ConfigError, match="--only 5: the plan has 2 runs"):
        run_plan(p, ToyConfig, lambda c, d: None, only=[5])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "train_preferences", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_cli_prints_one_line_and_exits_2(tmp_path):
    p = write_plan(tmp_path, plan({"model": "m", "dataset": "d.jsonl", "lr": "fast"}))
    result = run_cli("--plan_config_path", str(p))
    assert result.returncode == 2
    assert result.stderr.strip() == f'error: {p}: configurations[0].base_config.lr: expected a number, got "fast"'
    assert "Traceback" not in result.stderr

    (tmp_path / "broken.json").write_text('{"configurations": [')
    result = run_cli("--plan_config_path", str(tmp_path / "broken.json"))
    assert result.returncode == 2 and "invalid JSON at line 1" in result.stderr

    result = run_cli("--plan_config_path", str(tmp_path / "missing.json"))
    assert result.returncode == 2 and result.stderr.strip().endswith("missing.json: plan file not found")


def test_cli_dry_run_and_config_help(tmp_path):
    p = write_plan(tmp_path, plan({"model": "m", "dataset": "d.jsonl", "outputs_dir": str(tmp_path)}))
    result = run_cli("--plan_config_path", str(p), "--dry_run")
    assert result.returncode == 0 and f"[0] new      {tmp_path}/run" in result.stdout
    result = run_cli("--help_config")
    assert "objective: a string" in result.stdout and "lr: a number = 1e-07" in result.stdout


def test_a_run_that_failed_during_setup_is_replaced_by_the_corrected_plan(tmp_path):
    def failing(config, run_dir):
        raise ConfigError("preferred_token ' Yess' is not a single token")

    base = {"outputs_dir": str(tmp_path), "experiment_name": "a"}
    with pytest.raises(ConfigError):
        run_plan(write_plan(tmp_path, plan({**base, "tokens": ["Yess"]})), ToyConfig, failing)
    run_plan(write_plan(tmp_path, plan({**base, "tokens": ["Yes"]})), ToyConfig, lambda c, d: {"ok": 1})
    assert json.loads((tmp_path / "a" / "config.json").read_text())["tokens"] == ["Yes"]
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["ok"] == 1


@dataclass
class KindConfig(RunConfig):
    """A dispatching config: `kind` picks each run's class (common.config.run_config_class)."""

    kind: str = option("small")

    @classmethod
    def run_classes(cls):
        return "kind", {"small": SmallRun, "large": LargeRun}


@dataclass
class SmallRun(RunConfig):
    kind: str = option("small", choices=["small"])
    width: int = option(8)


@dataclass
class LargeRun(RunConfig):
    kind: str = option("large", choices=["large"])
    width: int = option(64)
    depth: int = option(4)


def test_a_dispatching_config_builds_each_run_as_the_class_its_field_picks():
    runs = expand_plan(plan({"experiment_name": "{kind}_{width}"}, {"kind": ["small", "large"]}), KindConfig)
    assert [(type(r.config), r.config.experiment_name) for r in runs] == [(SmallRun, "small_8"), (LargeRun, "large_64")]
    assert type(expand_plan(plan({"depth": 2, "kind": "large"}), KindConfig)[0].config) is LargeRun


@pytest.mark.parametrize("p, message", [
    (plan({"depth": 2}), "configurations[0].base_config.depth: not a field of kind \"small\" "
                         "(only of \"large\"); remove it or change kind"),
    (plan({"widht": 2}), "configurations[0].base_config.widht: unknown key 'widht'; did you mean 'width'?"),
    (plan(options={"kind": ["small", "lage"]}), "configurations[0].options.kind: \"lage\" is not one of "
                                                "\"small\", \"large\"; did you mean 'large'?"),
])
def test_a_dispatching_config_names_the_kind_in_key_errors(p, message):
    with pytest.raises(ConfigError) as e:
        expand_plan(p, KindConfig)
    assert message in str(e.value)


@pytest.mark.parametrize("key,message", [
    ("peft_config", "unknown key 'peft_config'; TRL name: use lora: the peft LoraConfig kwargs"),
    ("learning_rate", "unknown key 'learning_rate'; TRL name: use lr"),
    ("loss_type", 'unknown key \'loss_type\'; TRL name: use objective (TRL loss_type "sigmoid" is objective "dpo"'),
    ("per_device_train_batch_size", "TRL name: use micro_batch_size (examples per forward per process) and "
                                    "batch_size"),
    ("gradient_accumulation_steps", "TRL name: use batch_size (examples per optimizer step, global)"),
    ("bf16", 'TRL name: use precision "bf16" (autocast) or dtype "bfloat16" (weights)'),
    ("report_to", "TRL name: use use_wandb: true"),
    ("warmup_steps", "TRL name: use warmup_ratio (share of the steps)"),
    ("num_train_epochs", "TRL name: use num_epochs"),
])
def test_trl_names_get_the_lab_name(key, message):
    from common.config import TrainConfig

    with pytest.raises(ConfigError) as e:
        expand_plan(plan({key: 1}), TrainConfig, "plan.json")
    assert str(e.value).startswith(f"plan.json: configurations[0].base_config.{key}: ")
    assert message in str(e.value)


def test_a_trl_name_whose_lab_field_the_config_lacks_gets_the_usual_suggestion():
    with pytest.raises(ConfigError) as e:  # ToyConfig has no lora
        expand_plan(plan({"peft_config": {}}), ToyConfig, "plan.json")
    assert "TRL name" not in str(e.value)
