"""Figure 2: the preferred log-prob change after training, by quantile of each similarity measure.

    python -m pref_similarity.results --experiments_dir DIR [--metric preferred_logprobs_change_mean]

Reads every finished quantile run under DIR (config.json + summary.json + metrics.jsonl), takes the
last eval record of split "train" (the training subset after training), and prints one table per
setting (model, dataset, objective and any other config field that differs between runs, e.g. lr):
a row per measure, a column per quantile, mean ± std over runs that differ only in seed, and
`q_max - q_min`, the change from the least to the most similar subset. Writes `figure2.png` (one
panel per table, one line per measure) and `figure2.csv` into DIR (`figure2_<metric>.*` for another
--metric). When the runs logged the public runner's other eval figures (eval loss, pi_logratios_mean,
the y+ probability change, the generation eval's response length and sequence KL), a second table per
setting lists their final values by measure and quantile.
"""
from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ches.similarity_file import MEASURES
from common.cli import exit_on_user_error, parse_options
from common.config import option
from common.errors import DataError
from common.results import find_runs, format_table, pyplot, save_figure
from common.tracking import read_jsonl

DEFAULT_METRIC = "preferred_logprobs_change_mean"


def _read(path: Path, reader):
    """`reader(path)`, with a missing or malformed file as a DataError naming it."""
    try:
        return reader(path)
    except FileNotFoundError:  # malformed JSON is the readers' own DataError naming the file and line
        raise DataError(f"{path}: not found") from None


def final_train_eval(run_dir: Path) -> dict:
    evals = [r for r in _read(run_dir / "metrics.jsonl", read_jsonl)
             if isinstance(r, dict) and r.get("kind") == "eval" and r.get("split") == "train"]
    if not evals:
        raise DataError(f"{run_dir}: metrics.jsonl has no eval record of split 'train'")
    return max(evals, key=lambda r: r["step"])


# Fields that vary within one table (its cells and the runs averaged in a cell); any other field that
# differs between runs (model, dataset, objective, lr, ...) puts them in different tables.
CELL_FIELDS = {"similarity_measure", "quantile", "seed", "experiment_name", "outputs_dir", "similarity_path"}


# Hyper-parameters a plot title names (when they are the same in all runs of a table).
TITLE_FIELDS = ("beta", "lr", "optimizer", "batch_size", "num_train_samples")


def collect(experiments_dir: Path, metric: str, required: bool = True) -> tuple[dict, int, dict]:
    """{table label: {(measure, quantile): [values]}}, the number of unfinished runs, and per label the
    TITLE_FIELDS shared by all its runs ("beta 0.1, lr 1e-07, ..."). A run without `metric` is an
    error, or left out when not `required`."""
    runs = []
    found = find_runs(experiments_dir, "pref_similarity",
                      legacy=lambda config: "similarity_measure" in config and "quantile" in config)
    for run in found.finished:
        config, run_dir = run.config, run.dir
        record = final_train_eval(run_dir)
        if metric not in record and not required:
            continue
        if metric not in record:
            raise DataError(f"{run_dir}: eval records have no {metric!r}; choose one of "
                            f"{', '.join(k for k in record if k not in ('kind', 'split', 'step'))}")
        if isinstance(record[metric], bool) or not isinstance(record[metric], (int, float)):
            raise DataError(f"{run_dir}: {metric!r} is not a number ({record[metric]!r}) in the last train eval")
        runs.append((config, float(record[metric])))
    settings = [{k: v for k, v in config.items() if k not in CELL_FIELDS} for config, _ in runs]
    varying = sorted({k for s in settings for k in s if any(o.get(k) != s.get(k) for o in settings)}
                     - {"model", "dataset", "objective"})
    table: dict = defaultdict(lambda: defaultdict(list))
    hyper: dict = defaultdict(list)
    for (config, value), setting in zip(runs, settings):
        label = " | ".join([f"model {setting.get('model')}", f"dataset {setting.get('dataset')}",
                            f"objective {setting.get('objective')}"]
                           + [f"{k} {json.dumps(setting.get(k))}" for k in varying])
        table[label][(config["similarity_measure"], config["quantile"])].append(value)
        hyper[label].append({k: setting[k] for k in TITLE_FIELDS if k in setting and k not in varying})
    shared = {label: ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                               for k, v in dicts[0].items() if all(d.get(k) == v for d in dicts))
              for label, dicts in hyper.items()}
    return table, len(found.unfinished), shared


def cell(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    return f"{mean:.4g}" + (f" ±{statistics.stdev(values):.2g}" if len(values) > 1 else "")


def format_tables(table: dict, metric: str) -> str:
    lines = [f"Figure 2: {metric} on the training subset after training, by quantile of each measure "
             f"(mean ± std over runs)"]
    for label, cells in table.items():
        quantiles = sorted({q for _, q in cells})
        measures = [m for m in MEASURES if any(m == cm for cm, _ in cells)]
        header = ["measure"] + [f"q={q:g}" for q in quantiles] + ["q_max - q_min"]
        rows = []
        for m in measures:
            means = {q: statistics.fmean(cells[(m, q)]) for q in quantiles if cells.get((m, q))}
            spread = f"{means[max(means)] - means[min(means)]:.4g}" if len(means) > 1 else "-"
            rows.append([m] + [cell(cells.get((m, q), [])) for q in quantiles] + [spread])
        lines += ["", f"{label} | runs {sum(len(v) for v in cells.values())}", format_table(header, rows)]
    return "\n".join(lines)


# The public runner's other eval figures (pref_similarity/eval_extras.py), with short column names.
EXTRA_METRICS = {"loss": "loss", "pi_logratios_mean": "pi_logratios", "preferred_probs_change_mean": "p(y+) change",
                 "generation_token_lengths_mean": "gen tokens", "generation_sequence_policykl": "gen seq KL"}


def format_extras(extras: dict) -> str:
    """{metric: collect()'s table} as one table per setting: a row per (measure, quantile), a column per
    metric some run logged, mean ± std over runs ("" when no run has any of them)."""
    labels = list(dict.fromkeys(label for table in extras.values() for label in table))
    lines = []
    for label in labels:
        present = [m for m in extras if extras[m].get(label)]
        keys = sorted({key for m in present for key in extras[m][label]},
                      key=lambda key: (MEASURES.index(key[0]) if key[0] in MEASURES else len(MEASURES), key[1]))
        rows = [[measure, f"{q:g}"] + [cell(extras[m][label].get((measure, q), [])) for m in present]
                for measure, q in keys]
        lines += ["", f"final eval of the training subset: {label}",
                  format_table(["measure", "quantile"] + [EXTRA_METRICS[m] for m in present], rows)]
    return "\n".join(lines)


def write_csv(table: dict, path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["table", "measure", "quantile", "runs", "mean", "std"])
        for label, cells in table.items():
            for (measure, quantile), values in sorted(cells.items()):
                writer.writerow([label, measure, quantile, len(values), statistics.fmean(values),
                                 statistics.stdev(values) if len(values) > 1 else ""])


METRIC_LABELS = {
    "preferred_logprobs_change_mean":
        "preferred log-prob change, policy - reference\n(nats, summed over response tokens)",
    "dispreferred_logprobs_change_mean": "dispreferred log-prob change, policy - reference\n(nats, summed over tokens)",
}


def metric_label(metric: str) -> str:
    """An axis label with units for an eval field (log-probs are in nats, accuracies in %)."""
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    words = metric.replace("_", " ")
    if "accuracy" in metric:
        return f"{words} (%)"
    return f"{words} (nats)" if "logprob" in metric else words


def panel_title(label: str) -> str:
    """The table label for a plot title: datasets given as files by their file name, not their path."""
    parts = []
    for part in label.split(" | "):
        key, _, value = part.partition(" ")
        if key == "dataset" and ("/" in value and Path(value).suffix or value.endswith((".json", ".jsonl"))):
            value = Path(value).name
        parts.append(f"{key} {value}")
    return "\n".join(parts)


def plot(table: dict, metric: str, path: Path, hyper: dict) -> None:
    """One panel per table, one line per measure: the mean over runs with a std bar; when the points of a
    panel average different numbers of runs, each point is labelled with its n."""
    plt = pyplot()
    scale = 100 if "accuracy" in metric else 1
    fig, axes = plt.subplots(1, len(table), figsize=(5.5 * len(table), 4.3), squeeze=False)
    for ax, (label, cells) in zip(axes[0], table.items()):
        uneven = len({len(v) for v in cells.values()}) > 1
        for measure in MEASURES:
            points = sorted((q, v) for (m, q), v in cells.items() if m == measure)
            if not points:
                continue
            qs = [q for q, _ in points]
            means = [scale * statistics.fmean(v) for _, v in points]
            stds = [scale * statistics.stdev(v) if len(v) > 1 else 0.0 for _, v in points]
            ax.errorbar(qs, means, yerr=stds, marker="o", capsize=3, label=measure)
            if uneven:
                for q, mean, (_, v) in zip(qs, means, points):
                    ax.annotate(f"n={len(v)}", (q, mean), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.axhline(0, color="grey", linewidth=0.8)
        runs = sum(len(v) for v in cells.values())
        title = [panel_title(label), hyper.get(label, ""), f"{runs} run{'s' * (runs != 1)} (mean ± std over seeds)"]
        ax.set_title("\n".join(t for t in title if t), fontsize=8)
        ax.set_xlim(-0.05, 1.05)  # quantiles live in [0, 1]; a lone quantile should not fill the axis
        ax.set_xlabel("similarity quantile of the training subset (0 = least similar)")
        ax.set_ylabel(metric_label(metric))
        ax.legend(fontsize=8, loc="best")
    save_figure(fig, path)


@dataclass
class ResultsOptions:
    experiments_dir: str = option(help="directory holding the runs (searched recursively)")
    metric: str = option(DEFAULT_METRIC, help="eval field to tabulate")


@exit_on_user_error
def main(argv=None) -> str:
    args = parse_options("python -m pref_similarity.results", __doc__.splitlines()[0], ResultsOptions, argv)
    experiments_dir = Path(args.experiments_dir)
    if not experiments_dir.is_dir():
        raise DataError(f"{experiments_dir}: no such directory")
    table, unfinished, hyper = collect(experiments_dir, args.metric)
    if not table:
        raise DataError(f"{experiments_dir}: no finished pref_similarity run found ({unfinished} unfinished)")
    text = format_tables(table, args.metric)
    extras = {m: collect(experiments_dir, m, required=False)[0] for m in EXTRA_METRICS if m != args.metric}
    text += format_extras({m: t for m, t in extras.items() if t})
    if unfinished:
        text += f"\n\n({unfinished} unfinished runs left out)"
    print(text)
    stem = experiments_dir / ("figure2" if args.metric == DEFAULT_METRIC else f"figure2_{args.metric}")
    write_csv(table, stem.with_suffix(".csv"))
    plot(table, args.metric, stem.with_suffix(".png"), hyper)
    print(f"\nwrote {stem}.png and {stem}.csv")
    return text


if __name__ == "__main__":
    main()
