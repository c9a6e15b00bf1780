"""One PNG per run set: y+ / y- / most-risen-token probability and y+ log-prob change over steps."""
from __future__ import annotations

import re
from pathlib import Path

from common.results import pyplot, save_figure
from persona_experiments.analysis import RunSet, loss_increased, most_risen_other_token


def slug(token: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "", token) or "tok"


def natural_key(name: str) -> list:
    """seed_2 before seed_10: digits compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def plot_run_set(run_set: RunSet, *, exclude_loss_increase: bool = True) -> Path:
    """Write `persona_<y+>_vs_<y->.png` into the run set's directory (one line per run); return its path.

    Runs the results table leaves out (training loss rose at some step) are drawn dashed and grey and
    named in the legend, so the plot shows the same runs the table counts plus the excluded ones marked.
    """
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    c = run_set.config
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    panels = [(axes[0, 0], f"P(y+ = {c['preferred_token']!r})", "probability"),
              (axes[0, 1], f"P(y- = {c['dispreferred_token']!r})", "probability"),
              (axes[1, 0], "P(the token other than y+, y- that rose most by the end)", "probability"),
              (axes[1, 1], "log P(y+) - log P_init(y+)", "log-prob change (nats)")]
    excluded = 0
    for run in sorted(run_set.runs, key=lambda r: natural_key(r.name)):
        m = run.metrics
        risen = most_risen_other_token(run)
        left_out = exclude_loss_increase and loss_increased(m["loss"])
        excluded += left_out
        style = {"lw": 1, "ls": "--", "color": "grey", "alpha": 0.7} if left_out else {"lw": 1}
        line, = panels[0][0].plot(m["step"], m["preferred_prob"], **style)
        style["color"] = line.get_color()
        panels[1][0].plot(m["step"], m["dispreferred_prob"], **style)
        if risen is not None:
            note = " (left out: loss rose)" if left_out else ""
            panels[2][0].plot(m["step"], risen.probs, label=f"{run.name}: {risen.token!r}{note}", **style)
        panels[3][0].plot(m["step"], m["preferred_logprob_change"], **style)
    for ax, title, ylabel in panels:
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[1]:
        ax.set_xlabel("optimizer steps")
    if axes[1, 0].get_legend_handles_labels()[0]:
        axes[1, 0].legend(fontsize=6, ncol=2, loc="best")
    steps = len(run_set.runs[0].metrics["step"]) - 1
    shown = len(run_set.runs) - excluded
    fig.suptitle(f"{c['model']}{' (after SFT)' if c['load_model_checkpoint'] else ''}: {c['objective']} "
                 f"(beta {c['beta']:g}), {c['optimizer']} lr {c['lr']:g}, {steps} steps; "
                 f"{shown} runs" + (f" + {excluded} left out (dashed grey)" if excluded else ""), fontsize=11)
    path = run_set.directory / f"persona_{slug(c['preferred_token'])}_vs_{slug(c['dispreferred_token'])}.png"
    return save_figure(fig, path, dpi=110)
