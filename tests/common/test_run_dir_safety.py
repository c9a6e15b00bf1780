"""Run-directory safety: confinement, the run marker, aliases, the per-run lock, kills at each write step, and two
plan processes racing on one plan.

Kills are real: a forked child runs the run with ALAB_CRASH_AT naming a write step, where the code
calls os._exit (no finally blocks, no clean-up, as kill -9), and the parent then re-runs it.
"""
import json
import logging
import os
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from common.config import RunConfig, TrainConfig, option
from common.data import PreferenceExample
from common.errors import ConfigError
from common.plans import PlannedRun, execute_run, expand_plan, run_plan, run_status
from common.rundir import CHECKPOINT_DIR, CRASH_EXIT, LOCK_FILE, PREVIOUS_CHECKPOINT_DIR, run_dir_lock
from common.tracking import read_jsonl, write_json
from common.trainer import Trainer
from tests.conftest import random_llama

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ModelConfig(RunConfig):
    model: str = option("")


def plan(*configurations):
    return {"configurations": [{"base_config": c} for c in configurations]}


def write_plan(tmp_path, p):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(p))
    return path


def fake_model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32}))
    (path / "model.safetensors").write_bytes(b"weights")
    return path


def files(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------------------
# Confinement and aliases (at plan expansion: nothing is touched)


@pytest.mark.parametrize("name", ["a/..", "../sibling", "a/../../x", "/tmp/elsewhere", "{model}"])
def test_experiment_name_must_stay_under_outputs_dir(name):
    p = plan({"outputs_dir": "out", "experiment_name": name, "model": "/models/llama"})
    with pytest.raises(ConfigError) as e:
        expand_plan(p, ModelConfig, "plan.json")
    assert str(e.value).startswith("plan.json: configurations[0].base_config.experiment_name: ")
    assert "leaves outputs_dir; use a relative path without '..'" in str(e.value)


def test_relative_names_with_subdirectories_are_fine():
    runs = expand_plan(plan({"outputs_dir": "out/", "experiment_name": "group/./run"}), ModelConfig)
    assert runs[0].run_dir == Path("out/group/run")


@pytest.mark.parametrize("first,second,message", [
    ({"experiment_name": "a"}, {"experiment_name": "b/../a"}, "both write to {out}/a;"),
    ({"experiment_name": "a"}, {"experiment_name": "a", "outputs_dir": "{out}/"}, "both write to {out}/a;"),
    ({"experiment_name": "a"}, {"experiment_name": "a", "outputs_dir": "{link}"},
     "both write to {out}/a (as {link}/a)"),
    ({"experiment_name": "a"}, {"experiment_name": "a/b"}, "inside the directory of run 0"),
    ({"experiment_name": "a/b"}, {"experiment_name": "a"}, "inside the directory of run 1"),
])
def test_aliased_and_nested_run_dirs_are_detected(tmp_path, first, second, message):
    out, link = tmp_path / "out", tmp_path / "link"
    out.mkdir()
    link.symlink_to(out)

    def fill(c):
        return {"outputs_dir": str(out), **{k: v.format(out=out, link=link) for k, v in c.items()}}

    with pytest.raises(ConfigError) as e:
        expand_plan(plan(fill(first), fill(second)), ModelConfig, "plan.json")
    assert message.format(out=out, link=link) in str(e.value)


# ----------------------------------------------------------------------------------------------
# Directories the runner did not create are never written into or deleted, --force or not


def test_model_dir_is_refused_with_and_without_force(tmp_path):
    model = fake_model_dir(tmp_path / "models" / "llama")
    before = files(model)
    for force in (False, True):
        p = write_plan(tmp_path, plan({"outputs_dir": str(tmp_path / "models"), "experiment_name": "llama"}))
        with pytest.raises(ConfigError, match=f"{model}: is not a run directory .*refusing to write into or "
                                              f"delete it"):
            run_plan(p, ModelConfig, lambda c, d: pytest.fail("ran in a model directory"), force=force)
    assert files(model) == before


def test_directory_of_other_runs_is_refused_and_nested_runs_are_not_cleared(tmp_path):
    out = tmp_path / "out"
    inner = write_plan(tmp_path, plan({"outputs_dir": str(out / "group"), "experiment_name": "x"}))
    run_plan(inner, ModelConfig, lambda c, d: {"ok": 1})
    before = files(out)
    outer = write_plan(tmp_path, plan({"outputs_dir": str(out), "experiment_name": "group"}))
    with pytest.raises(ConfigError, match="is not a run directory"):
        run_plan(outer, ModelConfig, lambda c, d: {}, force=True)
    # A run directory that holds another run (made by hand) is not cleared by --force either.
    write_json(out / "group" / "config.json", {"experiment_name": "group", "outputs_dir": str(out), "seed": 1})
    with pytest.raises(ConfigError, match=f"holds another run's directory {out}/group/x"):
        run_plan(outer, ModelConfig, lambda c, d: {}, force=True)
    assert files(out / "group" / "x") == {k.removeprefix("group/x/"): v for k, v in before.items()
                                          if k.startswith("group/x/")}


def test_tds_output_dir_on_a_model_dir_with_force_is_one_error_line(tmp_path):
    model = fake_model_dir(tmp_path / "model")
    before = files(model)
    data = tmp_path / "data.jsonl"
    data.write_text('{"instruction": "hi", "response": "hello"}\n')
    result = subprocess.run([sys.executable, "-m", "tds", "--base", str(model), "--aligned", str(model), "--data",
                             str(data), "--output_dir", str(model), "--force"], cwd=REPO, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {model}: is not a run directory (no config.json written by a run); refusing to write into or "
        f"delete it (with or without --force): choose another experiment_name / outputs_dir (--output_dir), "
        f"or move its files away"]
    assert files(model) == before


# ----------------------------------------------------------------------------------------------
# One process per run directory


def test_a_run_in_use_is_an_error_naming_the_process_and_a_dead_holder_is_taken_over(tmp_path):
    out = tmp_path / "out"
    p = write_plan(tmp_path, plan({"outputs_dir": str(out), "experiment_name": "a", "model": "m",
                                   "dataset": "d.jsonl"}))
    with run_dir_lock(out / "a"):  # this process is "the first run"
        result = subprocess.run([sys.executable, "-m", "train_preferences", "--plan_config_path", str(p)],
                                cwd=REPO, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [
            f"error: run {out}/a is in use by process {os.getpid()}; wait for it to finish (or stop it), "
            f"or leave this run out with --only"]
        assert sorted(q.name for q in (out / "a").iterdir()) == [LOCK_FILE]  # the second process wrote nothing

        toy = PlannedRun(0, ModelConfig(experiment_name="a", outputs_dir=str(out)), "test")
        with pytest.raises(ConfigError, match=f"in use by process {os.getpid()}"):  # the runner's own check
            execute_run(toy, lambda c, d: pytest.fail("ran a run in use"))
        # The holder is writing config.json: the directory holds the lock and a temporary file, no marker
        # yet. Still "in use", not "not a run directory" (a race two plan processes hit in CI).
        (out / "a" / ".config.json.tmp").write_text("{")
        with pytest.raises(ConfigError, match=f"in use by process {os.getpid()}"):
            execute_run(toy, lambda c, d: pytest.fail("ran a run in use"))
        (tmp_path / "toy").mkdir()
        toy_plan = write_plan(tmp_path / "toy", plan({"outputs_dir": str(out), "experiment_name": "a"}))
        with pytest.raises(ConfigError, match=f"in use by process {os.getpid()}"):  # the plan's up-front checks
            run_plan(toy_plan, ModelConfig, lambda c, d: pytest.fail("ran a run in use"))
        (out / "a" / ".config.json.tmp").unlink()
    # The holder is gone (for a killed process the kernel drops the lock the same way): the run proceeds.
    execute_run(toy, lambda c, d: {"ok": 1})
    assert run_status(toy) == "finished"


# ----------------------------------------------------------------------------------------------
# Kills at each write step


def pairs():
    g = torch.Generator().manual_seed(0)

    def ids(n):
        return torch.randint(3, 97, (n,), generator=g).tolist()

    return [PreferenceExample(ids(4 + i % 3), ids(2 + i % 4), ids(3 + i % 2), i) for i in range(8)]


def train_fn(config, run_dir):
    return Trainer(config, random_llama(), types.SimpleNamespace(pad_token_id=0), pairs(), run_dir).train()


def training_run(out: Path) -> PlannedRun:
    # 4 steps (2 epochs of 2), a checkpoint after steps 1-3: rotations with and without a previous one.
    config = TrainConfig(model="random", lr=1e-2, batch_size=4, num_epochs=2, optimizer="adam",
                         save_every_steps=1, outputs_dir=str(out), experiment_name="run")
    return PlannedRun(0, config, "test")


def losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "train"]


def run_killed_at(point: str, run: PlannedRun) -> int:
    """Run `run` in a forked child that exits abruptly at `point`; its exit status."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            torch.set_num_threads(1)  # as DataLoader workers do: the parent's thread pool is not forked
            os.environ["ALAB_CRASH_AT"] = point
            execute_run(run, train_fn)
            code = 0
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.fixture(scope="module")
def straight_losses(tmp_path_factory):
    run = training_run(tmp_path_factory.mktemp("straight"))
    execute_run(run, train_fn)
    return losses(run.run_dir)


@pytest.mark.parametrize("point,left", [
    ("checkpoint_written", []),  # the first checkpoint complete in .checkpoint.tmp, not installed
    ("checkpoint_installed", [CHECKPOINT_DIR]),
    ("checkpoint_moved_aside", [PREVIOUS_CHECKPOINT_DIR]),  # step 2: the old one aside, the new one not in
    ("summary_written", [CHECKPOINT_DIR]),  # finished; the resume state not yet removed
])
def test_a_kill_at_each_write_step_leaves_a_run_that_completes(tmp_path, straight_losses, point, left):
    run = training_run(tmp_path)
    assert run_killed_at(point, run) == CRASH_EXIT
    assert [n for n in (CHECKPOINT_DIR, PREVIOUS_CHECKPOINT_DIR) if (run.run_dir / n).is_dir()] == left
    execute_run(run, train_fn)  # the same command again, as a user would
    assert run_status(run) == "finished"
    assert losses(run.run_dir) == pytest.approx(straight_losses, abs=1e-5)  # steps continue as if never killed
    leftovers = {p.name for p in run.run_dir.iterdir()} - {"config.json", "log.txt", "metrics.jsonl", LOCK_FILE,
                                                           "reference_logps.safetensors", "summary.json"}
    assert leftovers == set()  # no checkpoint, no temporaries


def test_incomplete_checkpoints_fall_back_to_the_previous_one_or_a_restart(tmp_path, straight_losses, caplog):
    caplog.set_level(logging.INFO, logger="alignlab")
    run = training_run(tmp_path)
    assert run_killed_at("checkpoint_installed", run) == CRASH_EXIT  # complete checkpoint at step 1
    current, previous = run.run_dir / CHECKPOINT_DIR, run.run_dir / PREVIOUS_CHECKPOINT_DIR
    current.rename(previous)
    write_json(current / "trainer_state.json", {"step": 3})  # the observed wreck: state without weights
    execute_run(run, train_fn)
    assert f"{current}: incomplete checkpoint (" in caplog.text and f"resumed from {previous} at step 1" in caplog.text
    assert losses(run.run_dir) == pytest.approx(straight_losses, abs=1e-5)

    caplog.clear()
    run = training_run(tmp_path / "b")
    assert run_killed_at("checkpoint_installed", run) == CRASH_EXIT
    (run.run_dir / CHECKPOINT_DIR / "trainable.safetensors").unlink()
    (run.run_dir / ".model.tmp-12345").mkdir()  # a killed final save
    execute_run(run, train_fn)
    assert f"{run.run_dir}: no complete checkpoint; restarting the run from step 0" in caplog.text
    assert losses(run.run_dir) == pytest.approx(straight_losses, abs=1e-5)
    assert not (run.run_dir / ".model.tmp-12345").exists()


# ----------------------------------------------------------------------------------------------
# Two real plan processes racing on one plan


def race_plan(tmp_path: Path, model: str, out: Path) -> Path:
    # The cheapest real runner: train_preferences, 2 runs of 2 DPO steps (8 pairs, 4 per step) on tiny-base.
    tmp_path.mkdir()
    data = tmp_path / "prefs.jsonl"
    rows = (REPO / "data_files" / "pref_similarity" / "plain_tiny.jsonl").read_text().splitlines()[:8]
    data.write_text("\n".join(rows) + "\n")
    base = {"model": model, "dataset": str(data), "objective": "dpo", "optimizer": "adam", "batch_size": 4,
            "num_epochs": 1, "use_chat_template": False, "max_length": 256, "outputs_dir": str(out),
            "experiment_name": "lr{lr}"}
    return write_plan(tmp_path, {"configurations": [{"base_config": base, "options": {"lr": [1e-4, 3e-4]}}]})


def without_timings(record: dict, prefix: str = "") -> dict:
    """The record's values by key path ("train/loss"), without the wall-clock ones."""
    flat = {}
    for k, v in record.items():
        if "time" not in k and "per_second" not in k:
            flat.update(without_timings(v, f"{prefix}{k}/") if isinstance(v, dict) else {prefix + k: v})
    return flat


def assert_same_record(a: dict, b: dict) -> None:
    """Same keys and texts; numbers equal up to float32 rounding, which differs with the thread count
    (the children run with 1 thread): relative 1e-5."""
    a, b = without_timings(a), without_timings(b)
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(b[key], (int, float)) and not isinstance(b[key], bool):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-5), key
        else:
            assert a[key] == b[key], key


def test_two_plan_processes_on_one_plan_train_each_run_once(tmp_path, tiny_models):
    from train_preferences.config import PreferenceRunConfig
    from train_preferences.run import run as train_preferences

    alone = run_plan(race_plan(tmp_path / "alone", tiny_models["base"], tmp_path / "alone" / "out"),
                     PreferenceRunConfig, train_preferences)  # the reference: one process, in this one

    out = tmp_path / "raced" / "out"
    plan_path = race_plan(tmp_path / "raced", tiny_models["base"], out)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    children = [subprocess.Popen([sys.executable, "-m", "train_preferences", "--plan_config_path", str(plan_path)],
                                 cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
    errors = [c.communicate(timeout=600)[1] for c in children]
    codes = [c.returncode for c in children]
    # Whoever comes second either finds a run in use (exit 2, one line naming the first) or, when the
    # first has already finished, skips every run (exit 0). Never a traceback, never a second training.
    assert sorted(codes) in ([0, 0], [0, 2]), errors
    for child, err in zip(children, errors):
        assert "Traceback" not in err and "FileExistsError" not in err, err
        if child.returncode == 2:
            other, = [c.pid for c in children if c is not child]
            assert err.strip().splitlines()[-1].startswith(f"error: run {out}/lr")
            assert f" is in use by process {other}; wait for it to finish" in err.strip().splitlines()[-1]

    for reference in alone:
        run_dir = out / reference.run_dir.name
        log = (run_dir / "log.txt").read_text()
        assert log.count("] run: ") == 1 and "] resume: " not in log, log  # trained once, from the start
        raced, single = read_jsonl(run_dir / "metrics.jsonl"), read_jsonl(reference.run_dir / "metrics.jsonl")
        assert [r["step"] for r in raced if r["kind"] == "train"] == [1, 2]
        assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == len(single)
        for a, b in zip(raced, single):
            assert_same_record(a, b)
        summary = json.loads((run_dir / "summary.json").read_text())
        assert_same_record(summary, json.loads((reference.run_dir / "summary.json").read_text()))
