"""Malformed plans, full and read-only disks, changed data: one `error:` line, exit status 2, no traceback.

Each plan goes through a real plan runner (`python -m train_preferences`) in a subprocess; a case whose
error only shows when the run starts runs for real (it fails before the model loads).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import RunConfig, option
from common.errors import ConfigError
from common.plans import MAX_RUNS, PlannedRun, execute_run, expand_plan, run_status
from common.tracking import append_line

ROOT = Path(__file__).resolve().parents[2]
BASE = {"model": "outputs/tiny_models/tiny-base", "dataset": "data_files/pref_similarity/plain_tiny.jsonl",
        "use_chat_template": False, "batch_size": 8, "max_steps": 1, "max_length": 128,
        "experiment_name": "r"}


def plan_with(base=None, options=None, **top):
    config = {**BASE, **(base or {})}
    config = {k: v for k, v in config.items() if v is not _DROP}
    return {**top, "configurations": [{"base_config": config, "options": options or {}}]}


_DROP = object()
NAN = float("nan")

# (name, plan (a dict, or the file's bytes), words the error line must hold, run for real instead of --dry_run)
CASES = [
    ("non-UTF-8 file", b'{"configurations": [{"base_config": {"experiment_name": "caf\xe9"}}]}', "UTF-8", False),
    ("not JSON", b'{"configurations": [', "invalid JSON", False),
    ("nested too deep", b"[" * 100_000 + b"]" * 100_000, "nested too deeply", False),
    ("string seed with repetitions", plan_with({"seed": "3"}, repetitions=2), "seed: expected an integer", False),
    ("negative seed", plan_with({"seed": -1}), "[0, 2**32)", False),
    ("seed 2**32", plan_with({"seed": 2 ** 32}), "[0, 2**32)", False),
    ("NaN lr", plan_with({"lr": NAN}), "lr: expected a finite number", False),
    ("NaN num_epochs", plan_with({"num_epochs": NAN}), "num_epochs: expected a finite number", False),
    ("NaN warmup_ratio", plan_with({"warmup_ratio": NAN}), "warmup_ratio: expected a finite number", False),
    ("infinite lr option", plan_with(options={"lr": [1e-5, float("inf")]}), "lr[1]: expected a finite", False),
    ("lr 1e308", plan_with({"lr": 1e308}), "base_config.lr: expected a number of magnitude", False),
    ("lr 100", plan_with({"lr": 100}), "lr: expected a value <= 10", False),
    ("unknown lora keyword", plan_with({"lora": {"rank": 8}}), "unknown peft.LoraConfig keyword 'rank'", False),
    ("lora task_type", plan_with({"lora": {"task_type": "X"}}), "common.models sets it", False),
    ("300-character name", plan_with({"experiment_name": "x" * 300}), "at most 255", False),
    ("NUL in name", plan_with({"experiment_name": "a\0b"}), "NUL", False),
    ("string skip", plan_with(skip="false"), "skip: expected true or false", False),
    ("string configuration skip", {"configurations": [{"base_config": BASE, "skip": "no"}]},
     "configurations[0].skip: expected true or false", False),
    ("repetitions 0", plan_with(repetitions=0), "repetitions: expected an integer >= 1", False),
    ("batch_size 1e30", plan_with({"batch_size": 1e30}), "batch_size: expected a number of magnitude", False),
    ("fractional batch_size", plan_with({"batch_size": 2.5}), "batch_size: expected an integer", False),
    ("null experiment_name with repetitions", plan_with({"experiment_name": None}, repetitions=2),
     "experiment_name: expected a string, got None", False),
    ("self-referring template", plan_with({"experiment_name": "{experiment_name}"}),
     "cycle: experiment_name -> experiment_name", False),
    ("template cycle", plan_with({"experiment_name": "{wandb_project}", "wandb_project": "{experiment_name}"}),
     "cycle: ", False),
    ("unfilled brace", plan_with({"experiment_name": "run_{}"}), "brace left", False),
    ("10**10 runs", plan_with(options={f"f{i}": list(range(10)) for i in range(10)}), "10,000,000,000 runs", False),
    ("outputs_dir is a file", plan_with({"outputs_dir": "@FILE"}), "Not a directory", True),
]


def run_runner(tmp_path: Path, plan, real: bool) -> subprocess.CompletedProcess:
    (tmp_path / "a_file").write_text("not a directory\n")
    path = tmp_path / "plan.json"
    if isinstance(plan, bytes):
        path.write_bytes(plan)
    else:
        plan = copy.deepcopy(plan)
        for configuration in plan["configurations"]:
            base = configuration["base_config"]
            base.setdefault("outputs_dir", str(tmp_path / "out"))
            if base["outputs_dir"] == "@FILE":
                base["outputs_dir"] = str(tmp_path / "a_file")
        path.write_text(json.dumps(plan))  # NaN and Infinity as Python's JSON writes them
    command = [sys.executable, "-m", "train_preferences", "--plan_config_path", str(path)]
    return subprocess.run(command + ([] if real else ["--dry_run"]), cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def assert_one_error_line(result: subprocess.CompletedProcess, words: str) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(errors) == 1, result.stderr[-2000:]
    assert words in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("name,plan,words,real", CASES, ids=[c[0] for c in CASES])
def test_a_malformed_plan_is_one_error_line(tmp_path, name, plan, words, real):
    line = assert_one_error_line(run_runner(tmp_path, plan, real), words)
    if isinstance(plan, bytes):
        assert "plan.json" in line  # the file is named


# (name, the data file's bytes, extra base_config fields, words the error line must hold). Each runs for real: the
# data is read when the run starts.
ROW = {"prompt": "Hi", "chosen": "a", "rejected": "b"}
DATA_CASES = [
    ("prompt is a number", {**ROW, "prompt": 5}, {}, "field 'prompt' is a number; it must be text or a list"),
    ("prompt is null", {**ROW, "prompt": None}, {}, "field 'prompt' is null"),
    ("prompt is an object", {**ROW, "prompt": {"text": "Hi"}}, {}, "field 'prompt' is an object"),
    ("prompt messages without content", {**ROW, "prompt": [{"role": "user"}]}, {},
     "prompt message 0 must be an object with text 'role' and 'content'"),
    ("dpo on data without rejected", ROW, {"rejected_field": ""},
     "objective dpo compares a chosen with a rejected response"),
    ("non-UTF-8 jsonl", b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n', {}, "data.jsonl: not UTF-8 text"),
]


@pytest.mark.parametrize("name,row,extra,words", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_is_one_error_line(tmp_path, name, row, extra, words):
    data = tmp_path / "data.jsonl"
    if isinstance(row, bytes):
        data.write_bytes(row * 8)
    else:
        data.write_text((json.dumps(row) + "\n") * 8)
    plan = plan_with({"dataset": str(data), **extra})
    assert_one_error_line(run_runner(tmp_path, plan, real=True), words)


def test_the_size_is_capped_before_expansion():
    options = {"lr": [1e-6 * (i + 1) for i in range(1000)], "beta": [0.1 * (i + 1) for i in range(101)]}
    with pytest.raises(ConfigError, match=f"101,000 runs .*at most {MAX_RUNS:,}"):
        expand_plan(plan_with({"experiment_name": "{lr}_{beta}"}, options), _preference_config())


def _preference_config():
    from train_preferences.config import PreferenceRunConfig

    return PreferenceRunConfig


# ----------------------------------------------------------------------------------------------
# Full and read-only file systems


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir()
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                                                capture_output=True).returncode == 0


@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_a_full_or_read_only_disk_is_one_error_line(tmp_path, kind):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "size=64k"):
        if os.geteuid() == 0:
            pytest.skip("cannot mount a tmpfs here (no privilege in this container)")
        disk.chmod(0o555)  # not root: a directory without write permission stands in for both
    try:
        if disk.is_mount() and kind == "full":
            filler = disk / "filler"
            with open(filler, "wb") as f:
                try:
                    f.write(b"\0" * (1 << 20))
                except OSError:
                    pass
        elif disk.is_mount():
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        result = run_runner(tmp_path, plan_with({"outputs_dir": str(disk / "out")}), real=True)
        assert_one_error_line(result, str(disk))
    finally:
        if disk.is_mount():
            subprocess.run(["umount", str(disk)], check=False)
        disk.chmod(0o755)


def test_an_append_that_fails_part_way_leaves_no_partial_line(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    append_line(path, '{"step": 1}')
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:5]))  # a disk that fills mid-line
    with pytest.raises(OSError, match="No space"):
        append_line(path, '{"step": 2, "loss": 0.5}')
    assert path.read_text() == '{"step": 1}\n'


# ----------------------------------------------------------------------------------------------
# Data fingerprints


@dataclasses.dataclass
class DataConfig(RunConfig):
    data: str = option("", data_path=True)
    hub_data: str = option("org/name", data_path=True)  # not a local path: no fingerprint


def test_a_finished_run_whose_data_changed_is_changed_not_skipped(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"prompt": "a"}\n')
    plan = {"configurations": [{"base_config": {"outputs_dir": str(tmp_path / "out"), "data": str(data)}}]}
    calls = []
    run = expand_plan(plan, DataConfig)[0]
    execute_run(run, lambda config, run_dir: calls.append(1) or {})
    record = json.loads((run.run_dir / "config.json").read_text())
    assert set(record["data_files"]) == {"data"}
    assert record["data_files"]["data"]["bytes"] == len('{"prompt": "a"}\n')
    assert run_status(expand_plan(plan, DataConfig)[0]) == "finished"

    data.write_text('{"prompt": "b"}\n')  # same size, other content
    again = expand_plan(plan, DataConfig)[0]
    assert run_status(again) == "changed"
    execute_run(PlannedRun(0, again.config, "test"), lambda c, d: calls.append(2) or {}, force=True)
    assert calls == [1, 2]


def test_a_run_recorded_before_fingerprints_keeps_its_status(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text("{}\n")
    plan = {"configurations": [{"base_config": {"outputs_dir": str(tmp_path / "out"), "data": str(data)}}]}
    run = expand_plan(plan, DataConfig)[0]
    execute_run(run, lambda config, run_dir: {})
    record = json.loads((run.run_dir / "config.json").read_text())
    del record["data_files"]
    (run.run_dir / "config.json").write_text(json.dumps(record))
    assert run_status(expand_plan(plan, DataConfig)[0]) == "finished"
