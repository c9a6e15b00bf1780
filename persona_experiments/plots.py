"""One PNG per run set: y+ / y- / most-risen-token probability and y+ log-prob change over steps."""
from __future__ import annotations

import re
from pathlib import Path

from persona_experiments.analysis import RunSet, most_risen_other_token


def slug(token: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "", token) or "tok"


def plot_run_set(run_set: RunSet) -> Path:
    """Write `persona_<y+>_vs_<y->.png` into the run set's directory (one line per run); return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = run_set.config
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    panels = [(axes[0, 0], f"P(y+ = {c['preferred_token']!r})"), (axes[0, 1], f"P(y- = {c['dispreferred_token']!r})"),
              (axes[1, 0], "P(the token other than y+, y- that rose most by the end)"),
              (axes[1, 1], "log P(y+) - log P_init(y+)")]
    for run in run_set.runs:
        m = run.metrics
        risen = most_risen_other_token(run)
        line, = panels[0][0].plot(m["step"], m["preferred_prob"], lw=1)
        panels[1][0].plot(m["step"], m["dispreferred_prob"], lw=1, color=line.get_color())
        if risen is not None:
            panels[2][0].plot(m["step"], risen.probs, lw=1, color=line.get_color(),
                              label=f"{run.name}: {risen.token!r}")
        panels[3][0].plot(m["step"], m["preferred_logprob_change"], lw=1, color=line.get_color())
    for ax, title in panels:
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("optimizer step")
    axes[1, 0].legend(fontsize=6, ncol=2)
    fig.suptitle(f"{c['model']}{' (after SFT)' if c['load_model_checkpoint'] else ''}: {c['objective']}, "
                 f"{len(run_set.runs)} runs", fontsize=11)
    fig.tight_layout()
    path = run_set.directory / f"persona_{slug(c['preferred_token'])}_vs_{slug(c['dispreferred_token'])}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
