"""The tiny filter plan (keyword guard over BeaverTails or Virus attack data; the LN-CHES filter) and the
tiny attack-strength sweep, through the CLI into one directory, their records checked against independent
recomputations, and the results printer's table, CSV and PNG over both."""
import csv
import json
from pathlib import Path

import pytest

from common.results import Run
from common.tracking import read_json, read_jsonl
from harmful_ft import results
from harmful_ft.guard import GUARD_MARKERS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runs(run_plan, tmp_path_factory) -> Path:
    """Both plans into one directory (they share the alignment run)."""
    out = tmp_path_factory.mktemp("harmful_ft_filters") / "runs"
    for plan in ("harmful_ft_filters_tiny.json", "harmful_ft_sweep_tiny.json"):
        run_plan(plan, out)
    return out


@pytest.mark.parametrize("attack", ["bt", "virus"])
def test_the_guard_stage_drops_what_it_flags_and_reports_leakage(runs, attack):
    run = runs / f"finetune_sft_sst2_p0.2_n60_{attack}_guard_s0"
    rows, summary = read_jsonl(run / "user_data.jsonl"), read_json(run / "summary.json")
    assert len(rows) == 60 and sum(r["harmful"] for r in rows) == 12
    for r in rows:  # independent: the stand-in's rule on the sample's text
        text = f"{r['instruction']}\n{r['input']}\n{r['output']}".lower() if r["input"] else \
            f"{r['instruction']}\n{r['output']}".lower()
        assert r["guard_flagged"] == any(m in text for m in GUARD_MARKERS)
    leaked = sum(r["harmful"] and not r["guard_flagged"] for r in rows)
    dropped_benign = sum(not r["harmful"] and r["guard_flagged"] for r in rows)
    assert summary["leakage_ratio"] == pytest.approx(leaked / 12)
    assert summary["false_positive_ratio"] == pytest.approx(dropped_benign / 48)
    assert summary["num_trained_samples"] == sum(not r["guard_flagged"] for r in rows)
    assert summary["harmful_data"] == ("virus" if attack == "virus" else "beavertails")
    if attack == "virus":  # the harmful part is the Virus fixture's rows, and some of them pass the guard
        virus = {json.loads(line)["output"] for line in open(REPO / "data_files/harmful_ft/virus/Virus.jsonl")}
        assert all(r["output"] in virus for r in rows if r["harmful"]) and leaked > 0


def test_the_ches_filter_drops_the_share_with_the_highest_ln_ches(runs):
    run = runs / "finetune_sft_sst2_p0.2_n60_ches0.2_s0"
    rows, summary = read_jsonl(run / "user_data.jsonl"), read_json(run / "summary.json")
    values = {r["index"]: r["ln_ches"] for r in read_jsonl(run / "preference_similarities.jsonl")}
    top = set(sorted(values, key=lambda i: -values[i])[:12])  # round(0.2 * 60)
    assert {i for i, r in enumerate(rows) if r["ches_dropped"]} == top
    assert summary["num_trained_samples"] == 48 and summary["user_data_filter"] == "ln_ches highest 0.2"
    assert summary["num_harmful_ches_dropped"] == sum(rows[i]["harmful"] for i in top)


def test_the_sweep_expands_the_grid(runs):
    grid = {(c["lr"], c["lora"]["r"], c["lora"]["lora_alpha"]) for c in
            (read_json(d / "config.json") for d in runs.glob("finetune_*_lr*"))}
    assert grid == {(lr, r, a) for lr in (1e-3, 1e-4) for r, a in ((8, 16), (4, 4))}


def test_results_table_groups_every_method_and_the_grid(runs, capsys):
    results.main(["--experiments_dir", str(runs)])
    out = capsys.readouterr().out
    header = out.splitlines()[0]
    for column in ("attack data", "filter", "leakage %", "guard FP %", "lr", "epochs", "LoRA r", "LoRA alpha"):
        assert column in header  # the filter plan trains 3 epochs, the sweep 1
    rows = list(csv.DictReader(open(runs / "harmful_ft_results.csv")))
    attacked = [r for r in rows if r["evaluated"] == "finetune"]
    assert len(attacked) == 8 and all(r["seeds"] == "1" for r in attacked)
    assert {r["user_data_filter"] for r in attacked} == {"guard keyword_guard", "ln_ches highest 0.2", ""}
    assert {(r["lr"], r["lora_r"]) for r in attacked if not r["user_data_filter"]} == {
        ("0.001", "8"), ("0.0001", "8"), ("0.001", "4"), ("0.0001", "4")}
    virus = next(r for r in attacked if r["harmful_data"] == "virus")
    summary = read_json(runs / "finetune_sft_sst2_p0.2_n60_virus_guard_s0" / "summary.json")
    assert float(virus["leakage"]) == pytest.approx(100 * summary["leakage_ratio"])
    assert (runs / "harmful_ft_results.png").stat().st_size > 0


def test_method_fields_are_found_by_name():
    """A later stage's defense recorded as any `*_defense` field becomes a column with no edit of the printer."""
    finetune = Run(Path("f"), {"lr": 1e-5, "lora": {"r": 8, "lora_alpha": 1}, "finetune_defense": "lisa",
                               "post_defense": "none"}, {"harmful_data": "virus", "user_data_filter": "none"})
    fields = results.method_fields({"eval_defense": "smoothing"}, {"defense": "vaccine"}, finetune)
    assert fields == {"defense": "vaccine", "finetune_defense": "lisa", "post_defense": None,
                      "eval_defense": "smoothing", "harmful_data": "virus", "user_data_filter": None}
    rows = [{"evaluated": "finetune", **fields, "attack_optimizer": "adamw", "task": "sst2", "p": 0.1, "n": 10,
             **results.attack_strength(finetune), "judge": "j", "stand_in": False,
             **dict.fromkeys(results.METRICS)}]
    assert results.group_keys(rows)[:6] == ["evaluated", "defense", "eval_defense", "finetune_defense", "post_defense",
                                            "harmful_data"]
    shown = results.shown_columns(results.aggregate(rows))
    assert "finetune_defense" in shown and "post_defense" not in shown
    assert not set(results.STRENGTH) & set(shown)  # one value each: no column
