"""The public runner's eval extras (issue 13 item 10): each figure against an independent computation.

Set figures (eval loss, pi_logratios_mean, reference probabilities and their changes) are checked
against a float64 per-example loop over unpadded sequences; the generation eval's KL estimates are
recomputed from the sampled tokens it records, by separate unbatched forwards of the final and the
initial model.
"""
import math
import re

import pytest
import torch

from common.config import from_dict
from common.errors import ConfigError
from common.losses import make_loss
from common.models import load_model
from common.preference_data import Tokenization, tokenize_pairs
from common.tracking import read_json, read_jsonl
from pref_similarity.__main__ import main as plan_main
from pref_similarity.config import QuantileRunConfig
from pref_similarity.eval_extras import kl_estimates, scored_token_logprobs, set_metrics, up_to_stop
from pref_similarity.preference_sets import load_preference_set
from tests.pref_similarity.conftest import PLAIN
from tests.pref_similarity.test_run import naive_logps, similarities, write_plan  # noqa: F401 (fixture)

K, BATCH, PROMPTS = 8, 4, 3


def test_set_metrics_are_the_public_formulas_on_constructed_log_probs():
    chosen, rejected = torch.tensor([-1.0, -2.5, -0.25]), torch.tensor([-1.5, -2.0, -3.0])
    ref_chosen, ref_rejected = torch.tensor([-1.25, -2.0, -0.5]), torch.tensor([-1.0, -2.25, -2.0])
    examples = [type("E", (), {"chosen_ids": [1] * 3, "rejected_ids": [1] * 2})() for _ in range(3)]
    loss = make_loss(from_dict(QuantileRunConfig, {"model": "m", "dataset": "d", "similarity_path": "s",
                                                   "objective": "dpo", "beta": 0.1}))
    m = set_metrics(loss, examples, chosen, rejected, ref_chosen, ref_rejected)
    c, r, rc, rr = (t.tolist() for t in (chosen, rejected, ref_chosen, ref_rejected))
    # public: -logsigmoid(kl_coeff * (pi_logratio - ref_logratio)).mean() over the whole set
    dpo = [math.log1p(math.exp(-0.1 * ((c[i] - r[i]) - (rc[i] - rr[i])))) for i in range(3)]
    assert m["loss"] == pytest.approx(sum(dpo) / 3, rel=1e-6)
    assert m["pi_logratios_mean"] == pytest.approx((0.5 - 0.5 + 2.75) / 3, rel=1e-6)
    mean_exp = lambda xs: sum(math.exp(x) for x in xs) / 3  # noqa: E731
    assert m["ref_preferred_probs_mean"] == pytest.approx(mean_exp(rc), rel=1e-9)
    assert m["ref_dispreferred_probs_mean"] == pytest.approx(mean_exp(rr), rel=1e-9)
    assert m["preferred_probs_change_mean"] == pytest.approx(mean_exp(c) - mean_exp(rc), rel=1e-6)
    assert m["dispreferred_probs_change_mean"] == pytest.approx(mean_exp(r) - mean_exp(rr), rel=1e-6)


def test_kl_estimates_are_pooled_token_and_per_sequence_means():
    policy = [torch.tensor([-1.0, -2.0]), torch.tensor([-0.5, -1.0, -3.0])]
    reference = [torch.tensor([-1.5, -1.0]), torch.tensor([-0.5, -2.0, -2.0])]
    m = kl_estimates(policy, reference)
    ratios = [0.5, -1.0, 0.0, 1.0, -1.0]  # policy - reference, token by token, both sequences
    assert m["generation_policykl"] == pytest.approx(sum(ratios) / 5)
    assert m["generation_approxkl"] == pytest.approx(sum(0.5 * x * x for x in ratios) / 5)
    assert m["generation_sequence_policykl"] == pytest.approx(((0.5 - 1.0) + (0.0 + 1.0 - 1.0)) / 2)
    assert m["generation_sequence_approxkl"] == pytest.approx((0.5 * (0.25 + 1) + 0.5 * (0 + 1 + 1)) / 2)
    assert m["generation_logprobs_mean"] == pytest.approx(-7.5 / 5)
    assert m["generation_ref_logprobs_mean"] == pytest.approx(-7.0 / 5)


def test_a_response_ends_at_its_first_stop_token():
    assert up_to_stop([5, 6, 2, 0, 0], {2}) == [5, 6, 2]
    assert up_to_stop([2, 2], {2}) == [2]
    assert up_to_stop([5, 6], {2}) == [5, 6]  # max_new_tokens reached


@torch.no_grad()
def test_scored_token_logprobs_equal_unpadded_forwards(tiny_chat):
    model, _ = tiny_chat
    contexts, scored = [[3, 17, 9], [4], [8, 8, 8, 8, 8]], [[11, 12], [5, 6, 7, 21], [2]]
    batched = scored_token_logprobs(model, contexts, scored, pad_id=0, batch_size=2)
    for got, context, tokens in zip(batched, contexts, scored):
        ids = torch.tensor([context + tokens])
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
        expected = [logp[len(context) - 1 + k, t].item() for k, t in enumerate(tokens)]
        assert got.tolist() == pytest.approx(expected, abs=1e-4)


def test_generation_eval_with_fsdp_is_refused():
    with pytest.raises(ConfigError, match="generation_eval.*set generation_eval false"):
        from_dict(QuantileRunConfig, {"model": "m", "dataset": "d", "similarity_path": "s", "fsdp": True})


@torch.no_grad()
def naive_token_logps(model, context, tokens):
    ids = torch.tensor([context + tokens])
    logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    return torch.tensor([logp[len(context) - 1 + k, t].item() for k, t in enumerate(tokens)], dtype=torch.float64)


def run_plan(tmp_path, tiny_models, similarities, **options):  # noqa: F811
    base = {"model": tiny_models["chat"], "dataset": str(PLAIN), "similarity_path": str(similarities),
            "similarity_measure": "ches", "quantile": 1, "preference_num_samples": K, "batch_size": BATCH,
            "lr": 1e-3, "max_length": 256, "save_model": True, "generation_eval_prompts": PROMPTS,
            "generation_eval_max_new_tokens": 24, "outputs_dir": str(tmp_path / "runs"), "experiment_name": "run",
            **options}
    plan_main(["--plan_config_path", write_plan(tmp_path / "plan.json", base, {})])
    return tmp_path / "runs" / "run"


def test_plan_run_logs_the_extras_as_the_public_runner_computes_them(tiny_models, tiny_chat, similarities,  # noqa: F811
                                                                    tmp_path):
    run_dir = run_plan(tmp_path, tiny_models, similarities)
    initial, tokenizer = tiny_chat
    final = load_model(str(run_dir / "model"))
    examples, _ = tokenize_pairs(load_preference_set(str(PLAIN)).rows, tokenizer, Tokenization(max_length=256),
                                 source="fixture")
    by_index = {e.index: e for e in examples}
    selected = [r["index"] for r in read_jsonl(run_dir / "selected_examples.jsonl")]
    subset = [by_index[i] for i in selected]
    before, after = naive_logps(initial, subset), naive_logps(final, subset)
    records = read_jsonl(run_dir / "metrics.jsonl")
    evals = [r for r in records if r["kind"] == "eval"]
    generations = [r for r in records if r["kind"] == "generation"]
    assert [r["step"] for r in evals] == [r["step"] for r in generations] == [0, 2]

    for record, policy in zip(evals, (before, after)):
        z = (policy - before)[:, 0] - (policy - before)[:, 1]
        assert record["loss"] == pytest.approx((-torch.nn.functional.logsigmoid(0.1 * z)).mean().item(), abs=1e-4)
        assert record["pi_logratios_mean"] == pytest.approx((policy[:, 0] - policy[:, 1]).mean().item(), abs=1e-3)
        for k, name in enumerate(("preferred", "dispreferred")):
            assert record[f"ref_{name}_probs_mean"] == pytest.approx(before[:, k].exp().mean().item(), rel=1e-3)
            assert record[f"{name}_probs_change_mean"] == pytest.approx(
                (policy[:, k].exp().mean() - before[:, k].exp().mean()).item(), rel=1e-3, abs=1e-12)
    assert evals[1]["loss"] < evals[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)

    # The prompts of the first training batch: the trainer's seeded permutation of epoch 0 (seed 0).
    first_batch = torch.randperm(K, generator=torch.Generator().manual_seed(0)).tolist()[:BATCH]
    stops = {initial.generation_config.eos_token_id}  # tiny-chat: <|end|>, its EOS and end of turn
    for record, generation, policy_model in zip(evals, generations, (initial, final)):
        rows = generation["responses"]
        assert [r["index"] for r in rows] == [selected[i] for i in first_batch[:PROMPTS]]
        ratios, lengths = [], []
        for row in rows:
            ids, prompt = row["response_ids"], by_index[row["index"]].prompt_ids
            assert len(ids) == 24 or (ids[-1] in stops and not stops & set(ids[:-1]))
            assert row["response"] == tokenizer.decode(ids, skip_special_tokens=True)
            ratios.append(naive_token_logps(policy_model, prompt, ids) - naive_token_logps(initial, prompt, ids))
            lengths.append(len(ids))
        pooled = torch.cat(ratios)
        assert record["generation_policykl"] == pytest.approx(pooled.mean().item(), abs=1e-4)
        assert record["generation_approxkl"] == pytest.approx((0.5 * pooled ** 2).mean().item(), abs=1e-5)
        assert record["generation_sequence_policykl"] == pytest.approx(
            sum(r.sum().item() for r in ratios) / PROMPTS, abs=1e-3)
        assert record["generation_sequence_approxkl"] == pytest.approx(
            sum((0.5 * r ** 2).sum().item() for r in ratios) / PROMPTS, abs=1e-4)
        assert record["generation_token_lengths_mean"] == pytest.approx(sum(lengths) / PROMPTS)
        assert (record["generation_token_lengths_min"], record["generation_token_lengths_max"]) == (
            min(lengths), max(lengths))
        words = [len(re.findall("[a-zA-Z_]+", r["response"])) for r in rows]
        assert record["generation_word_lengths_mean"] == pytest.approx(sum(words) / PROMPTS)
    assert evals[0]["generation_policykl"] == pytest.approx(0, abs=1e-5)  # the policy is the reference
    assert abs(evals[1]["generation_sequence_policykl"]) > 1e-3  # lr 1e-3 moved the policy

    summary = read_json(run_dir / "summary.json")["eval"]["train"]
    assert {k: summary[k] for k in ("loss", "pi_logratios_mean", "generation_policykl")} == {
        k: evals[1][k] for k in ("loss", "pi_logratios_mean", "generation_policykl")}


def test_public_kl_positions_and_prompt_cut(tiny_models, tiny_chat, similarities, tmp_path):  # noqa: F811
    """`prompt_and_response` scores every token after the first, prompt included (the public runner's
    positions, without its padding); `generation_eval_max_prompt_length` keeps the prompt's first tokens."""
    run_dir = run_plan(tmp_path, tiny_models, similarities, max_steps=1,
                       generation_eval_kl_tokens="prompt_and_response", generation_eval_max_prompt_length=6)
    initial, tokenizer = tiny_chat
    final = load_model(str(run_dir / "model"))
    examples, _ = tokenize_pairs(load_preference_set(str(PLAIN)).rows, tokenizer, Tokenization(max_length=256),
                                 source="fixture")
    by_index = {e.index: e for e in examples}
    records = read_jsonl(run_dir / "metrics.jsonl")
    final_eval = [r for r in records if r["kind"] == "eval"][-1]
    rows = [r for r in records if r["kind"] == "generation"][-1]["responses"]
    ratios = []
    for row in rows:
        tokens = by_index[row["index"]].prompt_ids[:6] + row["response_ids"]
        context, scored = tokens[:1], tokens[1:]
        ratios.append(naive_token_logps(final, context, scored) - naive_token_logps(initial, context, scored))
    assert final_eval["generation_policykl"] == pytest.approx(torch.cat(ratios).mean().item(), abs=1e-4)
    assert final_eval["generation_sequence_approxkl"] == pytest.approx(
        sum((0.5 * r ** 2).sum().item() for r in ratios) / PROMPTS, abs=1e-4)


def test_generation_eval_off_keeps_the_set_figures(tiny_models, similarities, tmp_path):  # noqa: F811
    run_dir = run_plan(tmp_path, tiny_models, similarities, max_steps=1, generation_eval=False)
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert not [r for r in records if r["kind"] == "generation"]
    final_eval = [r for r in records if r["kind"] == "eval"][-1]
    assert "pi_logratios_mean" in final_eval and not [k for k in final_eval if k.startswith("generation_")]


def test_with_lora_the_reference_is_the_policy_without_its_adapters(tiny_models, similarities, tmp_path):  # noqa: F811
    run_dir = run_plan(tmp_path, tiny_models, similarities, lr=1e-2, save_model=False,
                       lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    start, end = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    assert start["generation_policykl"] == pytest.approx(0, abs=1e-6)
    assert abs(end["generation_sequence_policykl"]) > 1e-3  # adapters on (policy) vs off (reference)
