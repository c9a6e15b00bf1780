"""token_shifts against a brute-force per-position computation (one forward per prefix, float64)."""
import math

import numpy as np
import pytest
import torch

from common.errors import DataError
from tds.analysis import COLUMNS, _rows_per_block, categorize, compare_distributions, token_shifts
from tests.conftest import random_gemma2, random_llama


def brute_force(base, aligned, base_prompts, aligned_prompts, responses, top_k):
    """Per position: one full forward over the prefix per model, ranks by counting, KL by summing."""
    rows = []
    for i, response in enumerate(responses):
        for t, token in enumerate(response):
            dists = []
            for model, prompt in ((base, base_prompts[i]), (aligned, aligned_prompts[i])):
                logits = model(torch.tensor([list(prompt) + list(response[:t])])).logits[0, -1].double().numpy()
                logp = logits - np.log(np.exp(logits - logits.max()).sum()) - logits.max()
                rank = sum(1 for v in range(len(logits)) if logits[v] > logits[token])
                dists.append((logits, logp, rank))
            (lb, logp_b, rank_b), (la, logp_a, rank_a) = dists
            p_b, p_a = np.exp(logp_b), np.exp(logp_a)
            rows.append({
                "example": i, "position": t, "token_id": token, "base_rank": rank_b, "aligned_rank": rank_a,
                "base_logprob": logp_b[token], "aligned_logprob": logp_a[token],
                "kl_aligned_base": sum(p_a[v] * (logp_a[v] - logp_b[v]) for v in range(len(p_a))),
                "kl_base_aligned": sum(p_b[v] * (logp_b[v] - logp_a[v]) for v in range(len(p_b))),
                "base_entropy": -sum(p * math.log(p) for p in p_b),
                "aligned_entropy": -sum(p * math.log(p) for p in p_a),
                "category": 0 if rank_b == 0 else (1 if rank_b <= 2 else 2),
                "base_topk_ids": np.argsort(-lb, kind="stable")[:top_k],
                "aligned_topk_ids": np.argsort(-la, kind="stable")[:top_k],
                "base_topk_logprobs": np.sort(logp_b)[::-1][:top_k],
                "aligned_topk_logprobs": np.sort(logp_a)[::-1][:top_k]})
    return rows


def ranked_response(model, prompt, length):
    """Token t is the model's (t mod 4)-th most likely next token: base ranks 0, 1, 2, 3, 0, ..."""
    ids = list(prompt)
    for t in range(length):
        logits = model(torch.tensor([ids])).logits[0, -1]
        ids.append(int(torch.argsort(logits, descending=True)[t % 4]))
    return ids[len(prompt):]


@pytest.fixture(scope="module")
def pair():
    """Two different models sharing a 97-token vocabulary: a Llama and a soft-capped Gemma-2."""
    base, aligned = random_llama(seed=0), random_gemma2(seed=1)
    with torch.no_grad():  # sharper distributions than at initialisation, so ranks and KLs vary
        base.lm_head.weight.mul_(40)
    g = torch.Generator().manual_seed(3)
    base_prompts = [torch.randint(3, 97, (n,), generator=g).tolist() for n in (4, 1, 7, 2)]
    aligned_prompts = [torch.randint(3, 97, (n,), generator=g).tolist() for n in (6, 3, 2, 5)]
    with torch.no_grad():
        responses = [ranked_response(base, p, n) for p, n in zip(base_prompts, (9, 5, 0, 12))]
    return base, aligned, base_prompts, aligned_prompts, responses


def test_matches_brute_force_per_position(pair):
    base, aligned, base_prompts, aligned_prompts, responses = pair
    top_k = 5
    ours = token_shifts(base, aligned, base_prompts, aligned_prompts, responses, top_k=top_k, batch_size=3)
    with torch.no_grad():
        expected = brute_force(base, aligned, base_prompts, aligned_prompts, responses, top_k)
    assert set(ours) == set(COLUMNS)
    assert len(ours["example"]) == len(expected) == 9 + 5 + 12  # the empty response has no positions
    for j, row in enumerate(expected):
        for key in ("example", "position", "token_id", "base_rank", "aligned_rank", "category"):
            assert ours[key][j] == row[key], (key, j)
        for key in ("base_logprob", "aligned_logprob", "kl_aligned_base", "kl_base_aligned", "base_entropy",
                    "aligned_entropy"):
            assert ours[key][j] == pytest.approx(row[key], rel=1e-4, abs=1e-5), (key, j)
        for key in ("base_topk_ids", "aligned_topk_ids"):
            np.testing.assert_array_equal(ours[key][j], row[key])
        for key in ("base_topk_logprobs", "aligned_topk_logprobs"):
            np.testing.assert_allclose(ours[key][j], row[key], rtol=1e-4, atol=1e-5)
    # The responses were built so that token t has base rank t mod 4: categories 0, 1, 1, 2, 0, ...
    np.testing.assert_array_equal(ours["base_rank"], ours["position"] % 4)
    np.testing.assert_array_equal(ours["category"], np.array([0, 1, 1, 2])[ours["position"] % 4])
    assert (ours["kl_aligned_base"] > 0).all() and (ours["kl_base_aligned"] > 0).all()


def test_padding_batching_and_chunking_do_not_change_numbers(pair, monkeypatch):
    base, aligned, base_prompts, aligned_prompts, responses = pair
    reference = token_shifts(base, aligned, base_prompts, aligned_prompts, responses, batch_size=8)
    for kwargs in ({"batch_size": 1}, {"batch_size": 2, "padding_side": "left"},
                   {"batch_size": 3, "positions_per_chunk": 2}, {"block_rows": 3},
                   {"block_rows": 5, "positions_per_chunk": 7}):
        # block_rows: the statistics in blocks of 3 or 5 positions (on a CPU all 26 are one block by default)
        rows = kwargs.pop("block_rows", None)
        monkeypatch.setattr("tds.analysis._rows_per_block", (lambda logits: rows) if rows else _rows_per_block)
        other = token_shifts(base, aligned, base_prompts, aligned_prompts, responses, **kwargs)
        for key, values in reference.items():
            np.testing.assert_allclose(other[key], values, rtol=1e-5, atol=1e-5, err_msg=f"{key} {kwargs}")


def test_compare_distributions_hand_worked():
    """V = 3, target 1. P_base = (1/2, 1/4, 1/4), P_aligned = (1/4, 1/2, 1/4).

    base rank of token 1: one token (0) is more likely; token 2 ties and does not count -> rank 1, marginal.
    KL(a||b) = 1/4 ln(1/2) + 1/2 ln 2 + 0 = ln2 / 4 = KL(b||a); both entropies = 3/2 ln 2.
    """
    base = torch.tensor([[0.5, 0.25, 0.25]]).log() + 3.0  # a shift of the logits changes nothing
    aligned = torch.tensor([[0.25, 0.5, 0.25]]).log()
    out = compare_distributions(base, aligned, torch.tensor([1]), top_k=2)
    assert out["base_rank"].item() == 1 and out["aligned_rank"].item() == 0 and out["category"].item() == 1
    ln2 = math.log(2)
    assert out["kl_aligned_base"].item() == pytest.approx(ln2 / 4, abs=1e-6)
    assert out["kl_base_aligned"].item() == pytest.approx(ln2 / 4, abs=1e-6)
    assert out["base_entropy"].item() == pytest.approx(1.5 * ln2, abs=1e-6)
    assert out["base_logprob"].item() == pytest.approx(math.log(0.25), abs=1e-6)
    assert out["aligned_topk_ids"][0, 0].item() == 1  # then token 0 or 2 (tied)
    np.testing.assert_allclose(out["aligned_topk_logprobs"].numpy(), [[math.log(0.5), math.log(0.25)]], atol=1e-6)


def naive_row(base: np.ndarray, aligned: np.ndarray, target: int, top_k: int) -> dict:
    """One position in float64: ranks from a stable descending argsort, sums over the support only."""
    out = {}
    logps = {}
    for name, z in (("base", base), ("aligned", aligned)):
        ordered = z[np.argsort(-z, kind="stable")]
        out[f"{name}_rank"] = int(np.flatnonzero(ordered == z[target])[0])  # the first of its ties
        finite = z[np.isfinite(z)]
        logps[name] = z - (finite.max() + np.log(np.exp(finite - finite.max()).sum()))
        out[f"{name}_logprob"] = logps[name][target]
        out[f"{name}_topk_logprobs"] = np.sort(logps[name])[::-1][:top_k]
    for p_name, q_name, kl_name in (("aligned", "base", "kl_aligned_base"), ("base", "aligned", "kl_base_aligned")):
        logp, logq = logps[p_name], logps[q_name]
        support = [v for v in range(len(logp)) if logp[v] > -np.inf]
        out[f"{p_name}_entropy"] = -sum(math.exp(logp[v]) * logp[v] for v in support)
        out[kl_name] = sum(math.exp(logp[v]) * (logp[v] - logq[v]) for v in support)
    return out


def test_compare_distributions_matches_naive_float64_with_ties_and_zero_probabilities():
    """Logits on a 0.5 grid (many ties, also with the target), some -inf (probability 0, one KL infinite)."""
    g = torch.Generator().manual_seed(5)
    n, vocab, top_k = 41, 53, 7
    base = torch.randint(-16, 17, (n, vocab), generator=g).float() / 2
    aligned = torch.randint(-16, 17, (n, vocab), generator=g).float() / 2
    targets = torch.randint(0, vocab, (n,), generator=g)
    base[0, targets[0]] = aligned[1, targets[1]] = 8.0  # ranks 0, however many tie with them
    base[2:6, :10] = -float("inf")  # P_b(v) = 0 where P_a has mass: KL(a||b) = inf
    aligned[4:8, -5:] = -float("inf")  # and the other way round (rows 4-5: both)
    targets[2:6] = 20
    targets[6:8] = 0
    out = compare_distributions(base, aligned, targets, top_k=top_k)
    ties = 0
    for j in range(n):
        z_b, z_a, t = base[j].double().numpy(), aligned[j].double().numpy(), int(targets[j])
        ties += int((z_b == z_b[t]).sum() > 1)
        expected = naive_row(z_b, z_a, t, top_k)
        for key in ("base_rank", "aligned_rank"):
            assert out[key][j].item() == expected[key], (key, j)
        for key in ("base_logprob", "aligned_logprob", "base_entropy", "aligned_entropy", "kl_aligned_base",
                    "kl_base_aligned"):
            assert out[key][j].item() == pytest.approx(expected[key], rel=1e-5, abs=1e-6), (key, j)
        for name, z in (("base", z_b), ("aligned", z_a)):
            ids = out[f"{name}_topk_ids"][j].numpy()
            np.testing.assert_allclose(out[f"{name}_topk_logprobs"][j].numpy(), expected[f"{name}_topk_logprobs"],
                                       rtol=1e-5, atol=1e-6)
            assert len(set(ids)) == top_k and (z[ids] == np.sort(z)[::-1][:top_k]).all()  # any order among ties
    assert ties > n // 2
    rows = np.arange(n)
    np.testing.assert_array_equal(np.isinf(out["kl_aligned_base"].numpy()), (rows >= 2) & (rows < 6))
    np.testing.assert_array_equal(np.isinf(out["kl_base_aligned"].numpy()), (rows >= 4) & (rows < 8))
    assert out["category"].tolist() == [0 if r == 0 else 1 if r <= 2 else 2 for r in out["base_rank"].tolist()]


def test_zero_probability_tokens_give_finite_kl_one_way():
    """P_a puts no mass where P_b is 0: KL(a||b) is finite; KL(b||a) is +inf (b has mass a lacks)."""
    base = torch.tensor([[0.0, 0.0, -float("inf")]])
    aligned = torch.tensor([[0.0, -float("inf"), -float("inf")]])
    out = compare_distributions(base, aligned, torch.tensor([0]))
    assert out["kl_aligned_base"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert out["kl_base_aligned"].item() == float("inf")
    assert out["aligned_entropy"].item() == pytest.approx(0.0, abs=1e-7)


def test_categorize_thresholds():
    ranks = torch.tensor([0, 1, 2, 3, 10])
    assert categorize(ranks).tolist() == [0, 1, 1, 2, 2]
    assert categorize(ranks, unshifted_max_rank=1, marginal_max_rank=5).tolist() == [0, 0, 1, 1, 2]
    assert categorize(ranks, 0, 0).tolist() == [0, 2, 2, 2, 2]


def test_bad_inputs_are_clear_errors(pair):
    base, aligned, base_prompts, aligned_prompts, responses = pair
    with pytest.raises(DataError, match="example 1: an empty prompt"):
        token_shifts(base, aligned, [[5], []], [[5], [6]], [[7], [8]])
    with pytest.raises(DataError, match="outside the vocabulary"):
        token_shifts(base, aligned, [[5]], [[5]], [[7, 97]])
    bigger = random_llama(seed=2, vocab_size=101)
    with pytest.raises(DataError, match="give vocab_size"):
        token_shifts(base, bigger, [[5]], [[5]], [[7]])
    same = token_shifts(base, bigger, [[5]], [[5]], [[7]], vocab_size=97)  # compare the shared 97 tokens
    assert same["base_topk_ids"].max() < 97 and same["aligned_topk_ids"].max() < 97
