"""Print one row per finished generic-runner run: its setting, the final training loss and the
log-prob changes on the training set after training (the run's summary.json), then the same changes on
each held-out eval set; write `training_curves.png` (loss, rewards and log-prob changes over the steps,
from each run's metrics.jsonl) into the experiments directory.

    python -m train_preferences.results --experiments_dir DIR
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from common.cli import exit_on_user_error, parse_options
from common.config import option
from common.errors import DataError
from common.results import Run, find_runs, format_table, pyplot, save_figure
from common.tracking import read_jsonl

HEADER = ["run", "model", "objective", "lr", "examples", "steps", "final loss", "dlogp(y+)", "dlogp(y-)",
          "reward accuracy"]
EVAL_HEADER = ["run", "eval set", "examples", "dlogp(y+)", "dlogp(y-)", "y+ decreased (%)", "reward accuracy"]
PLOT_FILE = "training_curves.png"


def finished_runs(experiments_dir: str | Path) -> tuple[list[Run], int]:
    """The finished runs (in path order) and the number of unfinished ones."""
    found = find_runs(experiments_dir, "train_preferences", legacy=lambda config: "chosen_field" in config)
    return found.finished, len(found.unfinished)


def run_name(run: Run, root: Path) -> str:
    return str(run.dir.relative_to(root))


def run_rows(experiments_dir: str | Path) -> tuple[list[list], int]:
    """The table rows (runs in path order) and the number of unfinished runs."""
    root = Path(experiments_dir)
    runs, unfinished = finished_runs(root)
    rows = []
    for run in runs:
        c, s = run.config, run.summary
        train_eval = (s.get("eval") or {}).get("train") or {}
        rows.append([run_name(run, root), Path(c["model"]).name, c["objective"], c["lr"],
                     s.get("num_examples"), s.get("steps"), (s.get("train") or {}).get("loss"),
                     train_eval.get("preferred_logprobs_change_mean"),
                     train_eval.get("dispreferred_logprobs_change_mean"), train_eval.get("reward_accuracy")])
    return rows, unfinished


def eval_rows(runs: list[Run], root: Path) -> list[list]:
    """One row per run and held-out eval set (every eval split but "train"), after training."""
    rows = []
    for run in runs:
        for split, m in sorted((run.summary.get("eval") or {}).items()):
            if split == "train":
                continue
            decreased = m.get("preferred_logprobs_decreased_fraction")
            rows.append([run_name(run, root), split, m.get("count"), m.get("preferred_logprobs_change_mean"),
                         m.get("dispreferred_logprobs_change_mean"),
                         None if decreased is None else 100 * decreased, m.get("reward_accuracy")])
    return rows


def plot_title(runs: list[Run]) -> str:
    """The setting the runs share (model, data, objective, beta, ...), then the fields that vary."""
    shared, varying = [], []
    for key in ("model", "dataset", "objective", "beta", "lr", "batch_size", "num_epochs"):
        values = {Path(str(r.config.get(key))).name if key in ("model", "dataset") else str(r.config.get(key))
                  for r in runs}
        if len(values) == 1:
            shared.append(f"{key} {values.pop()}")
        else:
            varying.append(key)
    return ", ".join(shared) + (f"; runs vary in {', '.join(varying)}" if varying else "")


def run_label(run: Run, runs: list[Run], root: Path) -> str:
    """The values of the fields that differ between the runs (e.g. "lr 0.0001"), else the run's name."""
    keys = [k for k in ("objective", "lr", "beta", "batch_size", "seed", "num_samples")
            if len({str(r.config.get(k)) for r in runs}) > 1]
    return ", ".join(f"{k} {run.config.get(k)}" for k in keys) or run_name(run, root)


def write_plot(runs: list[Run], root: Path) -> Path:
    """Training loss, chosen/rejected rewards (train steps) and the mean log-prob change of y+ and y- at
    each evaluation (held-out set when the runs have one, else the training set), one colour per run."""
    plt = pyplot()
    def numeric(value):  # runs ordered by their varying values as numbers where they are numbers
        try:
            return float(value)
        except (TypeError, ValueError):
            return float("inf")

    keys = [k for k in ("lr", "beta", "batch_size", "seed") if len({str(r.config.get(k)) for r in runs}) > 1]
    runs = sorted(runs, key=lambda r: [numeric(r.config.get(k)) for k in keys] + [str(r.dir)])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    held_out = any(split != "train" for r in runs for split in (r.summary.get("eval") or {}))
    for i, run in enumerate(runs):
        color, label = f"C{i % 10}", run_label(run, runs, root)
        records = read_jsonl(run.dir / "metrics.jsonl") if (run.dir / "metrics.jsonl").is_file() else []
        train = [r for r in records if r.get("kind") == "train"]
        steps = [r["step"] for r in train]
        axes[0].plot(steps, [r["loss"] for r in train], color=color, label=label)
        if train and "chosen_rewards" in train[0]:
            axes[1].plot(steps, [r["chosen_rewards"] for r in train], color=color, label=f"{label}: y+")
            axes[1].plot(steps, [r["rejected_rewards"] for r in train], color=color, linestyle="--",
                         label=f"{label}: y-")
        split = "eval" if held_out else "train"
        evals = [r for r in records if r.get("kind") == "eval" and r.get("split") == split]
        eval_steps = [r["step"] for r in evals]
        axes[2].plot(eval_steps, [r["preferred_logprobs_change_mean"] for r in evals], color=color, marker="o",
                     label=f"{label}: y+")
        if evals and "dispreferred_logprobs_change_mean" in evals[0]:
            axes[2].plot(eval_steps, [r["dispreferred_logprobs_change_mean"] for r in evals], color=color,
                         marker="o", linestyle="--", label=f"{label}: y-")
    axes[0].set(title="training loss (per step's batch)", ylabel="loss (nats)")
    axes[1].set(title="rewards beta (log pi - log pi_ref) (batch mean)", ylabel="reward (nats)")
    axes[2].set(title=f"log-prob change on the {'held-out' if held_out else 'training'} set (mean)",
                ylabel="log pi(y) - log pi_ref(y) (nats)")
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.axhline(0, color="grey", linewidth=0.6)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(plot_title(runs))
    return save_figure(fig, root / PLOT_FILE, dpi=110)


@dataclass
class ResultsOptions:
    experiments_dir: str = option(help="directory holding the runs (searched recursively)")
    plot: bool = option(True, help=f"write {PLOT_FILE} into experiments_dir")


@exit_on_user_error
def main(argv=None) -> str:
    args = parse_options("python -m train_preferences.results", __doc__.splitlines()[0], ResultsOptions, argv)
    root = Path(args.experiments_dir)
    rows, unfinished = run_rows(root)
    if not rows:
        raise DataError(f"{args.experiments_dir}: no finished train_preferences run (config.json and summary.json)"
                        + (f"; {unfinished} unfinished" if unfinished else ""))
    text = ("Generic runner: dlogp = policy minus reference log-prob of the responses on the training set after "
            "training (mean)\n" + format_table(HEADER, rows))
    if unfinished:
        text += f"\n({unfinished} unfinished runs left out)"
    runs = finished_runs(root)[0]
    held_out = eval_rows(runs, root)
    if held_out:
        text += "\n\nHeld-out eval sets after training (dlogp in nats, mean over the set)\n" + format_table(
            EVAL_HEADER, held_out)
    print(text)
    if args.plot:
        print(f"wrote {write_plot(runs, root)}", file=sys.stderr)
    return text


if __name__ == "__main__":
    main()
