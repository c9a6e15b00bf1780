"""The generic runner's results printer on hand-written runs: one row per finished run, numbers as given."""
import json

import pytest

from train_preferences.results import main


def make_run(root, name, objective, loss, change, finished=True, study="train_preferences"):
    run = root / name
    run.mkdir(parents=True)
    config = {"study": study, "model": "outputs/tiny_models/tiny-base", "objective": objective, "lr": 0.0003,
              "chosen_field": "chosen", "experiment_name": name}
    (run / "config.json").write_text(json.dumps(config))
    if finished:
        summary = {"status": "finished", "steps": 10, "num_examples": 40, "train": {"loss": loss},
                   "eval": {"train": {"preferred_logprobs_change_mean": change,
                                      "dispreferred_logprobs_change_mean": -2 * change, "reward_accuracy": 0.875}}}
        (run / "summary.json").write_text(json.dumps(summary))


def test_one_row_per_finished_run_of_the_study(tmp_path, capsys):
    make_run(tmp_path, "dpo", "dpo", 0.25, 1.5)
    make_run(tmp_path / "nested", "ipo", "ipo", 0.125, -0.5)
    make_run(tmp_path, "unfinished", "dpo", 0, 0, finished=False)
    make_run(tmp_path, "other", "dpo", 9.0, 9.0, study="sorrybench")  # another study's run: not shown
    main(["--experiments_dir", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["run", "model", "objective"]
    assert lines[3].split() == ["dpo", "tiny-base", "dpo", "0.0003", "40", "10", "0.25", "1.5", "-3", "0.875"]
    assert lines[4].split() == ["nested/ipo", "tiny-base", "ipo", "0.0003", "40", "10", "0.125", "-0.5", "1", "0.875"]
    assert len(lines) == 6 and lines[5] == "(1 unfinished runs left out)"


def test_no_runs_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--experiments_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and "no finished train_preferences run" in err
    assert err.count("\n") == 1
