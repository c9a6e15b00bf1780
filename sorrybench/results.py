"""Figure 3 of the paper: refusal rates before and after training per setting, with the log-prob changes.

    python -m sorrybench.results --experiments_dir outputs/sorrybench/runs/tiny [--plot PATH]

Reads every finished sorrybench run below the directory (summary.json + config.json), averages runs
whose configs differ only in the seed (and run names), prints one table row per group and writes a bar
plot (default: <experiments_dir>/refusal_rates.png): per model, the initial refusal rate and the rate
after training in each setting, on the train and test prompts.
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import common.results as shared
from common.cli import exit_on_user_error, parse_options
from common.config import option
from common.errors import ConfigError, DataError
from sorrybench.data import SPLITS
from sorrybench.refusal import format_rate

# Fields that differ between repetitions of one setting (or do not change results): runs that agree on
# every other field are averaged together.
REPLICATE_FIELDS = {"seed", "experiment_name", "outputs_dir", "use_wandb", "wandb_project", "eval_batch_size",
                    "refusal_batch_size", "save_every_steps"}


def find_runs(root: Path) -> list[dict]:
    """One record per finished sorrybench run: model, setting, refusal rates, log-prob changes."""
    runs = []
    for run in shared.find_runs(root, "sorrybench", legacy=lambda config: "use_gold_preferences" in config).finished:
        config, summary = run.config, run.summary
        if "setting" not in summary:
            raise DataError(f"{run.dir / 'summary.json'}: not a sorrybench run summary (no 'setting'); delete it "
                            f"to re-run that run")
        record = {"run": str(run.dir.relative_to(root)), "model": config["model"],
                  "setting": summary["setting"], "pairs": summary.get("num_examples"),
                  "config": {k: v for k, v in config.items() if k not in REPLICATE_FIELDS}}
        for phase in ("before", "after"):
            rates = summary.get(f"refusal_{phase}") or {}
            for split in SPLITS:
                record[f"{split}_{phase}"] = (rates.get(split) or {}).get("refusal_rate")
        train_eval = (summary.get("eval") or {}).get("train") or {}
        record["preferred_change"] = train_eval.get("preferred_logprobs_change_mean")
        record["dispreferred_change"] = train_eval.get("dispreferred_logprobs_change_mean")
        runs.append(record)
    return runs


def mean(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def sd(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.stdev(values) if len(values) > 1 else None


COLUMNS = ("pairs", "train_before", "train_after", "test_before", "test_after", "preferred_change",
           "dispreferred_change")


def aggregate(runs: list[dict]) -> list[dict]:
    """Mean (and sample sd, `<column>_sd`) over the runs that differ only in REPLICATE_FIELDS.

    Groups keep first-seen order. When one (model, setting) has several groups (e.g. two learning
    rates), the setting label names the fields that tell them apart: "dpo (lr=0.0002)".
    """
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        groups[r["setting"] + json.dumps(r["config"], sort_keys=True)].append(r)
    siblings: dict[tuple, list[dict]] = defaultdict(list)
    for rs in groups.values():
        siblings[(rs[0]["model"], rs[0]["setting"])].append(rs[0]["config"])
    rows = []
    for rs in groups.values():
        model, setting, config = rs[0]["model"], rs[0]["setting"], rs[0]["config"]
        others = siblings[(model, setting)]
        differing = [k for k in config if len({json.dumps(c.get(k), sort_keys=True) for c in others}) > 1]
        if differing:
            setting += " (" + ", ".join(f"{k}={json.dumps(config[k])}" for k in differing) + ")"
        rows.append({"model": model, "setting": setting, "runs": len(rs),
                     **{c: mean(r[c] for r in rs) for c in COLUMNS},
                     **{f"{c}_sd": sd(r[c] for r in rs) for c in COLUMNS}})
    return rows


def format_table(rows: list[dict]) -> str:
    """Means over runs; the rate after training and the log-prob changes carry their sd over runs."""
    def logp(r, column):
        v, spread = r[column], r[f"{column}_sd"]
        return "n/a" if v is None else f"{v:+.2f}" + ("" if spread is None else f"±{spread:.2f}")

    def after(r, split):
        spread = r[f"{split}_after_sd"]
        return (f"{format_rate(r[f'{split}_before'])} -> {format_rate(r[f'{split}_after'])}"
                + ("" if spread is None else f"±{100 * spread:.1f}"))

    header = ["model", "setting", "runs", "pairs", "refusal train: before -> after", "test: before -> after",
              "dlogp(y+) train", "dlogp(y-) train"]
    rows = [[r["model"], r["setting"], r["runs"], f"{r['pairs'] or 0:.0f}", after(r, "train"), after(r, "test"),
             logp(r, "preferred_change"), logp(r, "dispreferred_change")] for r in rows]
    return shared.format_table(header, rows, align="llrrrrrr")


def plot(rows: list[dict], path: Path) -> None:
    """Per model: bars of the refusal rate (train, test) initially and after each setting."""
    plt = shared.pyplot()
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(2.4 + 1.5 * max(len(rows), 2), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == model]
        # every setting's tick names its run count (seeds averaged, std bar) so unequal n is visible
        labels = ["initial"] + [f"{r['setting']} (n={r['runs']})" for r in mine]
        for offset, split in ((-0.2, "train"), (0.2, "test")):
            heights = [mean(r[f"{split}_before"] for r in mine)] + [r[f"{split}_after"] for r in mine]
            spreads = [sd(r[f"{split}_before"] for r in mine)] + [r[f"{split}_after_sd"] for r in mine]
            bars = ax.bar([i + offset for i in range(len(labels))], [100 * (h or 0) for h in heights], width=0.4,
                          yerr=[100 * (e or 0) for e in spreads], capsize=3, label=split)
            ax.bar_label(bars, labels=[format_rate(h) for h in heights], label_type="edge", padding=2, fontsize=7)
        ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 112)
        ax.set_ylabel("refusal rate (%)")
        ax.set_title(f"{Path(model).name or model}: refusal rate before and after training", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: never over a bar
    shared.save_figure(fig, path)


@dataclass
class ResultsOptions:
    experiments_dir: str = option(help="directory holding sorrybench run directories")
    plot: Optional[str] = option(None, help="PNG path (default: <experiments_dir>/refusal_rates.png)")


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_options("python -m sorrybench.results", __doc__.splitlines()[0], ResultsOptions, argv)
    root = Path(args.experiments_dir)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such directory")
    runs = find_runs(root)
    if not runs:
        raise DataError(f"{root}: no finished sorrybench runs (directories with config.json and summary.json)")
    rows = aggregate(runs)
    print(format_table(rows))
    plot_path = Path(args.plot) if args.plot else root / "refusal_rates.png"
    plot(rows, plot_path)
    print(f"\nplot: {plot_path}")


if __name__ == "__main__":
    main(sys.argv[1:])
