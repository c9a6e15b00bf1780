"""HS and FA per method x attack (task, p, n, strength), mean +- sd over seeds, from the evaluate runs.

    python -m harmful_ft.results --experiments_dir outputs/harmful_ft_tiny [--csv PATH]

Reads every finished harmful_ft evaluate run below the directory; rows of the aligned model (before
any attack) have p and n "-". Every row names its judge; a judge that is an offline stand-in (the
keyword refusal judge, not beaver-dam) is marked "(stand-in)". Writes the rows as CSV (default
<experiments_dir>/harmful_ft_results.csv) and a PNG of HS and FA vs p per method next to it
(harmful_ft_results.png). A row's method is read from the recorded runs (`method_fields`): the alignment
defense, every other `*_defense` field, the attack data and the user-data filter (with the guard's leakage
and false-positive ratios); the attack's strength (lr, epochs, LoRA r and alpha) from the finetune run's
config, shown as columns where it varies (attack-strength sweeps). Telemetry curves (PNG) are drawn by the
telemetry module.
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

# A row's method: the alignment `defense`, then every other `*_defense` field its evaluate run or the finetune
# run it evaluates records (later stages' defenses, found by name so that new ones need no edit here), the
# attack's harmful data and the provider's user-data filter.
ATTACK = ("attack_optimizer", "task", "p", "n")
STRENGTH = ("lr", "num_epochs", "lora_r", "lora_alpha")  # the attack's strength, from the finetune run's config
METRICS = ("hs", "fa_substring", "fa_strict", "fa", "leakage", "false_positive")
EMPTY = (None, "", "none")


def method_fields(config: dict, summary: dict, finetune) -> dict:
    """The method fields of an evaluate run (its `config` and `summary`) and of the finetune run it
    evaluates (None for a base or aligned model); later sources win, "none" and "" read as unset."""
    sources = ([] if finetune is None else [finetune.config, finetune.summary]) + [config, summary]
    fields = {"defense": summary.get("defense")}
    for source in sources:
        fields.update({k: v for k, v in source.items() if k.endswith("_defense") and not isinstance(v, (dict, list))})
    if finetune is not None:
        fields["harmful_data"] = finetune.summary.get("harmful_data", "beavertails")
        fields["user_data_filter"] = finetune.summary.get("user_data_filter", "none")
    return {k: None if v in EMPTY else v for k, v in fields.items()}


def attack_strength(finetune) -> dict:
    if finetune is None:
        return dict.fromkeys(STRENGTH)
    lora = finetune.config.get("lora") or {}
    return {"lr": finetune.config.get("lr"), "num_epochs": finetune.config.get("num_epochs"),
            "lora_r": lora.get("r"), "lora_alpha": lora.get("lora_alpha")}


def percent(value: Optional[float]) -> Optional[float]:
    return None if value is None else 100.0 * value


def find_evaluations(root: Path) -> list[dict]:
    runs = shared.find_runs(root, "harmful_ft").finished
    by_dir = {run.dir.resolve(): run for run in runs}
    rows = []
    for run in runs:
        if run.summary.get("stage") != "evaluate":
            continue
        if "hs" not in run.summary:
            raise DataError(f"{run.dir / 'summary.json'}: an evaluate run without 'hs'; delete it to re-run it")
        producer = by_dir.get(Path(run.config.get("model", "")).parent.resolve())
        finetune = producer if run.summary.get("evaluated") == "finetune" and producer is not None else None
        guard = finetune.summary if finetune is not None else {}
        rows.append({"evaluated": run.summary.get("evaluated"), **method_fields(run.config, run.summary, finetune),
                     **{k: run.summary.get(k) for k in ATTACK}, **attack_strength(finetune),
                     "judge": run.summary.get("judge"), **{m: run.summary.get(m) for m in METRICS[:4]},
                     "leakage": percent(guard.get("leakage_ratio")),
                     "false_positive": percent(guard.get("false_positive_ratio")),
                     "stand_in": run.summary.get("judge_offline_stand_in", False), "seed": run.config.get("seed")})
    return rows


def group_keys(rows: list[dict]) -> list[str]:
    """Every field a row is grouped by: the evaluated model, its method fields (those any row has), the
    attack, its strength and the judge."""
    methods = ["defense"] + sorted({k for r in rows for k in r if k.endswith("_defense") and k != "defense"})
    methods += [k for k in ("harmful_data", "user_data_filter") if any(k in r for r in rows)]
    return ["evaluated", *methods, *ATTACK, *STRENGTH, "judge"]


def stats(values) -> tuple[Optional[float], Optional[float]]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def aggregate(rows: list[dict]) -> list[dict]:
    """One row per group (`group_keys`: method x attack x strength x judge): mean and sample sd over the seeds."""
    keys = group_keys(rows)
    groups = defaultdict(list)
    for r in rows:
        groups[tuple(r.get(k) for k in keys)].append(r)
    out = []
    for key, rs in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        row = {**dict(zip(keys, key)), "seeds": len(rs), "stand_in": rs[0]["stand_in"]}
        for m in METRICS:
            row[m], row[f"{m}_sd"] = stats(r[m] for r in rs)
        out.append(row)
    return out


def cell(mean: Optional[float], sd: Optional[float]) -> str:
    if mean is None:
        return "-"
    return f"{mean:.1f}" + ("" if sd is None else f" ± {sd:.1f}")


def text(value) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def shown_columns(rows: list[dict]) -> list[str]:
    """The optional columns worth a column: method fields some row sets (the attack data when not all
    BeaverTails), attack-strength fields that vary over the attacked rows, guard ratios some row has."""
    keys = group_keys(rows)
    attacked = [r for r in rows if r["evaluated"] == "finetune"]
    optional_methods = keys[2:keys.index(ATTACK[0])]  # after "evaluated" and "defense", before the attack
    methods = [k for k in optional_methods if any(r.get(k) is not None for r in rows)
               and not (k == "harmful_data" and all(r.get(k) in (None, "beavertails") for r in rows))]
    strength = [k for k in STRENGTH if len({r[k] for r in attacked}) > 1]
    guard = [m for m in ("leakage", "false_positive") if any(r[m] is not None for r in rows)]
    return methods + strength + guard


COLUMN_NAMES = {"finetune_defense": "ft/post defense", "harmful_data": "attack data", "user_data_filter": "filter",
                "num_epochs": "epochs", "lora_r": "LoRA r", "lora_alpha": "LoRA alpha", "leakage": "leakage %",
                "false_positive": "guard FP %"}


def format_table(rows: list[dict]) -> str:
    """method x attack (x strength) rows, HS and FA (substring, strict; GSM8K's own), optional columns
    only where they say something (`shown_columns`)."""
    optional = shown_columns(rows)
    header = ["model", "method", *(COLUMN_NAMES.get(k, k) for k in optional), "attack", "task", "p", "n", "seeds",
              "HS", "FA substring", "FA strict", "FA (gsm8k)", "judge"]
    body = []
    for r in rows:
        extra = [cell(r[k], r[f"{k}_sd"]) if k in METRICS else text(r.get(k)) for k in optional]
        body.append(["aligned" if r["evaluated"] == "align" else r["evaluated"], r["defense"] or "-", *extra,
                     r["attack_optimizer"] or "-", r["task"] or "-", text(r["p"]), text(r["n"]), r["seeds"],
                     *(cell(r[m], r[f"{m}_sd"]) for m in METRICS[:4]),
                     r["judge"] + (" (stand-in)" if r["stand_in"] else "")])
    align = "l" * (2 + len(optional)) + "llrrrrrrrl"
    return shared.format_table(header, body, align=align)


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [*group_keys(rows), "seeds", "stand_in", *(c for m in METRICS for c in (m, f"{m}_sd"))]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows({c: r.get(c) for c in columns} for r in rows)


def plot_methods(rows: list[dict], path: Path) -> Optional[Path]:
    """PNG of HS and FA (substring, strict, GSM8K's) vs p, one line per method x task x judge (x attack
    strength where it varies) over the attacked rows; None without attacked rows."""
    attacked = [r for r in rows if r["evaluated"] == "finetune" and r["p"] is not None]
    if not attacked:
        return None
    plt = shared.pyplot()
    keys = group_keys(rows)
    varying = [k for k in keys if k not in ("evaluated", "p") and len({r.get(k) for r in attacked}) > 1]
    lines = defaultdict(list)
    for r in attacked:
        lines[" ".join(f"{COLUMN_NAMES.get(k, k)}={text(r.get(k))}" for k in varying) or text(r["defense"])].append(r)
    panels = [(m, label) for m, label in (("hs", "HS (% flagged)"), ("fa_substring", "FA substring (%)"),
                                          ("fa_strict", "FA strict (%)"), ("fa", "FA GSM8K (%)"))
              if any(r[m] is not None for r in attacked)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (metric, label) in zip(axes[0], panels):
        for name, rs in sorted(lines.items()):
            points = sorted((r["p"], r[metric]) for r in rs if r[metric] is not None)
            if points:
                ax.plot(*zip(*points), marker="o", label=name)
        ax.set_xlabel("harmful share p")
        ax.set_ylabel(label)
    axes[0][0].legend(fontsize=7)
    return shared.save_figure(fig, path)


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
    png = plot_methods(table, path.with_suffix(".png"))
    if png:
        print(f"methods: {png}")
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
