"""python -m elasticity.results --experiments_dir DIR [--plots_dir DIR/plots]

Prints, for the finished elasticity runs under DIR:
- resistance: the paper's Table 1 layout, per-token training loss of inverse (th_l -> th_k) and
  forward (th_k -> th_l) fine-tuning for every pair, and how many comparisons the inverse loss wins;
  then the held-out compression (bits/token) of the target data after each fine-tuning;
- rebound: score and KL to the base model after positive SFT (negatives 0) and after each negative
  size, the negatives needed to bring the KL under epsilon (Table 3) and the rebound fraction;
- factors: rebound against model size and pre-training tokens when several rebound runs of a dataset
  differ in them.
and writes PNGs to the plots directory: rebound curves (score and KL vs negatives, one line per positive
size), heatmaps (score and KL over positive x negative sizes; resistance loss over model x data), and
the factor plots.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import common.results as shared
from common.cli import exit_on_user_error, parse_options
from common.config import option
from common.errors import ConfigError

# What the printer reads from each kind of run summary.
SUMMARY_KEYS = {"resistance": ("dataset", "pairs", "inverse_lower", "comparisons"),
                "rebound": ("dataset", "curves", "base_score", "kl_epsilon", "num_parameters"),
                "classifier": ("dataset", "labels", "heldout_accuracy", "num_heldout")}


def find_runs(experiments_dir: Path) -> tuple[list[dict], list[Path]]:
    """Finished runs (config + summary + run dir + name) of the study, and unfinished run dirs.

    A run's name is its directory relative to `experiments_dir` with "/" as "_": an experiment_name
    templated from a hub id ("rebound_{dataset}_{model}" -> rebound_imdb_google/gemma-2b) nests the run
    one level deeper, and the last component alone ("gemma-2b") would be shared by the runs of every
    dataset, so their plots would overwrite one another."""
    found = shared.find_runs(experiments_dir, "elasticity", legacy=lambda config: "experiment" in config)
    runs = []
    for run in found.finished:
        experiment = run.config.get("experiment")
        missing = [k for k in SUMMARY_KEYS.get(experiment, ()) if k not in run.summary]
        if missing:
            raise ConfigError(f"{run.dir / 'summary.json'}: not an elasticity {experiment} summary (no "
                              f"{', '.join(map(repr, missing))}); delete it to re-run that run")
        runs.append({"config": run.config, "summary": run.summary, "dir": run.dir,
                     "name": "_".join(run.dir.relative_to(experiments_dir).parts)})
    return runs, found.unfinished


def fmt(value: Optional[float], digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def model_name(run: dict) -> str:
    return Path(run["config"]["model"]).name if not run["config"].get("pretrain_tokens") else run["name"]


def caption(run: dict) -> str:
    """A plot title: dataset, model and the hyper-parameters that set the curves' scale."""
    c = run["config"]
    parts = [f"{run['summary']['dataset']} / {model_name(run)}"]
    if c.get("lr") is not None:
        parts.append(f"lr {c['lr']:g}")
    if c.get("scorer"):
        parts.append(f"scorer {c['scorer'].get('type', '?')}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------------------------
# Resistance


def resistance_tables(runs: list[dict]) -> str:
    pairs = [(p["k"], p["l"]) for p in runs[0]["summary"]["pairs"]]
    pair_columns = [f"th{later}->th{earlier} | th{earlier}->th{later}" for earlier, later in pairs]
    header = ["dataset", "model"] + pair_columns + ["inverse lower"]
    loss_rows, bits_rows, won, total = [], [], 0, 0
    for run in runs:
        s = run["summary"]
        by_pair = {(p["k"], p["l"]): p for p in s["pairs"]}
        cells = [by_pair.get(pair) for pair in pairs]
        loss_rows.append([s["dataset"], model_name(run)] + [
            "-" if c is None else f"{fmt(c['inverse']['token_loss_mean'])} | {fmt(c['forward']['token_loss_mean'])}"
            for c in cells] + [f"{s['inverse_lower']}/{s['comparisons']}"])
        bits_rows.append([s["dataset"], model_name(run)] + [
            "-" if c is None else f"{bits_change(c['inverse'])} | {bits_change(c['forward'])}" for c in cells])
        won, total = won + s["inverse_lower"], total + s["comparisons"]
    return "\n".join([
        "Resistance (Table 1): per-token training loss (nats), mean over the fine-tuning, inverse | forward",
        shared.format_table(header, loss_rows),
        f"inverse loss lower in {won} of {total} comparisons (the paper: all 27)",
        "",
        "Held-out compression of the target data (bits/token) before -> after fine-tuning, inverse | forward",
        shared.format_table(header[:-1], bits_rows)])


def bits_change(numbers: dict) -> str:
    return f"{fmt(numbers['target_bits_per_token_initial'])}->{fmt(numbers['target_bits_per_token_final'])}"


def resistance_heatmap(run: dict, path: Path) -> None:
    """Per-token training loss of th_a (rows) fine-tuned on D_b (columns)."""
    plt = shared.pyplot()
    import numpy as np

    s = run["summary"]
    n = max(max(p["k"], p["l"]) for p in s["pairs"])
    grid = np.full((n, n), np.nan)
    for p in s["pairs"]:
        grid[p["k"] - 1, p["l"] - 1] = p["forward"]["token_loss_mean"]
        grid[p["l"] - 1, p["k"] - 1] = p["inverse"]["token_loss_mean"]
    fig, ax = plt.subplots(figsize=(4 + n * 0.4, 3.5 + n * 0.3))
    labels = [f"th{i + 1}" for i in range(n)]
    heatmap(fig, ax, grid, [f"D({x})" for x in labels], labels, "{:.3f}")
    ax.set_xlabel("fine-tuned on the responses of")
    ax.set_ylabel("model")
    ax.set_title(f"resistance {caption(run)}\nper-token training loss (nats; upper: forward)", fontsize=9)
    shared.save_figure(fig, path, dpi=110)


def heatmap(fig, ax, grid, xlabels: list[str], ylabels: list[str], number: str) -> None:
    """A grid as colours with its numbers written on (dark text on light cells); NaN cells stay blank."""
    import numpy as np

    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(xlabels)), xlabels)
    ax.set_yticks(range(len(ylabels)), ylabels)
    low, high = np.nanmin(grid), np.nanmax(grid)
    for (i, j), value in np.ndenumerate(grid):
        if not np.isnan(value):
            light = high > low and (value - low) / (high - low) > 0.6
            ax.text(j, i, number.format(value), ha="center", va="center", color="k" if light else "w", fontsize=8)
    fig.colorbar(image, ax=ax)


# ----------------------------------------------------------------------------------------------
# Rebound


def rebound_tables(run: dict, kl_epsilon: Optional[float] = None) -> str:
    """Score and KL grids and Table 3; `kl_epsilon` recomputes the crossing at another threshold."""
    from elasticity.rebound import threshold_crossing

    s = run["summary"]
    curves = s["curves"]
    negatives = [p["negative"] for p in curves[0]["points"]]
    eps = kl_epsilon if kl_epsilon is not None else s["kl_epsilon"]
    crossings = [threshold_crossing([0, *negatives], [c["kl_after_positive"]] + [p["kl"] for p in c["points"]], eps)
                 for c in curves]
    header = ["positive"] + [str(n) for n in [0, *negatives]]
    scores = [[str(c["positive"]), fmt(c["score_after_positive"])] + [fmt(p["score"]) for p in c["points"]]
              for c in curves]
    kls = [[str(c["positive"]), fmt(c["kl_after_positive"], 4)] + [fmt(p["kl"], 4) for p in c["points"]]
           for c in curves]
    table3 = [[str(c["positive"]), fmt(c["kl_after_positive"], 4),
               fmt(crossing, 0) if crossing is not None else f"> {negatives[-1]}", fmt(c["rebound_fraction"], 2)]
              for c, crossing in zip(curves, crossings)]
    return "\n".join([
        f"Rebound {s['dataset']} / {model_name(run)} ({run['name']}): pre-trained model's score "
        f"{fmt(s['base_score'])}",
        "score after negative SFT (columns: negative examples; 0 = after positive SFT only)",
        shared.format_table(header, scores), "",
        "per-token KL to the pre-trained model",
        shared.format_table(header, kls), "",
        f"Table 3: negative examples needed to bring the KL under {eps:g} (interpolated); rebound fraction "
        f"(S_P - S_P,{negatives[0]}) / (S_P - S_0) after the smallest negative set",
        shared.format_table(["positive", "KL after positive", f"negatives to KL<{eps:g}", "rebound fraction"],
                            table3)])


def rebound_curves(run: dict, path: Path) -> None:
    plt = shared.pyplot()

    s = run["summary"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for c in sorted(s["curves"], key=lambda c: c["positive"]):  # legend in numeric order
        xs = [0] + [p["negative"] for p in c["points"]]
        left.plot(xs, [c["score_after_positive"]] + [p["score"] for p in c["points"]], marker="o",
                  label=f"{c['positive']} positive")
        right.plot(xs, [c["kl_after_positive"]] + [p["kl"] for p in c["points"]], marker="o",
                   label=f"{c['positive']} positive")
    if s["base_score"] is not None:
        left.axhline(s["base_score"], color="k", linestyle="--", label="pre-trained")
    right.axhline(s["kl_epsilon"], color="k", linestyle=":", label=f"epsilon {s['kl_epsilon']:g} (Table 3)")
    left.set(xlabel="negative SFT examples (0 = after positive SFT only)", ylabel="mean score of the generations",
             title=f"rebound {caption(run)}")
    right.set(xlabel="negative SFT examples (0 = after positive SFT only)",
              ylabel="per-token KL to the pre-trained model (nats)", yscale="log",
              title="KL(model || pre-trained th0) on held-out prompts")
    left.legend(fontsize=8, loc="best")
    right.legend(fontsize=8, loc="best")
    shared.save_figure(fig, path, dpi=110)


def rebound_heatmaps(run: dict, path: Path) -> None:
    plt = shared.pyplot()
    import numpy as np

    s = run["summary"]
    curves = s["curves"]
    negatives = [0] + [p["negative"] for p in curves[0]["points"]]
    score = np.array([[c["score_after_positive"]] + [p["score"] for p in c["points"]] for c in curves], dtype=float)
    kl = np.array([[c["kl_after_positive"]] + [p["kl"] for p in c["points"]] for c in curves], dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.6 * len(curves) + 2.5))
    for ax, grid, title in zip(axes, (score, kl), ("mean score", "per-token KL to pre-trained (nats)")):
        heatmap(fig, ax, grid, [str(n) for n in negatives], [str(c["positive"]) for c in curves], "{:.3g}")
        ax.set(xlabel="negative SFT examples", ylabel="positive SFT examples", title=f"{caption(run)}: {title}")
    shared.save_figure(fig, path, dpi=110)


# ----------------------------------------------------------------------------------------------
# Factors: rebound against model size and pre-training tokens


def mean_rebound(run: dict) -> Optional[float]:
    values = [c["rebound_fraction"] for c in run["summary"]["curves"] if c["rebound_fraction"] is not None]
    return sum(values) / len(values) if values else None


def factor_table(runs: list[dict]) -> str:
    rows = [[r["name"], f"{r['summary']['num_parameters']:,}", fmt_tokens(r["summary"].get("pretraining_tokens")),
             fmt(r["summary"]["base_score"])] + [fmt(c["rebound_fraction"], 2) for c in r["summary"]["curves"]] +
            [fmt(mean_rebound(r), 2)] for r in runs]
    positives = [str(c["positive"]) for c in runs[0]["summary"]["curves"]]
    header = ["run", "parameters", "pre-training tokens", "base score"] + [f"P={p}" for p in positives] + ["mean"]
    return "\n".join([f"Factors ({runs[0]['summary']['dataset']}): rebound fraction after the smallest negative set, "
                      f"per positive size", shared.format_table(header, rows)])


def fmt_tokens(tokens: Optional[float]) -> str:
    if not tokens:
        return "-"
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if tokens >= scale:
            return f"{tokens / scale:g}{unit}"
    return f"{tokens:g}"


def factor_plot(runs: list[dict], path: Path) -> None:
    """Left: mean rebound fraction vs parameters (runs with equal pre-training tokens joined);
    right: vs pre-training tokens (runs with equal parameters joined)."""
    plt = shared.pyplot()

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, x_key, group_key, label in ((left, "num_parameters", "pretraining_tokens", "tokens"),
                                        (right, "pretraining_tokens", "num_parameters", "params")):
        groups = defaultdict(list)
        for r in runs:
            if r["summary"].get(x_key) and mean_rebound(r) is not None:
                groups[r["summary"].get(group_key)].append(r)
        for key, members in sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):  # numeric legend
            members.sort(key=lambda r: r["summary"][x_key])
            ax.plot([r["summary"][x_key] for r in members], [mean_rebound(r) for r in members], marker="o",
                    label=f"{label} {fmt_tokens(key) if label == 'tokens' else f'{key:,}' if key else '-'}")
        axis = {"num_parameters": "parameters", "pretraining_tokens": "pre-training tokens"}[x_key]
        ax.set(xscale="log", xlabel=axis,
               ylabel="mean rebound fraction (S_P - S_PN) / (S_P - S_0)")
        if groups:
            ax.legend(fontsize=8, loc="best")
    left.set_title(f"rebound vs model size ({runs[0]['summary']['dataset']}, {len(runs)} runs)")
    right.set_title("rebound vs pre-training tokens")
    shared.save_figure(fig, path, dpi=110)


def report(experiments_dir: Path, plots_dir: Path, kl_epsilon: Optional[float] = None) -> tuple[str, list[Path]]:
    """The printed report and the PNG files written."""
    if not experiments_dir.is_dir():
        raise ConfigError(f"{experiments_dir}: no such directory")
    runs, unfinished = find_runs(experiments_dir)
    if not runs:
        raise ConfigError(f"{experiments_dir}: no finished elasticity runs (summary.json next to a config.json "
                          f"with an 'experiment' field); run python -m elasticity --plan_config_path PLAN first")
    sections, plots = [], []
    resistance = [r for r in runs if r["config"]["experiment"] == "resistance"]
    if resistance:
        sections.append(resistance_tables(resistance))
        for run in resistance:
            plots.append(plots_dir / f"{run['name']}_heatmap.png")
            resistance_heatmap(run, plots[-1])
    rebound = [r for r in runs if r["config"]["experiment"] == "rebound"]
    for run in rebound:
        sections.append(rebound_tables(run, kl_epsilon))
        plots += [plots_dir / f"{run['name']}_curves.png", plots_dir / f"{run['name']}_heatmaps.png"]
        rebound_curves(run, plots[-2])
        rebound_heatmaps(run, plots[-1])
    sweeps = defaultdict(list)  # runs with the same dataset and size grid differ only in the model
    for run in rebound:
        c = run["config"]
        sweeps[(c["dataset"], tuple(c["positive_sizes"]), tuple(c["negative_sizes"]))].append(run)
    for (dataset, positive_sizes, _), members in sweeps.items():
        facts = {(r["summary"]["num_parameters"], r["summary"].get("pretraining_tokens")) for r in members}
        if len(facts) > 1:
            sections.append(factor_table(members))
            plots.append(plots_dir / f"factors_{dataset}_p{'-'.join(map(str, positive_sizes))}.png")
            factor_plot(members, plots[-1])
    for run in (r for r in runs if r["config"]["experiment"] == "classifier"):
        s = run["summary"]
        sections.append(f"Classifier {run['name']} ({s['dataset']}, labels {'/'.join(s['labels'])}): "
                        f"held-out accuracy {fmt(s['heldout_accuracy'])} on {s['num_heldout']} rows")
    if unfinished:
        sections.append(f"{len(unfinished)} unfinished run(s): " + ", ".join(str(p) for p in unfinished))
    return "\n\n".join(sections), plots


@dataclass
class ResultsOptions:
    experiments_dir: str = option(help="the plan's outputs_dir")
    plots_dir: Optional[str] = option(None, help="where the PNGs go (default: EXPERIMENTS_DIR/plots)")
    kl_epsilon: Optional[float] = option(None, min=0, min_exclusive=True,
                                         help="Table 3 at this threshold instead of the runs' kl_epsilon")


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_options("python -m elasticity.results", __doc__.splitlines()[0], ResultsOptions, argv)
    experiments_dir = Path(args.experiments_dir)
    text, plots = report(experiments_dir, Path(args.plots_dir or experiments_dir / "plots"), args.kl_epsilon)
    print(text)
    print("\nplots: " + ", ".join(str(p) for p in plots))


if __name__ == "__main__":
    main()
