"""Hand-written finished runs on disk, for the analysis and the results printer."""
import math

import pytest

from common.tracking import write_json

TOKENS = {"1": " Yes", "2": " No", "3": " Never", "4": " Sure", "5": " Maybe"}
GEOMETRY = ("preferred_norm", "dispreferred_norm", "inner_product", "dispreferred_projection",
            "dispreferred_orthogonal_norm", "hidden_margin", "hidden_norm", "hidden_change_norm")


def write_run(run_dir, preferred_prob, loss, top_ids, top_values, *, final_geometry=2.0, pos=2, neg=3,
              config=None, finished=True):
    """A run with steps 0..len(preferred_prob)-1 and hand-picked values; top_* lists start at step 1."""
    n = len(preferred_prob)
    metrics = {"step": list(range(n)), "loss": loss, "preferred_prob": preferred_prob,
               "preferred_logprob": [math.log(p) for p in preferred_prob], "dispreferred_prob": [0.3] * n,
               "preferred_logprob_change": [math.log(p / preferred_prob[0]) for p in preferred_prob],
               "preferred_id": pos, "dispreferred_id": neg, "token_strings": TOKENS,
               "top_increase_ids": [[]] + top_ids, "top_increase_values": [[]] + top_values,
               "top_increase_probs": [[]] + [[0.1] * len(t) for t in top_ids],
               "final_top_increase_prob_series": [[0.05, 0.1, 0.2 + i] for i in range(len(top_ids[-1]))]}
    metrics.update({key: [1.0, 1.5, final_geometry] for key in GEOMETRY})
    config = {"model": "m", "load_model_checkpoint": "", "objective": "dpo", "preferred_token": " No",
              "dispreferred_token": " Never", "beta": 0.1, "optimizer": "rmsprop", "lr": 1e-7, **(config or {})}
    write_json(run_dir / "config.json", config)
    write_json(run_dir / "token_metrics.json", metrics)
    if finished:
        write_json(run_dir / "summary.json", {"status": "finished"})


@pytest.fixture
def runs_dir(tmp_path):
    """runs/no_vs_never: a, b, c (c's loss rises at step 2) and an unfinished run; runs/sft: an SFT run;
    runs/yes_vs_no/nested/d: a run of another pair."""
    root = tmp_path / "runs"
    pair = root / "no_vs_never"
    # a: y+ = No falls from step 1 on (0.6 -> 0.5 -> 0.4); Yes rises most.
    write_run(pair / "a", [0.6, 0.5, 0.4], [0.69, 0.6, 0.5], [[1, 2, 5], [1, 5, 4]],
              [[0.05, 0.01, 0.005], [0.1, 0.02, 0.01]])
    # b: No rises, then falls below its start: largest drop 0.7 -> 0.5 (steps 1 -> 2).
    write_run(pair / "b", [0.6, 0.7, 0.5], [0.69, 0.5, 0.4], [[2, 1, 4], [1, 4, 5]],
              [[0.1, 0.05, 0.001], [0.2, 0.03, 0.02]])
    # c: the loss rises at step 2 (0.5 -> 0.55): left out by default.
    write_run(pair / "c", [0.6, 0.7, 0.8], [0.69, 0.5, 0.55], [[2, 4, 5], [2, 4, 5]],
              [[0.1, 0.01, 0.001], [0.2, 0.05, 0.01]], final_geometry=4.0)
    write_run(pair / "unfinished", [0.6, 0.1, 0.1], [0.69, 0.6, 0.5], [[1], [1]], [[0.1], [0.2]], finished=False)
    write_json(root / "sft" / "tiny_sft" / "config.json", {"objective": "cross_entropy"})
    write_json(root / "sft" / "tiny_sft" / "summary.json", {"status": "finished"})
    write_run(root / "yes_vs_no" / "nested" / "d", [0.2, 0.3, 0.4], [0.69, 0.6, 0.5], [[1, 3, 5], [1, 3, 5]],
              [[0.1, 0.01, 0.001], [0.2, 0.05, 0.01]], pos=1, neg=2,
              config={"preferred_token": " Yes", "dispreferred_token": " No"})
    return root
