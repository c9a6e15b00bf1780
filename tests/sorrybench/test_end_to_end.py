"""The study end to end on the tiny chat model: preference set, refusal rates, DPO runs, results."""
import json
import math
from pathlib import Path

import pytest
import torch

from ches.similarity_file import append_rows
from common.data import tokenize_preference
from common.models import load_model_and_tokenizer
from common.plans import run_plan
from common.registry import SCORERS
from common.tracking import read_json, read_jsonl
from sorrybench import create_dataset, evaluate_refusal, results
from sorrybench.config import SorryBenchConfig
from sorrybench.fixtures import OUTPUT_DIR
from sorrybench.run import run

NUM_PROMPTS = 40  # each tenth has no gold pair: 36 kept -> 31 train / int(0.15 * 36) = 5 test pairs
KEPT = 36


@pytest.fixture(scope="module")
def dataset(tiny_models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sorrybench") / "dataset"
    create_dataset.main(["--model", tiny_models["chat"], "--judge", "keyword_refusal",
                         "--prompts", str(OUTPUT_DIR / "prompts_sample.jsonl"), "--max_prompts", str(NUM_PROMPTS),
                         "--max_new_tokens", "32", "--batch_size", "40", "--output_dir", str(out),
                         "--human_judgments", str(OUTPUT_DIR / "human_judgments_sample.jsonl")])
    return out


def test_preference_set_from_the_models_own_samples(dataset):
    samples = read_jsonl(dataset / "samples.jsonl")
    train, test = read_jsonl(dataset / "train.jsonl"), read_jsonl(dataset / "test.jsonl")
    summary = read_json(dataset / "summary.json")
    assert len(samples) == KEPT and (len(train), len(test)) == (31, 5)
    assert summary["prompts_dropped_without_gold"] == NUM_PROMPTS - KEPT
    assert all(s["question_id"] % 10 for s in samples)  # the prompts without gold were dropped before sampling
    judge = SCORERS.make("keyword_refusal")
    for s in samples:  # the stored scores are the judge's scores of the stored responses
        assert s["scores"] == judge.score([s["prompt"]] * 2, s["responses"])
    scores = [x for s in samples for x in s["scores"]]
    assert (summary["refusals"], summary["compliances"], summary["unparseable"]) == \
        (scores.count(0.0), scores.count(1.0), 0)
    assert 0 < summary["refusals"] < 2 * KEPT  # tiny-chat refuses often, not always
    by_id = {s["question_id"]: s for s in samples}
    ties = 0
    for row in train + test:
        s = by_id[row["question_id"]]
        assert sorted([row["chosen"], row["rejected"]]) == sorted(s["responses"])
        assert row["chosen_score"] <= row["rejected_score"]  # the refusal is preferred
        ties += s["scores"][0] == s["scores"][1]
    assert summary["ties"] == ties and summary["tie_breaker"] == "random"
    # gold: every kept prompt has a gold pair (as the public code, which drops the others before splitting)
    gold_train, gold_test = read_jsonl(dataset / "gold_train.jsonl"), read_jsonl(dataset / "gold_test.jsonl")
    assert [g["question_id"] for g in gold_train] == [r["question_id"] for r in train]
    assert [g["question_id"] for g in gold_test] == [r["question_id"] for r in test]
    assert all(judge.score(["p", "p"], [g["chosen"], g["rejected"]]) == [0.0, 1.0] for g in gold_train + gold_test)


def test_same_seed_same_preference_set(dataset, tiny_models, tmp_path):
    create_dataset.main(["--model", tiny_models["chat"], "--judge", "keyword_refusal",
                         "--prompts", str(OUTPUT_DIR / "prompts_sample.jsonl"), "--max_prompts", str(NUM_PROMPTS),
                         "--max_new_tokens", "32", "--batch_size", "40", "--output_dir", str(tmp_path),
                         "--human_judgments", str(OUTPUT_DIR / "human_judgments_sample.jsonl")])
    assert (tmp_path / "train.jsonl").read_text() == (dataset / "train.jsonl").read_text()


def test_evaluate_refusal_cli(dataset, tiny_models, tmp_path, capsys):
    argv = ["--models", tiny_models["chat"], "--dataset_path", str(dataset), "--output_dir", str(tmp_path),
            "--judge", "keyword_refusal", "--max_new_tokens", "24", "--max_prompts", "5"]
    evaluate_refusal.main(argv)
    out_dir = next(tmp_path.iterdir())
    rates = read_json(out_dir / "refusal_rates.json")["rates"]
    for split in ("train", "test"):
        rows = read_jsonl(out_dir / f"responses_{split}.jsonl")
        assert len(rows) == 5 and rates[split]["num_prompts"] == 5
        assert rates[split]["refusal_rate"] == pytest.approx(1 - sum(r["score"] for r in rows) / 5)
    evaluate_refusal.main(argv)  # measured already: skipped
    assert "(earlier result)" in capsys.readouterr().out


def naive_logprob(model, prompt_ids, completion_ids) -> float:
    """Summed log-prob of the completion, one example at a time with a full log-softmax."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
    targets = ids[0, 1:]
    start = len(prompt_ids) - 1
    return logprobs[start:, :].gather(-1, targets[start:, None]).sum().item()


def test_runner_end_to_end(dataset, tiny_models, tmp_path):
    train = read_jsonl(dataset / "train.jsonl")
    ln_ches = [math.sin(3.7 * i) for i in range(len(train))]  # hand-made similarity file, keyed by row
    append_rows(tmp_path / "sim" / "preference_similarities.jsonl",
                [{"index": i, "ln_ches": v, "ches": 0.0} for i, v in enumerate(ln_ches)])
    base = {"model": tiny_models["chat"], "dataset_path": str(dataset), "judge": "keyword_refusal",
            "outputs_dir": str(tmp_path / "runs"), "max_length": 256, "lr": 1e-4, "batch_size": 8, "max_steps": 2,
            "refusal_max_new_tokens": 24, "refusal_max_prompts": 6, "eval_batch_size": 16}
    plan = {"name": "tiny", "configurations": [
        {"base_config": {**base, "experiment_name": "dpo"}},
        {"base_config": {**base, "similarity_path": str(tmp_path / "sim"), "num_samples": 5,
                         "experiment_name": "lowest"}}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    run_plan(tmp_path / "plan.json", SorryBenchConfig, run)

    dpo, lowest = tmp_path / "runs" / "dpo", tmp_path / "runs" / "lowest"
    records = read_jsonl(dpo / "metrics.jsonl")
    refusal = {(r["phase"], r["split"]): r for r in records if r["kind"] == "refusal"}
    assert sorted(refusal) == [("after", "test"), ("after", "train"), ("before", "test"), ("before", "train")]
    assert refusal["before", "train"]["step"] == 0 and refusal["after", "train"]["step"] == 2
    for phase in ("before", "after"):
        rows = read_jsonl(dpo / f"refusal_{phase}" / "responses_test.jsonl")
        assert refusal[phase, "test"]["refusal_rate"] == pytest.approx(1 - sum(r["score"] for r in rows) / len(rows))
    evals = {(r["split"], r["step"]): r for r in records if r["kind"] == "eval"}
    assert sorted(evals) == [("test", 0), ("test", 2), ("train", 0), ("train", 2)]
    assert evals["train", 0]["preferred_logprobs_change_mean"] == 0.0
    assert evals["train", 2]["preferred_logprobs_change_mean"] != 0.0
    # the test split's reference log-probs are the initial model's, computed here one pair at a time
    model, tokenizer = load_model_and_tokenizer(tiny_models["chat"])
    test_rows = read_jsonl(dataset / "test.jsonl")
    pairs = [tokenize_preference(tokenizer, r["prompt"], r["chosen"], r["rejected"]) for r in test_rows]
    expected = sum(naive_logprob(model, p.prompt_ids, p.chosen_ids) for p in pairs) / len(pairs)
    assert evals["test", 0]["ref_preferred_logprobs_mean"] == pytest.approx(expected, abs=1e-3)
    summary = read_json(dpo / "summary.json")
    assert summary["setting"] == "dpo" and summary["num_examples"] == 31
    assert summary["refusal_after"]["train"]["refusal_rate"] == refusal["after", "train"]["refusal_rate"]

    lowest_k = sorted(range(len(train)), key=lambda i: ln_ches[i])[:5]
    assert read_json(lowest / "train_indices.json") == lowest_k
    assert read_json(lowest / "summary.json")["setting"] == "ln_ches_lowest_5"

    results.main(["--experiments_dir", str(tmp_path / "runs")])
    assert (tmp_path / "runs" / "refusal_rates.png").stat().st_size > 0
    rows = results.aggregate(results.find_runs(tmp_path / "runs"))
    assert [(r["setting"], r["runs"]) for r in rows] == [("dpo", 1), ("ln_ches_lowest_5", 1)]
    assert rows[0]["test_before"] == refusal["before", "test"]["refusal_rate"]


@pytest.mark.slow
def test_two_processes_share_the_refusal_sampling(dataset, tiny_models, tmp_path):
    """Under torchrun (gloo on CPU) each process samples half the prompts; the main one judges them all."""
    import os
    import subprocess
    import sys

    plan = {"configurations": [{"base_config": {
        "model": tiny_models["chat"], "dataset_path": str(dataset), "judge": "keyword_refusal",
        "outputs_dir": str(tmp_path / "runs"), "max_length": 256, "lr": 1e-4, "batch_size": 8, "max_steps": 1,
        "refusal_max_new_tokens": 16, "refusal_max_prompts": 5, "experiment_name": "ddp"}}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--nproc_per_node", "2", "-m", "sorrybench", "--plan_config_path",
                           str(tmp_path / "plan.json")], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir = tmp_path / "runs" / "ddp"
    for phase in ("before", "after"):
        rates = read_json(run_dir / f"refusal_{phase}" / "refusal_rates.json")["rates"]
        for split in ("train", "test"):
            rows = read_jsonl(run_dir / f"refusal_{phase}" / f"responses_{split}.jsonl")
            assert len(rows) == 5 and all(r["response"] is not None for r in rows)
            assert rates[split]["refusal_rate"] == pytest.approx(1 - sum(r["score"] for r in rows) / 5)
    assert read_json(run_dir / "summary.json")["refusal_after"]["test"]["num_prompts"] == 5
