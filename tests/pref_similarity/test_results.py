"""The Figure 2 table and plot from hand-made run directories."""
import csv
import json

import pytest

from pref_similarity.results import main

TITLE = "model m | dataset d.jsonl | objective dpo"


def make_run(root, name, measure, quantile, seed, change, finished=True, model="m", dataset="d.jsonl", lr=1e-7,
             extras=None):
    run_dir = root / name
    run_dir.mkdir(parents=True)
    config = {"model": model, "dataset": dataset, "objective": "dpo", "similarity_measure": measure,
              "quantile": quantile, "seed": seed, "lr": lr, "experiment_name": name}
    (run_dir / "config.json").write_text(json.dumps(config))
    records = [{"kind": "eval", "split": "train", "step": 0, "preferred_logprobs_change_mean": 0.0},
               {"kind": "train", "step": 1, "loss": 0.6},
               {"kind": "eval", "split": "train", "step": 2, "preferred_logprobs_change_mean": change,
                **(extras or {})}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if finished:
        (run_dir / "summary.json").write_text('{"status": "finished"}')


def test_table_means_spread_and_files(tmp_path, capsys):
    make_run(tmp_path, "a", "ches", 0, 0, -1.0)
    make_run(tmp_path, "b", "ches", 0, 1, -3.0)  # two seeds: mean -2, std sqrt(2) = 1.4
    make_run(tmp_path, "c", "ches", 1, 0, -10.0)
    make_run(tmp_path, "d", "minus_normalized_edit_distance", 1, 0, -4.5)
    make_run(tmp_path, "e", "ches", 0.5, 0, 99.0, finished=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "llama"}')  # a saved model: ignored
    main(["--experiments_dir", str(tmp_path)])
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("measure"))
    assert header.split() == ["measure", "q=0", "q=1", "q_max", "-", "q_min"]
    ches = next(line for line in lines if line.startswith("ches")).split()
    assert ches == ["ches", "-2", "±1.4", "-10", "-8"]  # spread: -10 - (-2)
    edit = next(line for line in lines if line.startswith("minus_normalized")).split()
    assert edit == ["minus_normalized_edit_distance", "-", "-4.5", "-"]
    assert f"{TITLE} | runs 4" in lines and "(1 unfinished runs left out)" in out
    rows = list(csv.DictReader(open(tmp_path / "figure2.csv")))
    parsed = [(r["table"], r["measure"], float(r["quantile"]), int(r["runs"]), float(r["mean"])) for r in rows]
    assert parsed == [(TITLE, "ches", 0, 2, -2.0), (TITLE, "ches", 1, 1, -10.0),
                      (TITLE, "minus_normalized_edit_distance", 1, 1, -4.5)]
    assert (tmp_path / "figure2.png").stat().st_size > 1000


def test_runs_of_other_settings_are_not_averaged(tmp_path, capsys):
    make_run(tmp_path, "a", "ches", 0, 0, -1.0, model="m1")
    make_run(tmp_path, "b", "ches", 0, 0, -2.0, model="m2")
    make_run(tmp_path, "c", "ches", 0, 0, -3.0, model="m2", lr=1e-6)
    main(["--experiments_dir", str(tmp_path)])
    titles = [line for line in capsys.readouterr().out.splitlines() if line.startswith("model ")]
    assert titles == ["model m1 | dataset d.jsonl | objective dpo | lr 1e-07 | runs 1",
                      "model m2 | dataset d.jsonl | objective dpo | lr 1e-07 | runs 1",
                      "model m2 | dataset d.jsonl | objective dpo | lr 1e-06 | runs 1"]
    with pytest.raises(SystemExit) as exit_info:
        main(["--experiments_dir", str(tmp_path), "--metric", "nope"])
    assert exit_info.value.code == 2
    assert "no 'nope'; choose one of preferred_logprobs_change_mean" in capsys.readouterr().err


def test_empty_directory_is_an_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--experiments_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "metrics.jsonl").unlink(), "metrics.jsonl: not found"),
    (lambda run: (run / "metrics.jsonl").write_text('{"kind": "eval"\n{"kind": "eval"}\n'),
     "metrics.jsonl: line 1 is not JSON"),
    (lambda run: (run / "config.json").write_text('{"similarity_measure": '), "config.json: invalid JSON"),
    (lambda run: (run / "metrics.jsonl").write_text(
        '{"kind": "eval", "split": "train", "step": 2, "preferred_logprobs_change_mean": "x"}\n'),
     "'preferred_logprobs_change_mean' is not a number"),
])
def test_damaged_run_is_a_one_line_error(tmp_path, capsys, damage, message):
    """Each used to end in a traceback (FileNotFoundError, JSONDecodeError, ValueError)."""
    make_run(tmp_path, "a", "ches", 0, 0, -1.0)
    damage(tmp_path / "a")
    with pytest.raises(SystemExit) as exit_info:
        main(["--experiments_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_the_public_runners_other_eval_figures_are_tabulated_when_logged(tmp_path, capsys):
    make_run(tmp_path, "a", "ches", 0, 0, -1.0, extras={"loss": 0.6, "generation_sequence_policykl": 0.5})
    make_run(tmp_path, "b", "ches", 0, 1, -3.0, extras={"loss": 0.4, "generation_sequence_policykl": 1.5})
    make_run(tmp_path, "c", "ches", 1, 0, -10.0, extras={"loss": 0.2})
    main(["--experiments_dir", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    start = lines.index(f"final eval of the training subset: {TITLE}")
    assert lines[start + 1].split() == ["measure", "quantile", "loss", "gen", "seq", "KL"]
    assert lines[start + 3].split() == ["ches", "0", "0.5", "±0.14", "1", "±0.71"]  # line 2: a rule
    assert lines[start + 4].split() == ["ches", "1", "0.2", "-"]


def test_runs_without_the_other_eval_figures_print_no_second_table(tmp_path, capsys):
    make_run(tmp_path, "a", "ches", 0, 0, -1.0)
    main(["--experiments_dir", str(tmp_path)])
    assert "final eval of the training subset" not in capsys.readouterr().out
