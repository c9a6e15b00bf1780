"""Print the Persona tables for a directory of runs and write the plots next to them.

    python -m persona_experiments.results --experiments_dir DIR [--keep_loss_increase] [--no_plots]
                                          [--num_tokens_to_print 20]

DIR holds finished runs, directly or nested (e.g. one sub-directory per token pair). For every run
set (same parent directory, model, checkpoint, objective and token pair) it prints: in how many runs
the y+ probability fell and at which step first, the largest drop of the y+ probability and
log-probability, the tokens whose probability and log-probability rose most at steps 1, 5, 10, 25, 50,
100 (top-1..3; up to --num_tokens_to_print tokens per line, 20 as the paper's printer), the mechanism
table (y+'s rank among all tokens; <W_z, W+ - W-> of the step's top risers and of the tokens scoring
highest and lowest, and how many of those are risers), and the unembedding / hidden-state geometry;
and writes `persona_<y+>_vs_<y->.png` into the run set's
directory. As the paper's printer does, runs whose training loss rose at some step are left out of
the statistics (and counted) unless --keep_loss_increase.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.cli import exit_on_user_error, parse_options
from common.config import option
from common.errors import DataError
from common.results import format_table
from persona_experiments.analysis import (
    GEOMETRY_KEYS,
    Drop,
    RunSet,
    RunSetSummary,
    TokenCount,
    distribution,
    find_runs,
    group_runs,
    summarize,
)

RULE = "-" * 100
GEOMETRY_LABELS = {"preferred_norm": "||W+||", "dispreferred_norm": "||W-||", "inner_product": "<W+, W->",
                   "dispreferred_projection": "<W+, W->/||W+|| (W- along W+)",
                   "dispreferred_orthogonal_norm": "||W- orthogonal to W+||", "hidden_margin": "<h, W+ - W->",
                   "hidden_norm": "||h||", "hidden_change_norm": "||h - h_init||"}


def describe(run_set: RunSet, base: Path) -> str:
    c = run_set.config
    try:
        where = run_set.directory.relative_to(base)
    except ValueError:
        where = run_set.directory
    start = f"{c['model']}" + (f" from checkpoint {c['load_model_checkpoint']}" if c["load_model_checkpoint"] else "")
    steps = len(run_set.runs[0].metrics["step"]) - 1
    return (f"run set {str(where) if str(where) != '.' else run_set.directory}: {len(run_set.runs)} runs\n"
            f"model {start}\n"
            f"{c['objective']} (beta {c['beta']:g}), {c['optimizer']} lr {c['lr']:g}, {steps} steps; "
            f"y+ {c['preferred_token']!r} vs y- {c['dispreferred_token']!r}")


def format_drop(d: Drop, digits: int) -> str:
    return (f"{d.amount:.{digits}f} ({d.start_value:.{digits}f} -> {d.end_value:.{digits}f}, "
            f"steps {d.start_step}->{d.end_step})")


def format_summary(s: RunSetSummary, num_tokens: int = 20) -> str:
    n = len(s.runs)
    lines = []
    if s.excluded_loss_increase:
        lines.append(f"left out, train loss rose at some step: {len(s.excluded_loss_increase)}/{s.total_runs} runs "
                     f"({', '.join(s.excluded_loss_increase)}); --keep_loss_increase keeps them")
    if not n:
        return "\n".join(lines + ["no runs left to summarize"])
    lines.append(f"y+ probability fell at some step (vs the step before): {s.fell}/{n} runs")
    lines.append(f"y+ probability below its initial value at the end:     {s.below_initial_at_end}/{n} runs")
    if s.first_fall_steps:
        d = distribution(s.first_fall_steps)
        lines.append(f"first step it fell: min {d['min']}, median {d['median']:g}, mean {d['mean']:.1f}, "
                     f"max {d['max']} "
                     f"(step s >= 1, the first with P_s(y+) < P_s-1(y+); the paper's printer counts from 0: s - 1)")
    lines += [RULE, "largest drop of y+, max over steps i <= j of v_i - v_j (v_0 = the initial value), and the "
                    "token other than y+, y- that rose most by the end:"]
    rows = []
    for name, p, lp, risen in zip(s.runs, s.prob_drops, s.logprob_drops, s.risen_tokens):
        other = f"{risen.token!r}: {risen.probs[0]:.4f} -> {risen.probs[-1]:.4f}" if risen else "-"
        rows.append([name, format_drop(p, 4), format_drop(lp, 4), other])

    def mean_drop(drops: list[Drop]) -> str:
        return (f"{sum(d.amount for d in drops) / n:.4f} ({sum(d.start_value for d in drops) / n:.4f} -> "
                f"{sum(d.end_value for d in drops) / n:.4f})")

    rows.append(["mean", mean_drop(s.prob_drops), mean_drop(s.logprob_drops), ""])
    lines.append(indent(format_table(["run", "probability", "log-probability", "other token: P first -> last"],
                                     rows)))
    lines += [RULE, "tokens whose probability rose most since step 0 "
                    "(token: runs with it in their top-k / mean probability increase):"]
    lines += [f"  step {step:>3} top-{k}: {token_cells(tokens, n, num_tokens)}"
              for (step, k), tokens in s.top_risers.items()]
    if s.top_logprob_risers:
        lines += [RULE, "tokens whose log-probability rose most since step 0 "
                        "(token: runs with it in their top-k / mean log-prob increase, nats):"]
        lines += [f"  step {step:>3} top-{k}: {token_cells(tokens, n, num_tokens)}"
                  for (step, k), tokens in s.top_logprob_risers.items()]
    if s.mechanism:
        lines += [RULE, format_mechanism(s, n, num_tokens)]
    lines += [RULE, "unembedding W+ = W[y+], W- = W[y-] and hidden state h at the answer position "
                    "(mean over runs):"]
    lines.append(indent(format_table(["", "initial", "final"], [
        [GEOMETRY_LABELS[key], s.geometry_initial[key], s.geometry_final[key]] for key in GEOMETRY_KEYS], digits=5)))
    return "\n".join(lines)


def token_cells(tokens: list[TokenCount], n: int, num_tokens: int) -> str:
    cells = ", ".join(f"{t.token!r}: {t.count}/{n} {t.mean_increase:+.2e}" for t in tokens[:num_tokens])
    return cells + (f", ... ({len(tokens) - num_tokens} more)" if len(tokens) > num_tokens else "")


def format_mechanism(s: RunSetSummary, n: int, num_tokens: int) -> str:
    """Why mass goes to a third token: D(z) = <W_z, W+ - W-> with the unembedding before each step."""
    k = s.mechanism[0].k
    rows = [[m.step, f"{m.preferred_prob_rank:g}", f"{m.preferred_prob_increase_rank:g}",
             f"{m.preferred_logprob_increase_rank:g}", m.logprob_risers_direction, m.prob_risers_direction,
             m.top_direction, m.bottom_direction, f"{m.overlap_logprob:.1f}/{k}", f"{m.overlap_prob:.1f}/{k}"]
            for m in s.mechanism]
    return "\n".join([
        f"mechanism, D(z) = <W_z, W+ - W-> with the unembedding before the step (k = {k}; ranks 0-based, "
        f"median over runs; D and overlaps mean over runs):",
        indent(format_table(["step", "y+ rank P", "rank P rise", "rank log P rise", "D step log-P risers",
                             "D step P risers", f"D top-{k}", f"D bottom-{k}", "top-D in log-P risers",
                             "top-D in P risers"], rows, digits=4)),
        f"  tokens with the largest D at step 0 (token: runs / mean D): "
        f"{token_cells(s.top_direction, n, num_tokens)}",
        f"  tokens with the smallest D at step 0: {token_cells(s.bottom_direction, n, num_tokens)}"])


def indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def print_results(experiments_dir: str, *, keep_loss_increase: bool = False, plots: bool = True,
                  num_tokens_to_print: int = 20) -> list[RunSetSummary]:
    runs, unfinished, untracked = find_runs(experiments_dir)
    if not runs:
        raise DataError(f"{experiments_dir}: no finished Persona preference runs (token_metrics.json) found"
                        + (f"; {len(unfinished)} unfinished" if unfinished else ""))
    base = Path(experiments_dir)
    print(f"{len(runs)} finished runs under {experiments_dir}"
          + (f"; skipped {len(unfinished)} unfinished" if unfinished else "")
          + (f"; {len(untracked)} finished runs without token metrics (SFT) not shown" if untracked else ""))
    summaries = []
    for run_set in group_runs(runs):
        summary = summarize(run_set, exclude_loss_increase=not keep_loss_increase)
        print("=" * 100)
        print(describe(run_set, base))
        print(RULE)
        print(format_summary(summary, num_tokens_to_print))
        if plots:
            from persona_experiments.plots import plot_run_set

            print(RULE)
            print(f"plot: {plot_run_set(run_set, exclude_loss_increase=not keep_loss_increase)}")
        summaries.append(summary)
    print("=" * 100)
    return summaries


@dataclass
class ResultsOptions:
    experiments_dir: str = option(help="directory of finished runs (may be nested)")
    keep_loss_increase: bool = option(False, help="keep runs whose training loss rose at some step (left out by "
                                                  "default, as in the paper)")
    no_plots: bool = option(False, help="print the tables only")
    num_tokens_to_print: int = option(20, min=1, help="tokens shown per top-k line (20 as the paper's printer)")


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_options("python -m persona_experiments.results", __doc__.splitlines()[0], ResultsOptions, argv)
    print_results(args.experiments_dir, keep_loss_increase=args.keep_loss_increase, plots=not args.no_plots,
                  num_tokens_to_print=args.num_tokens_to_print)


if __name__ == "__main__":
    main()
