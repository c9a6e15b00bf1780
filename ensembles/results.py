"""The members and sub-ensembles of each ensemble run: accuracy, focal diversity, fused accuracy; and the
models of each H3Fusion fusion run: HS, helpfulness, honesty.

    python -m ensembles.results --experiments_dir outputs/ensembles/runs/tiny [--plot PATH]

Reads every finished ensembles run below the directory (summary.json). Per ensemble run: a table of the
members (test accuracy) and one of the whole pool and the teams pruning kept (validation focal diversity,
then on the test split: focal and generalized diversity, Fleiss' kappa, plurality-vote and TOPLA-Weighted
accuracy); and a scatter plot (default: <experiments_dir>/diversity_vs_accuracy.png): test focal
diversity against accuracy, one point per team and its fused accuracy, the members as horizontal lines.
Per H3Fusion fusion run: one row per model (base, each expert alone, the mean-delta merge, the fused MoE)
with HS (%, lower is safer), helpfulness (the scorer's mean) and TruthfulQA MC1 accuracy (%); the judges'
names, marked when they are offline stand-ins. H3Fusion's expert runs have no table of their own.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import common.results as shared
from common.cli import exit_on_user_error, parse_options
from common.config import option
from common.errors import DataError

TEAM_COLUMNS = ("validation_focal_diversity", "focal_diversity", "generalized_diversity", "fleiss_kappa",
                "plurality_accuracy", "fused_accuracy")


def find_runs(root: Path) -> tuple[list[shared.Run], list[shared.Run]]:
    """(ensemble runs, H3Fusion fusion runs) finished below `root`."""
    ensembles, fusions = [], []
    for run in shared.find_runs(root, "ensembles").finished:
        stage = run.config.get("stage", "ensemble")
        if stage == "expert":
            continue
        key = "models" if stage == "fusion" else "teams"
        if key not in run.summary:
            raise DataError(f"{run.dir / 'summary.json'}: not an ensembles {stage} run summary (no {key!r}); delete "
                            f"it to re-run that run")
        (fusions if stage == "fusion" else ensembles).append(run)
    return ensembles, fusions


def h3fusion_table(summary: dict) -> str:
    rows = [[m["model"], m["hs"], m["helpfulness"], m["honesty_mc1"]] for m in summary["models"]]
    return shared.format_table(["model", "HS %", "helpfulness", "MC1 %"], rows, align="lrrr", digits=3)


def judges_line(summary: dict) -> str:
    def name(key: str) -> str:
        return summary[key] + (" (offline stand-in)" if summary[f"{key}_offline_stand_in"] else "")

    protocol = summary["protocol"]
    return (f"HS judge {name('judge')} on {protocol['num_harmful_prompts']} prompts; helpfulness "
            f"{name('helpful_scorer')} on {protocol['num_helpful_prompts']}; MC1 on {protocol['num_mc1_questions']} "
            f"questions ({protocol['mc_option_score']} log-prob); gate loss {summary['gate_loss']} x "
            f"{summary['gate_coeff']:g}, top-{summary['top_k']}")


def members_table(summary: dict) -> str:
    rows = [[m["index"], m["name"], m["validation_accuracy"], m["test_accuracy"]] for m in summary["members"]]
    return shared.format_table(["#", "member", "validation acc", "test acc"], rows, align="rlrr", digits=3)


def teams_table(summary: dict) -> str:
    teams = [("pool", summary["pool"])] + [(str(rank), t) for rank, t in enumerate(summary["teams"], start=1)]
    rows = [[label, "+".join(map(str, t["members"])), *(t[c] for c in TEAM_COLUMNS)] for label, t in teams]
    header = ["team", "members", "val focal", "focal", "GD", "kappa", "plurality acc", "fused acc"]
    return shared.format_table(header, rows, align="llrrrrrr", digits=3)


def plot(runs: list[shared.Run], root: Path, path: Path) -> None:
    """Per run: focal diversity (test) vs accuracy of each team, plurality vote and fused."""
    plt = shared.pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4.2), squeeze=False)
    for ax, run in zip(axes[0], runs):
        teams = [run.summary["pool"], *run.summary["teams"]]
        x = [t["focal_diversity"] for t in teams]
        ax.scatter(x, [t["plurality_accuracy"] for t in teams], marker="o", label="plurality vote")
        ax.scatter(x, [t["fused_accuracy"] for t in teams], marker="^", label="TOPLA-Weighted")
        for t, xi in zip(teams, x):
            ax.annotate("+".join(map(str, t["members"])), (xi, t["plurality_accuracy"]), fontsize=6,
                        textcoords="offset points", xytext=(3, 3))
        best = max(m["test_accuracy"] for m in run.summary["members"])
        ax.axhline(best, color="grey", linestyle="--", linewidth=0.8, label="best member")
        ax.set_xlabel("focal diversity (test split)")
        ax.set_ylabel("accuracy (test split)")
        ax.set_title(str(run.dir.relative_to(root)) if run.dir != root else run.dir.name, fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    shared.save_figure(fig, path)


@dataclass
class ResultsOptions:
    experiments_dir: str = option(help="directory holding ensembles run directories")
    plot: Optional[str] = option(None, help="PNG path (default: <experiments_dir>/diversity_vs_accuracy.png)")


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_options("python -m ensembles.results", __doc__.splitlines()[0], ResultsOptions, argv)
    root = Path(args.experiments_dir)
    runs, fusions = find_runs(root)
    if not runs and not fusions:
        raise DataError(f"{root}: no finished ensembles runs (directories with config.json and summary.json)")
    for run in fusions:
        print(f"== {run.dir}  (H3Fusion)")
        print(h3fusion_table(run.summary))
        print(judges_line(run.summary))
        print()
    for run in runs:
        test_size = run.summary["split_sizes"]["test"]
        print(f"== {run.dir}  ({run.summary['num_samples']} questions, test split {test_size})")
        print(members_table(run.summary))
        print()
        print(teams_table(run.summary))
        marl = run.summary.get("marl_focal")
        if marl:
            print(f"MARL-Focal ({marl['protocol']}): test accuracy {marl['test_accuracy']:.3f}, mean team size "
                  f"{marl['mean_team_size']:.2f}")
        print()
    if runs:
        plot_path = Path(args.plot) if args.plot else root / "diversity_vs_accuracy.png"
        plot(runs, root, plot_path)
        print(f"plot: {plot_path}")


if __name__ == "__main__":
    main(sys.argv[1:])
