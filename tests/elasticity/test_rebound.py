"""A tiny rebound sweep: stage bookkeeping, KL chaining, the scorer plug-in, Table 3, keep_models."""
import json

import pytest

from common.plans import run_plan
from common.tracking import read_json, read_jsonl
from elasticity.config import ReboundConfig
from elasticity.datasets import load_splits
from elasticity.rebound import rebound_fraction, threshold_crossing
from elasticity.run import PlanConfig, run
from tests.elasticity.conftest import SOURCES, KeywordSentiment, write_plan
from tiny.corpus.reviews import sentiment_score

POSITIVE, NEGATIVE = [4, 8], [2, 6]


@pytest.fixture(scope="module")
def rebound_run(tiny_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("rebound")
    config = {"experiment": "rebound", "model": tiny_base, "outputs_dir": str(out), "experiment_name": "reb",
              "dataset": "imdb", "data_sources": SOURCES, "scorer": {"type": "test_keyword_sentiment"},
              "lr": 1e-3, "batch_size": 4, "num_epochs": 1, "max_length": 256, "num_heldout": 20,
              "positive_sizes": POSITIVE, "negative_sizes": NEGATIVE, "num_test_prompts": 6, "num_kl_examples": 6,
              "max_new_tokens": 12, "num_compression_examples": 6, "keep_models": False, "kl_epsilon": 0.05,
              "prompt_prefix": "Review: "}
    KeywordSentiment.prompts_seen.clear()
    run_plan(write_plan(out / "plan.json", config), PlanConfig, run)
    (out / "scorer_prompts.json").write_text(json.dumps(KeywordSentiment.prompts_seen))
    return out / "reb"


def test_stages_and_chaining(rebound_run):
    stages = {p: read_json(rebound_run / f"positive_{p}" / "summary.json") for p in POSITIVE}
    for p, positive in stages.items():
        assert positive["num_examples"] == p
        assert positive["kl"]["initial"] == pytest.approx(0.0, abs=1e-6)  # starts from the base model itself
        for n in NEGATIVE:
            negative = read_json(rebound_run / f"positive_{p}" / f"negative_{n}" / "summary.json")
            assert negative["num_examples"] == n
            # Negative SFT starts from th_P: its first KL and compression are th_P's last ones.
            assert negative["kl"]["initial"] == pytest.approx(positive["kl"]["final"], rel=1e-5)
            assert negative["compression"]["imdb_positive"]["initial"]["bits_per_token"] == pytest.approx(
                positive["compression"]["imdb_positive"]["final"]["bits_per_token"], rel=1e-5)
        assert not (rebound_run / f"positive_{p}" / "model").exists()  # keep_models: false


def test_scores_come_from_the_plugged_scorer(rebound_run):
    summary = read_json(rebound_run / "summary.json")
    rows = read_jsonl(rebound_run / "base" / "generations.jsonl")
    assert len(rows) == 6
    assert all(r["score"] == sentiment_score(r["response"]) for r in rows)
    assert summary["base_score"] == pytest.approx(sum(r["score"] for r in rows) / 6)
    rows = read_jsonl(rebound_run / "positive_8" / "negative_6" / "generations.jsonl")
    curve = next(c for c in summary["curves"] if c["positive"] == 8)
    assert curve["points"][-1]["score"] == pytest.approx(sum(r["score"] for r in rows) / 6)


def test_table3_is_computed_from_the_stage_numbers(rebound_run):
    summary = read_json(rebound_run / "summary.json")
    assert [c["positive"] for c in summary["curves"]] == POSITIVE
    for curve in summary["curves"]:
        kls = [curve["kl_after_positive"]] + [p["kl"] for p in curve["points"]]
        assert curve["negatives_to_kl_epsilon"] == threshold_crossing([0, *NEGATIVE], kls, 0.05)
        assert curve["rebound_fraction"] == rebound_fraction(summary["base_score"], curve["score_after_positive"],
                                                             curve["points"][0]["score"])
    assert summary["num_parameters"] > 0


def test_scorer_reads_the_dataset_prompt_without_the_prompt_template(rebound_run):
    # The model answers "Review: <first words>"; a scorer with its own template (the BeaverTails cost model's
    # "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{response}") must get the bare prompt, not the
    # formatted one, or it would read the template twice. 1 base + 2 positive + 4 negative stages, 6 prompts each.
    stored = read_json(rebound_run / "config.json")
    assert stored.pop("study") == "elasticity" and "data_sources.imdb" in stored.pop("data_files")
    config = ReboundConfig(**stored)
    questions = [e.prompt for e in load_splits(config).heldout[:6]]
    seen = json.loads((rebound_run.parent / "scorer_prompts.json").read_text())
    assert seen == questions * 7 and not any(q.startswith("Review: ") for q in questions)
    rows = read_jsonl(rebound_run / "base" / "generations.jsonl")
    assert [r["prompt"] for r in rows] == ["Review: " + q for q in questions]
