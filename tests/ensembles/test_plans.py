"""The shipped plans expand into valid runs; the tiny ones name models and data that exist here."""
from pathlib import Path

import pytest

from common.plans import expand_plan, load_plan
from ensembles.collect import Member
from ensembles.config import EnsembleConfig
from ensembles.h3fusion_config import ExpertConfig, FusionConfig
from ensembles.run import PlanConfig

REPO = Path(__file__).resolve().parents[2]
PLANS = sorted((REPO / "ensembles" / "experiments_plans").glob("*.json"))


@pytest.mark.parametrize("plan", PLANS, ids=[p.stem for p in PLANS])
def test_plans_expand(plan):
    runs = expand_plan(load_plan(plan), PlanConfig, str(plan))
    assert runs
    kinds = {type(r.config) for r in runs}
    if plan.stem.startswith("h3fusion"):
        assert [r.config.expert for r in runs if isinstance(r.config, ExpertConfig)] == ["helpful", "harmless",
                                                                                        "honest"]
        (fusion,) = [r for r in runs if isinstance(r.config, FusionConfig)]
        experts = {str(r.run_dir) for r in runs if isinstance(r.config, ExpertConfig)}
        assert set(fusion.config.expert_dirs().values()) == experts  # the templated defaults name the experts
    else:
        assert kinds == {EnsembleConfig} and all(len(r.config.pool) >= 4 for r in runs)


def test_the_tiny_plan_uses_the_tiny_models_and_the_fixture(tiny_models):
    (run,) = expand_plan(load_plan(REPO / "ensembles/experiments_plans/ensembles_tiny.json"), EnsembleConfig)
    assert (REPO / run.config.dataset_path).is_file()
    assert all((REPO / Member.of(entry).model / "config.json").is_file() for entry in run.config.pool)


def test_the_tiny_h3fusion_plan_names_the_fixtures(tiny_models):
    runs = expand_plan(load_plan(REPO / "ensembles/experiments_plans/h3fusion_tiny.json"), PlanConfig)
    for run in runs:
        assert (REPO / run.config.model / "config.json").is_file()
        assert sorted(run.config.data_sources) == ["harmless", "helpful", "honest", "honest_mc"]
        assert all((REPO / path).is_dir() for path in run.config.data_sources.values())
