"""Every shipped plan expands into valid runs with distinct directories."""
from pathlib import Path

import pytest

from common.plans import expand_plan, load_plan
from pref_similarity.config import QuantileRunConfig

PLANS = sorted((Path(__file__).resolve().parents[2] / "pref_similarity" / "experiments_plans").glob("*.json"))


@pytest.mark.parametrize("path", PLANS, ids=[p.stem for p in PLANS])
def test_plan_expands(path):
    runs = expand_plan(load_plan(path), QuantileRunConfig, str(path))
    measures = {r.config.similarity_measure for r in runs}
    assert {r.config.quantile for r in runs} == {0, 0.25, 0.5, 0.75, 1}
    assert {"ches", "minus_normalized_edit_distance", "last_hidden_inner_prod"} <= measures
    if not path.stem.startswith("tiny"):  # the paper's settings
        assert len(runs) == 30 and all(r.config.lr == 1e-7 and r.config.batch_size == 32 and r.config.beta == 0.1
                                       and r.config.preference_num_samples == 512 for r in runs)
