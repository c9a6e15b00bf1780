"""TDS statistics: pure functions of the per-position columns (numpy arrays from token_shifts.parquet).

With c_t the category of position t (0 unshifted, 1 marginal, 2 shifted) over all analysed positions:
    ratio_k                   = #{t : c_t = k} / #positions                     (pooled over examples)
    per-example ratio_k(e)    = #{t in e : c_t = k} / |e|,  and its mean over examples
    shift rate at position j  = #{t : pos_t = j, c_t = 2} / #{t : pos_t = j}   ("TDS over decoding time")
    relative position of t    = pos_t / |e(t)| in [0, 1), binned into n_bins equal bins
    KL at position j          = mean of KL(P_aligned || P_base) over the positions t with pos_t = j
Empty bins give NaN, never a division by zero.

Agreement of the two top-k lists at a position (AlignTDS's compute_dist_diff.py metrics), with B_k and
A_k the base and aligned model's k most likely token ids (most likely first), compared by id:
    jaccard@k            = |B_k & A_k| / |B_k | A_k|
    weighted_overlap@k   = sum_{v in B_k & A_k} P_base(v) P_aligned(v)     (AlignTDS's "weighted sum")
    ndcg@k               = DCG / IDCG, DCG = sum_{i<k} rel(B_k[i]) / log2(i + 2), rel(v) = 1 / log2(j + 2)
                           for v = A_k[j] (0 outside A_k), IDCG = sum_{i<k} 1 / log2(i + 2)^2 (B_k = A_k)
P are the true full-vocabulary probabilities; AlignTDS renormalises its stored top-30 logits, and its
nDCG reads the whole stored list whatever k is (so its nDCG@10 equals its nDCG@50): here @k is @k.
"""
from __future__ import annotations

import numpy as np

from tds.analysis import CATEGORY_NAMES, SHIFTED

# Position buckets of the printed tables: [0], [1], ..., [5, 10), [10, 20), ..., [200, inf).
POSITION_EDGES = (0, 1, 2, 3, 4, 5, 10, 20, 50, 100, 200)


def category_ratios(category: np.ndarray) -> dict[str, float]:
    """Share of positions in each category, pooled over all positions (NaN when there are none)."""
    counts = np.bincount(category.astype(np.int64), minlength=len(CATEGORY_NAMES))[:len(CATEGORY_NAMES)]
    total = counts.sum()
    return {name: (counts[k] / total if total else float("nan")) for k, name in enumerate(CATEGORY_NAMES)}


OVERLAP_METRICS = ("jaccard", "ndcg", "weighted_overlap")


def topk_overlaps(table: dict[str, np.ndarray], k: int | None = None) -> dict[str, np.ndarray]:
    """Per position: jaccard@k, ndcg@k and weighted_overlap@k of the stored top-k lists (k <= stored k)."""
    width = table["base_topk_ids"].shape[1] if table["base_topk_ids"].ndim == 2 else 0
    k = width if k is None else k
    if not 1 <= k <= width:
        raise ValueError(f"k = {k}: the table stores the top {width} tokens of each model")
    base, aligned = table["base_topk_ids"][:, :k], table["aligned_topk_ids"][:, :k]
    match = base[:, :, None] == aligned[:, None, :]  # (N, i in B_k, j in A_k); ids within a list are distinct
    shared = match.sum((1, 2))
    p_base = np.exp(table["base_topk_logprobs"][:, :k].astype(np.float64))
    p_aligned = np.exp(table["aligned_topk_logprobs"][:, :k].astype(np.float64))
    discount = 1 / np.log2(np.arange(k) + 2)
    relevance = (match * discount[None, None, :]).sum(2)  # rel(B_k[i])
    return {"jaccard": shared / (2 * k - shared),
            "ndcg": (relevance * discount).sum(1) / (discount ** 2).sum(),
            "weighted_overlap": (match * p_base[:, :, None] * p_aligned[:, None, :]).sum((1, 2))}


def binned_mean(bins: np.ndarray, values: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, mean of `values`) per bin 0..n_bins-1; values in bins outside that range are ignored."""
    bins = np.asarray(bins, dtype=np.int64)
    keep = (bins >= 0) & (bins < n_bins)
    counts = np.bincount(bins[keep], minlength=n_bins).astype(np.int64)
    sums = np.bincount(bins[keep], weights=np.asarray(values, dtype=np.float64)[keep], minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return counts, means


def per_example(table: dict[str, np.ndarray], num_examples: int | None = None) -> dict[str, np.ndarray]:
    """Per example: num_tokens, the three category counts and ratios, mean KL both ways (NaN if empty)."""
    example = table["example"].astype(np.int64)
    n = num_examples if num_examples is not None else (int(example.max()) + 1 if len(example) else 0)
    out: dict[str, np.ndarray] = {}
    for k, name in enumerate(CATEGORY_NAMES):
        out["num_tokens"], out[f"{name}_ratio"] = binned_mean(example, table["category"] == k, n)
        out[name] = np.bincount(example[table["category"] == k], minlength=n)[:n]
    for kl in ("kl_aligned_base", "kl_base_aligned"):
        _, out[f"mean_{kl}"] = binned_mean(example, table[kl], n)
    return out


def response_lengths(table: dict[str, np.ndarray]) -> np.ndarray:
    """Length of the response each position belongs to (its example's number of positions)."""
    example = table["example"].astype(np.int64)
    return np.bincount(example)[example] if len(example) else np.zeros(0, dtype=np.int64)


def position_profile(table: dict[str, np.ndarray], bins: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    """Per bin of positions: count, the three category rates, mean KL both ways, mean P_base(o_t)."""
    out: dict[str, np.ndarray] = {}
    for k, name in enumerate(CATEGORY_NAMES):
        out["count"], out[f"{name}_rate"] = binned_mean(bins, table["category"] == k, n_bins)
    for kl in ("kl_aligned_base", "kl_base_aligned"):
        _, out[kl] = binned_mean(bins, table[kl], n_bins)
    _, out["base_prob"] = binned_mean(bins, np.exp(table["base_logprob"].astype(np.float64)), n_bins)
    if len(table["category"]):
        for name, values in topk_overlaps(table).items():
            _, out[name] = binned_mean(bins, values, n_bins)
    else:
        out.update({name: np.full(n_bins, np.nan) for name in OVERLAP_METRICS})
    return out


def absolute_position_profile(table: dict[str, np.ndarray], max_position: int) -> dict[str, np.ndarray]:
    """`position_profile` of positions 0..max_position-1 (later positions are left out)."""
    return position_profile(table, table["position"], max_position)


def relative_position_profile(table: dict[str, np.ndarray], n_bins: int = 10) -> dict[str, np.ndarray]:
    """`position_profile` over n_bins equal bins of pos_t / |response|."""
    bins = (table["position"].astype(np.int64) * n_bins) // np.maximum(response_lengths(table), 1)
    return position_profile(table, bins, n_bins)


def bucketed_position_profile(table: dict[str, np.ndarray], edges=POSITION_EDGES) -> tuple[list[str], dict]:
    """`position_profile` over the buckets [edges[i], edges[i+1]) and [edges[-1], inf), with their labels."""
    bins = np.searchsorted(np.asarray(edges), table["position"], side="right") - 1
    labels = [str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])] + [f"{edges[-1]}+"]
    return labels, position_profile(table, bins, len(edges))


def most_shifted_tokens(token_id: np.ndarray, category: np.ndarray, top: int = 20) -> list[dict]:
    """The tokens most often at shifted positions: count, occurrences and shifted share, most first.

    Ties in the count are broken by the smaller token id, so the list is deterministic.
    """
    token_id = token_id.astype(np.int64)
    shifted = np.bincount(token_id[category == SHIFTED], minlength=int(token_id.max(initial=0)) + 1)
    occurrences = np.bincount(token_id, minlength=len(shifted))
    order = np.lexsort((np.arange(len(shifted)), -shifted))
    return [{"token_id": int(t), "shifted": int(shifted[t]), "occurrences": int(occurrences[t]),
             "shifted_share": float(shifted[t] / occurrences[t])}
            for t in order[:top] if shifted[t] > 0]


def summarize(table: dict[str, np.ndarray], num_examples: int | None = None) -> dict[str, float]:
    """The headline numbers of one analysed pair."""
    examples = per_example(table, num_examples)
    analysed = examples["num_tokens"] > 0
    ratios = category_ratios(table["category"])
    summary = {"num_examples": int(analysed.sum()), "num_positions": int(len(table["category"])),
               **{f"{name}_ratio": float(v) for name, v in ratios.items()},
               # 1.0 when the responses are the aligned model's greedy outputs for exactly these prompts
               "aligned_top1_ratio": float(np.mean(table["aligned_rank"] == 0)) if len(table["category"])
               else float("nan"),
               "mean_example_shifted_ratio": float(np.mean(examples["shifted_ratio"][analysed])) if analysed.any()
               else float("nan"),
               "mean_kl_aligned_base": float(np.mean(table["kl_aligned_base"])) if len(table["category"])
               else float("nan"),
               "mean_kl_base_aligned": float(np.mean(table["kl_base_aligned"])) if len(table["category"])
               else float("nan")}
    if not len(table["category"]):
        return {**summary, "top_k": 0, **{f"mean_{name}": float("nan") for name in OVERLAP_METRICS}}
    overlaps = topk_overlaps(table)
    return {**summary, "top_k": int(table["base_topk_ids"].shape[1]),
            **{f"mean_{name}": float(np.mean(v)) for name, v in overlaps.items()}}
