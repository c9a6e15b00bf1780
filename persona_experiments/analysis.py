"""Reading finished Persona runs and the statistics the results printer shows (pure functions).

A run set is the runs of one model (and SFT checkpoint), objective and token pair under one output
directory, e.g. the 10 seeds of `outputs/persona/olmo1b_post_sft_dpo_yes_vs_no`. Values are indexed
by step s = 0..N, where step s is measured after s optimizer steps (s = 0: the initial model).
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from common import results as common_results
from common.tracking import read_json
from persona_experiments.next_token import TOKEN_METRICS_FILE

PRINTED_STEPS = (1, 5, 10, 25, 50, 100)
PRINTED_TOP_K = (1, 2, 3)
GEOMETRY_KEYS = ("preferred_norm", "dispreferred_norm", "inner_product", "dispreferred_projection",
                 "dispreferred_orthogonal_norm", "hidden_margin", "hidden_norm", "hidden_change_norm")


@dataclass
class PersonaRun:
    run_dir: Path
    config: dict
    metrics: dict  # token_metrics.json: one list per quantity, indexed by step

    @property
    def name(self) -> str:
        return self.run_dir.name

    def token(self, token_id: int) -> str:
        return self.metrics["token_strings"][str(token_id)]


@dataclass
class RunSet:
    directory: Path
    runs: list[PersonaRun] = field(default_factory=list)

    @property
    def config(self) -> dict:
        return self.runs[0].config


def find_runs(experiments_dir: str | Path) -> tuple[list[PersonaRun], list[Path], list[Path]]:
    """Finished tracked runs under `experiments_dir` (any depth), plus the unfinished run directories
    and the finished ones without token metrics (e.g. SFT runs)."""
    found = common_results.find_runs(experiments_dir, "persona_experiments")
    runs = [PersonaRun(r.dir, r.config, read_json(r.dir / TOKEN_METRICS_FILE)) for r in found.finished
            if (r.dir / TOKEN_METRICS_FILE).is_file()]
    untracked = [r.dir for r in found.finished if not (r.dir / TOKEN_METRICS_FILE).is_file()]
    return runs, found.unfinished, untracked


def group_runs(runs: Sequence[PersonaRun]) -> list[RunSet]:
    """Run sets: same parent directory, model, checkpoint, objective and token pair."""
    groups: dict[tuple, RunSet] = {}
    for run in runs:
        c = run.config
        key = (str(run.run_dir.parent), c["model"], c["load_model_checkpoint"], c["objective"],
               c["preferred_token"], c["dispreferred_token"])
        groups.setdefault(key, RunSet(run.run_dir.parent)).runs.append(run)
    return [groups[k] for k in sorted(groups)]


# ----------------------------------------------------------------------------------------------
# Per-run statistics


def first_decrease_step(values: Sequence[float]) -> Optional[int]:
    """The first step s >= 1 with v_s < v_{s-1}, or None if the values never decrease."""
    for s in range(1, len(values)):
        if values[s] < values[s - 1]:
            return s
    return None


def loss_increased(losses: Sequence[float]) -> bool:
    """Whether the loss rose at some step (the paper's printer leaves such runs out)."""
    return any(b > a for a, b in zip(losses, losses[1:]))


@dataclass
class Drop:
    amount: float  # v_i - v_j >= 0
    start_step: int  # i
    end_step: int  # j
    start_value: float
    end_value: float


def max_drop(values: Sequence[float]) -> Drop:
    """The largest decrease max over i <= j of v_i - v_j (0 at i = j = 0 if the values never fall).

    Ties go to the smallest j, then the smallest i (as in the paper's printer). O(n) with a running
    maximum instead of the n x n difference matrix.
    """
    best = Drop(0.0, 0, 0, values[0], values[0])
    peak_step = 0
    for j in range(1, len(values)):
        if values[j] > values[peak_step]:
            peak_step = j
        if values[peak_step] - values[j] > best.amount:
            best = Drop(values[peak_step] - values[j], peak_step, j, values[peak_step], values[j])
    return best


@dataclass
class RisenToken:
    token: str
    probs: list[float]  # its probability at every step


def most_risen_other_token(run: PersonaRun) -> Optional[RisenToken]:
    """The token other than y+ and y- whose probability rose most from step 0 to the last step (None
    if the top-k risers are only y+ and y-, or the run has no step)."""
    pair = {run.metrics["preferred_id"], run.metrics["dispreferred_id"]}
    final_top = run.metrics["top_increase_ids"][-1]
    for token_id, probs in zip(final_top, run.metrics["final_top_increase_prob_series"]):
        if token_id not in pair:
            return RisenToken(run.token(token_id), probs)
    return None


# ----------------------------------------------------------------------------------------------
# Run-set statistics


@dataclass
class TokenCount:
    token: str
    count: int  # runs with this token among their top-k risers
    mean_increase: float  # mean probability increase since step 0 over those runs


def top_risers(runs: Sequence[PersonaRun], step: int, k: int, key: str = "top_increase") -> list[TokenCount]:
    """Tokens among the top-k probability increases since step 0 at `step`, by count then increase.
    `key` picks another ranking the tracker stores as `<key>_ids` / `<key>_values` (e.g.
    "top_logprob_increase" for log-prob increases, "top_direction" for <W_z, W+ - W->).

    Counted by token id (as the paper's printer does): distinct tokens that decode to the same text
    (byte pieces decode to the same replacement character) stay apart, so no count exceeds the runs.
    """
    increases: dict[int, list[float]] = defaultdict(list)
    names: dict[int, str] = {}
    for run in runs:
        ids = run.metrics[f"{key}_ids"][step][:k]
        values = run.metrics[f"{key}_values"][step][:k]
        for token_id, value in zip(ids, values):
            increases[token_id].append(value)
            names[token_id] = run.token(token_id)
    counts = [TokenCount(names[i], len(v), statistics.fmean(v)) for i, v in increases.items()]
    return sorted(counts, key=lambda c: (-c.count, -c.mean_increase, c.token))


def distribution(values: Sequence[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "mean": statistics.fmean(values),
            "max": max(values)}


@dataclass
class MechanismStep:
    """The tracker's mechanism table at one step, averaged over runs (k = the tracked top-k)."""

    step: int
    preferred_prob_rank: float  # median over runs of the 0-based rank of y+ by probability
    preferred_prob_increase_rank: float  # ... by probability increase since step 0
    preferred_logprob_increase_rank: float  # ... by log-prob increase since step 0
    logprob_risers_direction: float  # mean <W_z, W+ - W-> of the step's top-k log-prob risers
    prob_risers_direction: float  # ... of the step's top-k probability risers
    top_direction: float  # mean of the k largest <W_z, W+ - W->
    bottom_direction: float  # mean of the k smallest
    overlap_logprob: float  # mean count of the k largest-score tokens among the top-k log-prob risers
    overlap_prob: float  # ... among the top-k probability risers
    k: int


def has_mechanism(run: PersonaRun) -> bool:
    """Runs tracked before the mechanism table existed lack it; the printer then leaves it out."""
    return "top_direction_ids" in run.metrics


def mechanism_step(runs: Sequence[PersonaRun], step: int) -> MechanismStep:
    m = [r.metrics for r in runs]

    def median(key: str) -> float:
        return statistics.median(x[key][step] for x in m)

    def mean_of_means(key: str) -> float:
        return statistics.fmean(statistics.fmean(x[key][step]) for x in m)

    return MechanismStep(step, median("preferred_prob_rank"), median("preferred_prob_increase_rank"),
                         median("preferred_logprob_increase_rank"),
                         mean_of_means("step_top_logprob_increase_direction"),
                         mean_of_means("step_top_increase_direction"), mean_of_means("top_direction_values"),
                         mean_of_means("bottom_direction_values"),
                         statistics.fmean(x["direction_overlap_logprob"][step] for x in m),
                         statistics.fmean(x["direction_overlap_prob"][step] for x in m),
                         len(m[0]["top_direction_ids"][step]))


@dataclass
class RunSetSummary:
    """Everything the results printer shows for one run set."""

    total_runs: int
    excluded_loss_increase: list[str]  # names of runs left out because their loss rose at some step
    runs: list[str]
    fell: int  # runs whose y+ probability fell at some step (vs the previous step)
    below_initial_at_end: int  # runs whose final y+ probability is below the initial one
    first_fall_steps: list[int]  # per run that fell: the first step s >= 1 with P_s(y+) < P_{s-1}(y+)
    prob_drops: list[Drop]
    risen_tokens: list[Optional[RisenToken]]  # per run: the other token that rose most by the end
    logprob_drops: list[Drop]
    top_risers: dict[tuple[int, int], list[TokenCount]]  # (step, k) -> tokens, by probability increase
    top_logprob_risers: dict[tuple[int, int], list[TokenCount]]  # the same by log-prob increase
    mechanism: list[MechanismStep]  # per printed step; empty for runs tracked without it
    top_direction: list[TokenCount]  # the tokens with the largest <W_z, W+ - W-> (initial unembedding)
    bottom_direction: list[TokenCount]  # ... the smallest
    geometry_initial: dict[str, float]  # mean over runs at step 0
    geometry_final: dict[str, float]  # mean over runs at the last step


def summarize(run_set: RunSet, *, exclude_loss_increase: bool = True, steps: Sequence[int] = PRINTED_STEPS,
              top_k: Sequence[int] = PRINTED_TOP_K) -> RunSetSummary:
    excluded = [r.name for r in run_set.runs if loss_increased(r.metrics["loss"])] if exclude_loss_increase else []
    runs = [r for r in run_set.runs if r.name not in excluded]
    probs = [r.metrics["preferred_prob"] for r in runs]
    firsts = [first_decrease_step(p) for p in probs]
    last_step = min((len(p) - 1 for p in probs), default=0)
    shown = [s for s in steps if s <= last_step] if runs else []
    tracked = bool(runs) and all(has_mechanism(r) for r in runs) and last_step >= 1
    k_tracked = len(runs[0].metrics["top_direction_ids"][1]) if tracked else 0
    return RunSetSummary(
        total_runs=len(run_set.runs), excluded_loss_increase=excluded, runs=[r.name for r in runs],
        fell=sum(f is not None for f in firsts),
        below_initial_at_end=sum(p[-1] < p[0] for p in probs),
        first_fall_steps=[f for f in firsts if f is not None],
        prob_drops=[max_drop(p) for p in probs],
        risen_tokens=[most_risen_other_token(r) for r in runs],
        logprob_drops=[max_drop(r.metrics["preferred_logprob"]) for r in runs],
        top_risers={(s, k): top_risers(runs, s, k) for s in shown for k in top_k},
        top_logprob_risers={(s, k): top_risers(runs, s, k, "top_logprob_increase") for s in shown for k in top_k}
        if tracked else {},
        mechanism=[mechanism_step(runs, s) for s in shown] if tracked else [],
        top_direction=top_risers(runs, 1, k_tracked, "top_direction") if tracked else [],
        bottom_direction=sorted(top_risers(runs, 1, k_tracked, "bottom_direction"),
                                key=lambda c: (-c.count, c.mean_increase)) if tracked else [],
        geometry_initial={key: statistics.fmean(r.metrics[key][0] for r in runs)
                          for key in GEOMETRY_KEYS} if runs else {},
        geometry_final={key: statistics.fmean(r.metrics[key][-1] for r in runs)
                        for key in GEOMETRY_KEYS} if runs else {})
