"""A tiny resistance run: slices, successive checkpoints, generations, forward/inverse pairs, resume."""
import pytest

from common.models import load_model_and_tokenizer
from common.plans import run_plan
from common.tracking import read_json, read_jsonl
from elasticity.compression import compression_rate
from elasticity.datasets import load_examples
from elasticity.resistance import make_slices
from elasticity.run import PlanConfig, run
from tests.elasticity.conftest import SOURCES, write_plan

NUM_GENERATED, HELD = 10, 3


@pytest.fixture(scope="module")
def resistance_run(tiny_base, tmp_path_factory):
    out = tmp_path_factory.mktemp("resistance")
    config = {"experiment": "resistance", "model": tiny_base, "outputs_dir": str(out), "experiment_name": "res",
              "dataset": "alpaca", "data_sources": SOURCES, "compression_datasets": ["text"],
              "prompt_prefix": "Question: ", "prompt_suffix": "\nAnswer:\n", "lr": 1e-3, "batch_size": 4,
              "num_epochs": 1, "max_length": 256, "num_heldout": 12, "slice_size": 8,
              "num_generation_prompts": NUM_GENERATED, "num_generation_heldout": HELD, "max_new_tokens": 12,
              "num_compression_examples": 6, "eval_batch_size": 8}
    plan = write_plan(out / "plan.json", config)
    run_plan(plan, PlanConfig, run)
    return out / "res", plan


def test_make_slices_are_consecutive_and_disjoint():
    pool = load_examples("alpaca", SOURCES["alpaca"])[:30]
    slices = make_slices(pool, 3, -1, "src")
    assert [len(s) for s in slices] == [10, 10, 10]
    assert [e.index for s in slices for e in s] == [e.index for e in pool]
    assert [len(s) for s in make_slices(pool, 3, 4, "src")] == [4, 4, 4]
    with pytest.raises(Exception, match="cannot make 3 slices of 11"):
        make_slices(pool, 3, 11, "src")


def test_checkpoints_are_successive(resistance_run):
    run_dir, _ = resistance_run
    summaries = [read_json(run_dir / f"theta{k}" / "summary.json") for k in (1, 2, 3)]
    assert [s["num_examples"] for s in summaries] == [8, 8, 8]
    for earlier, later in zip(summaries, summaries[1:]):  # th_k starts where th_{k-1} ended
        for name in ("alpaca", "text"):
            assert later["compression"][name]["initial"]["bits_per_token"] == pytest.approx(
                earlier["compression"][name]["final"]["bits_per_token"], rel=1e-5)
    prompts = [[r["prompt"] for r in read_jsonl(run_dir / f"theta{k}" / "generations.jsonl")] for k in (1, 2, 3)]
    assert len(prompts[0]) == NUM_GENERATED and prompts[0] == prompts[1] == prompts[2]
    assert prompts[0][0].startswith("Question: ") and prompts[0][0].endswith("\nAnswer:\n")


def test_pairs_train_each_checkpoint_on_the_others_responses(resistance_run):
    run_dir, _ = resistance_run
    summary = read_json(run_dir / "summary.json")
    assert [(p["k"], p["l"]) for p in summary["pairs"]] == [(1, 2), (1, 3), (2, 3)]
    assert summary["comparisons"] == 3
    assert summary["inverse_lower"] == sum(p["inverse"]["token_loss_mean"] < p["forward"]["token_loss_mean"]
                                           for p in summary["pairs"])
    a, b = 3, 1  # inverse: th3 fine-tuned on th1's responses
    pair = read_json(run_dir / "pairs" / f"theta{a}_to_theta{b}" / "summary.json")
    assert ((pair["model"], pair["data"], pair["direction"], pair["num_examples"])
            == (3, 1, "inverse", NUM_GENERATED - HELD))
    # Its "target" set is th1's held-out responses, scored by th3 before training: recompute independently.
    model, tokenizer = load_model_and_tokenizer(str(run_dir / "theta3" / "model"))
    rows = read_jsonl(run_dir / "theta1" / "generations.jsonl")[NUM_GENERATED - HELD:]
    expected = compression_rate(model, tokenizer, [(r["prompt"], r["response"]) for r in rows], batch_size=2)
    initial = pair["compression"]["target"]["initial"]
    assert initial["bits_per_token"] == pytest.approx(expected.bits_per_token, rel=1e-4)
    assert initial["bits_per_byte"] == pytest.approx(expected.bits_per_byte, rel=1e-4)
    train = [r for r in read_jsonl(run_dir / "pairs" / "theta3_to_theta1" / "metrics.jsonl") if r["kind"] == "train"]
    losses = [r["loss"] * r["examples"] / r["response_tokens"] for r in train]
    assert pair["token_loss_mean"] == pytest.approx(sum(losses) / len(losses))
    row = next(p for p in summary["pairs"] if (p["k"], p["l"]) == (1, 3))
    assert row["inverse"]["token_loss_mean"] == pair["token_loss_mean"]


def test_rerun_skips_and_a_missing_stage_is_redone(resistance_run):
    run_dir, plan = resistance_run
    stage = run_dir / "pairs" / "theta2_to_theta3"
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("summary.json")}
    run_plan(plan, PlanConfig, run)  # finished: nothing runs
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("summary.json")} == before
    (stage / "summary.json").unlink()
    (run_dir / "summary.json").unlink()
    (stage / "metrics.jsonl").unlink()
    run_plan(plan, PlanConfig, run)
    after = {p: p.stat().st_mtime_ns for p in run_dir.rglob("summary.json")}
    changed = {p.relative_to(run_dir) for p in after if after[p] != before.get(p)}
    assert {str(p) for p in changed} == {"summary.json", "pairs/theta2_to_theta3/summary.json"}
