"""The results printer on hand-made run directories: Table 1, rebound tables, Table 3, factors, plots."""
import json

import pytest

from elasticity.results import main, report


def write_run(root, name, config, summary):
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"experiment_name": name, **config}))
    if summary is not None:
        (run / "summary.json").write_text(json.dumps({"status": "finished", **summary}))
    return run


def pair(earlier, later, inverse_loss, forward_loss):
    def numbers(loss):
        return {"token_loss_mean": loss, "token_loss_final": loss - 0.1, "target_bits_per_token_initial": 3.0,
                "target_bits_per_token_final": loss * 2}

    return {"k": earlier, "l": later, "forward": numbers(forward_loss), "inverse": numbers(inverse_loss),
            "inverse_lower": inverse_loss < forward_loss}


def rebound_summary(num_parameters, tokens, base=0.5):
    # positive 10: score 0.9 -> 0.7 after 5 negatives (fraction (0.9-0.7)/(0.9-0.5) = 0.5), KL 0.05 -> 0.03 -> 0.005
    #   crosses 0.01 at 5 + 5 * (0.03-0.01)/(0.03-0.005) = 9
    # positive 20: score 0.95 -> 0.5 (fraction 1.0), KL 0.02 -> 0.008: crosses at 5 * (0.02-0.01)/(0.02-0.008) = 4.17
    return {"experiment": "rebound", "dataset": "imdb", "model": "m", "num_parameters": num_parameters,
            "pretraining_tokens": tokens, "base_score": base, "kl_epsilon": 0.01, "curves": [
                {"positive": 10, "score_after_positive": 0.9, "kl_after_positive": 0.05,
                 "negatives_to_kl_epsilon": 9.0, "rebound_fraction": 0.5,
                 "points": [{"negative": 5, "score": 0.7, "kl": 0.03}, {"negative": 10, "score": 0.6, "kl": 0.005}]},
                {"positive": 20, "score_after_positive": 0.95, "kl_after_positive": 0.02,
                 "negatives_to_kl_epsilon": 4.17, "rebound_fraction": 1.0,
                 "points": [{"negative": 5, "score": 0.5, "kl": 0.008}, {"negative": 10, "score": 0.45, "kl": 0.004}]}]}


@pytest.fixture
def experiments(tmp_path):
    write_run(tmp_path, "resistance_alpaca", {"experiment": "resistance", "model": "org/base-7b"},
              {"experiment": "resistance", "dataset": "alpaca",
               "pairs": [pair(1, 2, 0.159, 0.202), pair(1, 3, 0.3, 0.2)], "inverse_lower": 1, "comparisons": 2})
    grid = {"experiment": "rebound", "model": "tiny", "pretrain_tokens": 1000, "dataset": "imdb",
            "positive_sizes": [10, 20], "negative_sizes": [5, 10]}
    write_run(tmp_path, "rebound_small", grid, rebound_summary(1_000, 1000))
    write_run(tmp_path, "rebound_large", grid, rebound_summary(4_000, 1000))
    write_run(tmp_path, "rebound_other_grid", {**grid, "positive_sizes": [10, 20, 40]}, rebound_summary(8_000, 1000))
    write_run(tmp_path, "classifier_imdb", {"experiment": "classifier", "model": "tiny"},
              {"dataset": "imdb", "labels": ["NEGATIVE", "POSITIVE"], "heldout_accuracy": 0.975, "num_heldout": 40})
    write_run(tmp_path, "rebound_unfinished", {"experiment": "rebound", "model": "tiny"}, None)
    (tmp_path / "rebound_small" / "positive_10" / "model").mkdir(parents=True)
    (tmp_path / "rebound_small" / "positive_10" / "model" / "config.json").write_text('{"model_type": "llama"}')
    return tmp_path


def test_report_tables_and_plots(experiments):
    text, plots = report(experiments, experiments / "plots")
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith("alpaca"))
    assert row.split()[1:] == ["base-7b", "0.159", "|", "0.202", "0.300", "|", "0.200", "1/2"]
    assert "inverse loss lower in 1 of 2 comparisons" in text
    assert any(line.split() == ["alpaca", "base-7b", "3.000->0.318", "|", "3.000->0.404", "3.000->0.600", "|",
                                "3.000->0.400"] for line in lines)
    # Rebound: scores with negatives 0 = after positive SFT; Table 3 with the crossing and the fraction.
    assert "10        0.900  0.700  0.600" in text
    assert any(line.split() == ["10", "0.0500", "9", "0.50"] for line in lines)
    assert any(line.split() == ["20", "0.0200", "4", "1.00"] for line in lines)
    # Factors: two runs of one grid that differ in size; mean rebound fraction (0.5 + 1.0) / 2 = 0.75. The run
    # with another grid is not part of that sweep.
    assert any(line.split()[:2] == ["rebound_large", "4,000"] and line.split()[-1] == "0.75" for line in lines)
    assert text.count("Factors (imdb)") == 1 and "rebound_other_grid  8,000" not in text
    assert "held-out accuracy 0.975 on 40 rows" in text
    # Table 3 at another threshold, from the stored KL curves: P=10 crosses 0.04 at 5 * (0.05-0.04)/(0.05-0.03) = 2.5
    text, _ = report(experiments, experiments / "plots", kl_epsilon=0.04)
    assert any(line.split() == ["10", "0.0500", "2", "0.50"] for line in text.splitlines())
    assert "negative examples needed to bring the KL under 0.04" in text
    assert "1 unfinished run(s)" in text
    assert sorted(p.name for p in plots) == sorted([
        "resistance_alpaca_heatmap.png", "rebound_small_curves.png", "rebound_small_heatmaps.png",
        "rebound_large_curves.png", "rebound_large_heatmaps.png", "rebound_other_grid_curves.png",
        "rebound_other_grid_heatmaps.png", "factors_imdb_p10-20.png"])
    assert all(p.stat().st_size > 1000 for p in plots)


def test_no_runs_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--experiments_dir", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no finished elasticity runs" in err and err.count("\n") == 1


def test_runs_named_after_hub_ids_get_their_own_plots(tmp_path):
    # experiment_name "rebound_{dataset}_{model}" with model "org/m" nests each run one level deeper: the runs
    # of the two datasets share the last directory name "m", and must not share (overwrite) their plots.
    for dataset in ("imdb", "beavertails"):
        summary = {**rebound_summary(1_000, None), "dataset": dataset}
        write_run(tmp_path, f"rebound_{dataset}_org/m", {"experiment": "rebound", "model": "org/m", "dataset": dataset,
                                                        "positive_sizes": [10, 20], "negative_sizes": [5, 10]}, summary)
    text, plots = report(tmp_path, tmp_path / "plots")
    assert sorted(p.name for p in plots) == ["rebound_beavertails_org_m_curves.png",
                                             "rebound_beavertails_org_m_heatmaps.png",
                                             "rebound_imdb_org_m_curves.png", "rebound_imdb_org_m_heatmaps.png"]
    assert "Rebound imdb / m (rebound_imdb_org_m)" in text
    assert "Rebound beavertails / m (rebound_beavertails_org_m)" in text


@pytest.mark.parametrize("summary_text, args, message", [
    ("{bad", [], "summary.json: invalid JSON"),
    ('{"status": "finished"}', [], "summary.json: not an elasticity rebound summary (no 'dataset', 'curves'"),
    (None, ["--kl_epsilon", "-1"], "--kl_epsilon: expected a value > 0, got -1.0"),
    (None, ["--kl_epsilon", "0"], "--kl_epsilon: expected a value > 0, got 0.0"),
])
def test_bad_summaries_and_flags_are_one_line_errors(tmp_path, capsys, summary_text, args, message):
    run = write_run(tmp_path, "r", {"experiment": "rebound", "model": "m", "dataset": "imdb",
                                    "positive_sizes": [10, 20], "negative_sizes": [5, 10]}, rebound_summary(1, None))
    if summary_text is not None:
        (run / "summary.json").write_text(summary_text)
    with pytest.raises(SystemExit) as e:
        main(["--experiments_dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
