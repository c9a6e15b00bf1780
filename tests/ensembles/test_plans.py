"""The shipped plans expand into valid runs; the tiny one names models and data that exist here."""
from pathlib import Path

import pytest

from common.plans import expand_plan, load_plan
from ensembles.collect import Member
from ensembles.config import EnsembleConfig

PLANS = sorted((Path(__file__).resolve().parents[2] / "ensembles" / "experiments_plans").glob("*.json"))


@pytest.mark.parametrize("plan", PLANS, ids=[p.stem for p in PLANS])
def test_plans_expand(plan):
    runs = expand_plan(load_plan(plan), EnsembleConfig, str(plan))
    assert runs and all(len(r.config.pool) >= 4 for r in runs)


def test_the_tiny_plan_uses_the_tiny_models_and_the_fixture(tiny_models):
    repo = PLANS[0].parents[2]
    (run,) = expand_plan(load_plan(repo / "ensembles/experiments_plans/ensembles_tiny.json"), EnsembleConfig)
    assert (repo / run.config.dataset_path).is_file()
    assert all((repo / Member.of(entry).model / "config.json").is_file() for entry in run.config.pool)
