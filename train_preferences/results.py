"""Print one row per finished generic-runner run: its setting, the final training loss and the
log-prob changes on the training set after training (the run's summary.json).

    python -m train_preferences.results --experiments_dir DIR
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.cli import exit_on_user_error, parse_options
from common.config import option
from common.errors import DataError
from common.results import find_runs, format_table

HEADER = ["run", "model", "objective", "lr", "examples", "steps", "final loss", "dlogp(y+)", "dlogp(y-)",
          "reward accuracy"]


def run_rows(experiments_dir: str | Path) -> tuple[list[list], int]:
    """The table rows (runs in path order) and the number of unfinished runs."""
    root = Path(experiments_dir)
    found = find_runs(root, "train_preferences", legacy=lambda config: "chosen_field" in config)
    rows = []
    for run in found.finished:
        c, s = run.config, run.summary
        train_eval = (s.get("eval") or {}).get("train") or {}
        rows.append([str(run.dir.relative_to(root)), Path(c["model"]).name, c["objective"], c["lr"],
                     s.get("num_examples"), s.get("steps"), (s.get("train") or {}).get("loss"),
                     train_eval.get("preferred_logprobs_change_mean"),
                     train_eval.get("dispreferred_logprobs_change_mean"), train_eval.get("reward_accuracy")])
    return rows, len(found.unfinished)


@dataclass
class ResultsOptions:
    experiments_dir: str = option(help="directory holding the runs (searched recursively)")


@exit_on_user_error
def main(argv=None) -> str:
    args = parse_options("python -m train_preferences.results", __doc__.splitlines()[0], ResultsOptions, argv)
    rows, unfinished = run_rows(args.experiments_dir)
    if not rows:
        raise DataError(f"{args.experiments_dir}: no finished train_preferences run (config.json and summary.json)"
                        + (f"; {unfinished} unfinished" if unfinished else ""))
    text = ("Generic runner: dlogp = policy minus reference log-prob of the responses on the training set after "
            "training (mean)\n" + format_table(HEADER, rows))
    if unfinished:
        text += f"\n({unfinished} unfinished runs left out)"
    print(text)
    return text


if __name__ == "__main__":
    main()
