"""Print the TDS statistics of one or more analysed pairs side by side and write their plots.

    python -m tds.results --analysis_dir O [O2 ...] [--plots_dir P] [--top_tokens 15] [--max_position 100]
    python -m tds.results --experiments_dir DIR [...]   # every finished tds run under DIR

Tables: category ratios per pair (pooled and mean per example, KL both ways), the top-k agreement
of the two models (Jaccard@k, nDCG@k, weighted overlap@k; pooled and by position), the most frequently
shifted tokens, shift rate and KL by position bucket, shift rate by relative position. Plots (PNG)
and every number (tds_results.json) go to --plots_dir (default: the analysis directory, or
`tds_comparison` next to the first one when several are given).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

import common.results as shared
from common.cli import exit_on_user_error, parse_options
from common.config import option
from common.errors import ConfigError
from common.tracking import read_json, write_json
from tds import statistics
from tds.analysis import CATEGORY_NAMES
from tds.storage import TOKEN_TABLE, read_table, read_token_strings


class Analysis:
    """One analysed pair: its label (directory name), title, token table and token strings."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.table = read_table(self.dir / TOKEN_TABLE)
        self.vocab = read_token_strings(self.dir)
        config = read_json(self.dir / "config.json") if (self.dir / "config.json").is_file() else {}
        self.label = self.dir.name
        self.pair = f"{Path(config.get('base_model', '?')).name} -> {Path(config.get('aligned_model', '?')).name}"


def format_table(header: list[str], rows: list[list]) -> str:
    """The first column (labels) left-aligned, the numbers right-aligned."""
    return shared.format_table(header, rows, align="l" + "r" * (len(header) - 1))


def pct(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{100 * x:.1f}%"


def token_repr(text: str) -> str:
    return repr(text)[1:-1] if text.strip() else repr(text)


def pairs_table(analyses: list[Analysis]) -> tuple[str, dict]:
    summaries = {a.label: statistics.summarize(a.table) for a in analyses}
    rows = [[a.label, a.pair, s["num_examples"], s["num_positions"], *(pct(s[f"{n}_ratio"]) for n in CATEGORY_NAMES),
             pct(s["mean_example_shifted_ratio"]), f"{s['mean_kl_aligned_base']:.3f}",
             f"{s['mean_kl_base_aligned']:.3f}", pct(s["aligned_top1_ratio"])]
            for a, s in zip(analyses, summaries.values())]
    header = ["analysis", "base -> aligned", "examples", "tokens", *CATEGORY_NAMES, "shifted/example",
              "KL(a||b)", "KL(b||a)", "aligned top-1"]
    return format_table(header, rows), summaries


def overlap_tables(analyses: list[Analysis], summaries: dict) -> str:
    """Agreement of the base and aligned top-k lists: means per pair, then per position bucket."""
    rows = [[a.label, s["top_k"], *(f"{s[f'mean_{m}']:.3f}" for m in statistics.OVERLAP_METRICS)]
            for a, s in zip(analyses, summaries.values())]
    pooled = format_table(["analysis", "k", "Jaccard@k", "nDCG@k", "weighted overlap@k"], rows)
    profiles = {a.label: statistics.bucketed_position_profile(a.table) for a in analyses}
    labels = next(iter(profiles.values()))[0]
    rows = [[label] + [" / ".join(f"{p[m][i]:.3f}" for m in statistics.OVERLAP_METRICS)
                       for _, p in profiles.values()] for i, label in enumerate(labels)
            if any(p["count"][i] for _, p in profiles.values())]
    by_position = format_table(["position"] + [f"{a.label}: Jaccard / nDCG / weighted" for a in analyses], rows)
    return pooled + "\n\n" + by_position


def shifted_tokens_table(analysis: Analysis, top: int) -> tuple[str, list[dict]]:
    tokens = statistics.most_shifted_tokens(analysis.table["token_id"], analysis.table["category"], top)
    total = max(1, int((analysis.table["category"] == 2).sum()))
    rows = [[token_repr(analysis.vocab.get(t["token_id"], "?")), t["shifted"], t["occurrences"],
             pct(t["shifted_share"]), pct(t["shifted"] / total)] for t in tokens]
    for t in tokens:
        t["token"] = analysis.vocab.get(t["token_id"], "?")
    return format_table(["token", "shifted", "occurrences", "shifted share", "of all shifted"], rows), tokens


def by_position_tables(analyses: list[Analysis], relative_bins: int) -> tuple[str, dict]:
    profiles = {a.label: statistics.bucketed_position_profile(a.table) for a in analyses}
    labels = next(iter(profiles.values()))[0]
    rows = [[label] + [f"{pct(p['shifted_rate'][i])} / {p['kl_aligned_base'][i]:.3f} (n={p['count'][i]})"
                       for _, p in profiles.values()] for i, label in enumerate(labels)
            if any(p["count"][i] for _, p in profiles.values())]
    absolute = format_table(["position"] + [f"{a.label}: shifted / KL(a||b)" for a in analyses], rows)
    relative = {a.label: statistics.relative_position_profile(a.table, relative_bins) for a in analyses}
    rows = [[f"{i / relative_bins:.1f}-{(i + 1) / relative_bins:.1f}"] +
            [f"{pct(p['shifted_rate'][i])} (n={p['count'][i]})" for p in relative.values()]
            for i in range(relative_bins) if any(p["count"][i] for p in relative.values())]
    relative_text = format_table(["relative position"] + [f"{a.label}: shifted" for a in analyses], rows)
    numbers = {"position_buckets": {k: {"labels": v[0], **{m: v[1][m].tolist() for m in v[1]}}
                                    for k, v in profiles.items()},
               "relative_position": {k: {m: v[m].tolist() for m in v} for k, v in relative.items()}}
    return absolute + "\n\n" + relative_text, numbers


# ----------------------------------------------------------------------------------------------
# Plots


def plot_all(analyses: list[Analysis], plots_dir: Path, *, max_position: int, relative_bins: int) -> list[Path]:
    plt = shared.pyplot()
    from matplotlib.ticker import MaxNLocator

    written = []
    pairs = "\n".join(f"{a.label}: {a.pair}" for a in analyses)  # base -> aligned model of each analysis

    def save(fig, name: str) -> None:
        written.append(shared.save_figure(fig, plots_dir / name))

    fig, ax = plt.subplots(figsize=(3.2 + 1.4 * len(analyses), 3.8))
    width = 0.8 / len(CATEGORY_NAMES)
    for k, name in enumerate(CATEGORY_NAMES):
        values = [statistics.category_ratios(a.table["category"])[name] * 100 for a in analyses]
        ax.bar(np.arange(len(analyses)) + (k - 1) * width, values, width, label=name)
    ax.set_xticks(np.arange(len(analyses)), [f"{a.label}\n(n={len(a.table['category'])} positions)"
                                             for a in analyses], rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("% of positions")
    ax.set_title(pairs, fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    save(fig, "tds_category_ratios.png")

    # Later positions average fewer responses (only those that long): the last panel shows how many.
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for a in analyses:
        p = statistics.absolute_position_profile(a.table, max_position)
        axes[0].plot(np.arange(max_position), p["shifted_rate"] * 100, label=a.label)
        axes[1].plot(np.arange(max_position), p["kl_aligned_base"], label=a.label)
        axes[2].plot(np.arange(max_position), p["base_prob"], label=a.label)
        axes[3].plot(np.arange(max_position), p["count"], label=a.label)
    for ax, ylabel in zip(axes, ("shifted positions (%)", "mean KL(aligned || base) (nats)",
                                 "mean P_base(aligned token) (probability)", "responses averaged at t (n)")):
        ax.set_xlabel("response position t (tokens)")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[3].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(pairs, fontsize=10)
    save(fig, "tds_by_position.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    centers = (np.arange(relative_bins) + 0.5) / relative_bins
    for a in analyses:
        ax.plot(centers, statistics.relative_position_profile(a.table, relative_bins)["shifted_rate"] * 100,
                marker="o", label=a.label)
    ax.set_xlabel("relative position in the response (t / length)")
    ax.set_ylabel("shifted positions (%)")
    ax.set_title(pairs, fontsize=8)
    ax.legend(fontsize=8, loc="best")
    save(fig, "tds_by_relative_position.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for a in analyses:
        ratios = statistics.per_example(a.table)["shifted_ratio"]
        ax.hist(ratios[np.isfinite(ratios)] * 100, bins=20, range=(0, 100), alpha=0.5, label=a.label)
    ax.set_xlabel("shifted positions per example (%)")
    ax.set_ylabel("examples")
    ax.set_title(pairs, fontsize=8)
    ax.legend(fontsize=8, loc="best")
    save(fig, "tds_example_shift_ratios.png")
    return written


def analysis_dirs(experiments_dir: str | None) -> list[Path]:
    if experiments_dir is None:
        return []
    found = shared.find_runs(experiments_dir, "tds", legacy=lambda config: "aligned_model" in config)
    if not found.finished:
        raise ConfigError(f"{experiments_dir}: no finished tds run (config.json and summary.json) found"
                          + (f"; {len(found.unfinished)} unfinished" if found.unfinished else ""))
    return [run.dir for run in found.finished]


def default_plots_dir(dirs: list[Path]) -> Path:
    return dirs[0] if len(dirs) == 1 else dirs[0].parent / "tds_comparison"


@dataclass
class ResultsOptions:
    analysis_dir: list[str] = option([], help="finished python -m tds run directories")
    experiments_dir: Optional[str] = option(None, help="or: every finished tds run under this directory")
    plots_dir: Optional[str] = option(None)
    top_tokens: int = option(15, min=1, help="rows of each most-shifted-tokens table")
    max_position: int = option(100, min=1, help="x range of the by-position plots")
    relative_bins: int = option(10, min=1, help="buckets of the relative-position table and plot")


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_options("python -m tds.results", __doc__.splitlines()[0], ResultsOptions, argv)
    analyses = [Analysis(d) for d in args.analysis_dir + analysis_dirs(args.experiments_dir)]
    if not analyses:
        raise ConfigError("give --analysis_dir DIR [DIR ...] or --experiments_dir DIR")
    plots_dir = Path(args.plots_dir) if args.plots_dir else default_plots_dir([a.dir for a in analyses])
    text, summaries = pairs_table(analyses)
    print("Token distribution shift (share of response positions)\n" + text)
    print("\nTop-k agreement of the base and aligned next-token lists (AlignTDS's Jaccard, nDCG, weighted "
          "overlap)\n" + overlap_tables(analyses, summaries))
    tokens = {}
    for a in analyses:
        table_text, tokens[a.label] = shifted_tokens_table(a, args.top_tokens)
        print(f"\nMost frequently shifted tokens: {a.label}\n{table_text}")
    text, by_position = by_position_tables(analyses, args.relative_bins)
    print(f"\nShift rate and KL by position\n{text}")
    plots = plot_all(analyses, plots_dir, max_position=args.max_position, relative_bins=args.relative_bins)
    write_json(plots_dir / "tds_results.json", {"summaries": summaries, "most_shifted_tokens": tokens, **by_position})
    print(f"\nwrote {', '.join(p.name for p in plots)} and tds_results.json to {plots_dir}")


if __name__ == "__main__":
    main()
