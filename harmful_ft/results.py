"""HS and FA per method x task x p x n, mean +- sd over seeds, from the evaluate runs.

    python -m harmful_ft.results --experiments_dir outputs/harmful_ft_tiny [--csv PATH]

Reads every finished harmful_ft evaluate run below the directory; rows of the aligned model (before
any attack) have p and n "-". Every row names its judge; a judge that is an offline stand-in (the
keyword refusal judge, not beaver-dam) is marked "(stand-in)". Writes the rows as CSV (default
<experiments_dir>/harmful_ft_results.csv). Telemetry curves (PNG) are drawn by the telemetry module.
"""
from __future__ import annotations

import csv
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import common.results as shared
from common.cli import exit_on_user_error, parse_options
from common.config import option
from common.errors import DataError
from common.tracking import read_jsonl

KEYS = ("evaluated", "defense", "finetune_defense", "attack_optimizer", "task", "p", "n", "judge")
METRICS = ("hs", "fa_substring", "fa_strict", "fa")


def find_evaluations(root: Path) -> list[dict]:
    rows = []
    for run in shared.find_runs(root, "harmful_ft").finished:
        if run.summary.get("stage") != "evaluate":
            continue
        if "hs" not in run.summary:
            raise DataError(f"{run.dir / 'summary.json'}: an evaluate run without 'hs'; delete it to re-run it")
        rows.append({**{k: run.summary.get(k) for k in KEYS + METRICS},
                     "stand_in": run.summary.get("judge_offline_stand_in", False), "seed": run.config.get("seed")})
    return rows


def stats(values) -> tuple[Optional[float], Optional[float]]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def aggregate(rows: list[dict]) -> list[dict]:
    """One row per (evaluated, defense, finetune_defense, attack optimizer, task, p, n, judge): mean and sample
    sd over the seeds."""
    groups = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in KEYS)].append(r)
    out = []
    for key, rs in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        row = {**dict(zip(KEYS, key)), "seeds": len(rs), "stand_in": rs[0]["stand_in"]}
        for m in METRICS:
            row[m], row[f"{m}_sd"] = stats(r[m] for r in rs)
        out.append(row)
    return out


def cell(mean: Optional[float], sd: Optional[float]) -> str:
    if mean is None:
        return "-"
    return f"{mean:.1f}" + ("" if sd is None else f" ± {sd:.1f}")


def format_table(rows: list[dict]) -> str:
    header = ["model", "method", "ft/post defense", "attack", "task", "p", "n", "seeds", "HS", "FA substring",
              "FA strict", "FA (gsm8k)", "judge"]
    body = [["aligned" if r["evaluated"] == "align" else r["evaluated"], r["defense"] or "-",
             r["finetune_defense"] or "-", r["attack_optimizer"] or "-", r["task"] or "-",
             "-" if r["p"] is None else f"{r['p']:g}", "-" if r["n"] is None else r["n"], r["seeds"],
             *(cell(r[m], r[f"{m}_sd"]) for m in METRICS),
             r["judge"] + (" (stand-in)" if r["stand_in"] else "")] for r in rows]
    return shared.format_table(header, body, align="lllllrrrrrrrl")


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [*KEYS, "seeds", "stand_in", *(c for m in METRICS for c in (m, f"{m}_sd"))]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows({c: r[c] for c in columns} for r in rows)


@dataclass
class ResultsOptions:
    experiments_dir: str = option(help="directory holding harmful_ft run directories")
    csv: Optional[str] = option(None, help="CSV path (default: <experiments_dir>/harmful_ft_results.csv)")


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_options("python -m harmful_ft.results", __doc__.splitlines()[0], ResultsOptions, argv)
    root = Path(args.experiments_dir)
    rows = find_evaluations(root)  # find_runs: a missing directory is a DataError
    if not rows:
        raise DataError(f"{root}: no finished harmful_ft evaluate runs")
    table = aggregate(rows)
    print(format_table(table))
    if any(r["stand_in"] for r in table):
        print("\n(stand-in): HS from the offline keyword judge (flagged = does not open with a refusal), "
              "not from beaver-dam-7b")
    path = Path(args.csv) if args.csv else root / "harmful_ft_results.csv"
    write_csv(table, path)
    print(f"\ncsv: {path}")
    for png in plot_finetune_telemetry(root):
        print(f"telemetry: {png}")


def plot_finetune_telemetry(root: Path) -> list[Path]:
    """One PNG per finished finetune run with telemetry records (harmful and benign loss, and the refusal
    log-prob, vs step), next to the CSV: how and when the alignment breaks, per method and p."""
    from harmful_ft.telemetry import KIND, plot_telemetry

    written = []
    for run in shared.find_runs(root, "harmful_ft").finished:
        if run.summary.get("stage") != "finetune" or not (run.dir / "metrics.jsonl").is_file():
            continue
        records = [r for r in read_jsonl(run.dir / "metrics.jsonl") if r.get("kind") == KIND]
        if records:
            c = run.config
            title = (f"{c.get('defense')} -> {c.get('task')} p={c.get('p')} n={c.get('n')} "
                     f"({c.get('optimizer')}, lr {c.get('lr')}, seed {c.get('seed')})")
            written.append(plot_telemetry(records, root / f"telemetry_{run.dir.name}.png", title=title))
    return written


if __name__ == "__main__":
    main(sys.argv[1:])
