"""Token distribution shift (AlignTDS, Lin et al.): base vs aligned next-token distributions, one pass.

For an instruction x and the aligned model's response o = o_1..o_L, position t compares
    P_base(. | x_base, o_<t)   and   P_aligned(. | x_aligned, o_<t)
where x_base is the instruction in the base model's prompt template and x_aligned the aligned model's
chat prompt. Both models read the whole response teacher-forced in ONE forward per batch of examples;
the unembedding is applied only at the L positions that predict response tokens, in float32 and in
chunks of positions, so no (B, T, V) logits tensor is ever kept. (The public AlignTDS code runs one
forward over the whole prefix per response token: O(L) forwards and O(L^2) work per response.)

Per position (full vocabulary, never a top-k intersection):
    rank_m        = #{v : logit_m(v) > logit_m(o_t)}   (0-based; tokens tied with o_t rank after it)
    logprob_m     = log P_m(o_t)
    KL(P_a||P_b)  = sum_v P_a(v) (log P_a(v) - log P_b(v))      `kl_aligned_base`, and the reverse
    H(P_m)        = -sum_v P_m(v) log P_m(v)
    category      = 0 unshifted if base_rank <= unshifted_max_rank (default 0: o_t is the base top-1),
                    1 marginal  if base_rank <= marginal_max_rank  (default 2: o_t is 2nd or 3rd),
                    2 shifted   otherwise.
Tokens are compared by id, so both models must share one tokenizer (see `tds.inputs`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from common.data import collate_sequences
from common.errors import DataError
from common.logprobs import base_model_of, decoder_hidden_states, token_logits

UNSHIFTED, MARGINAL, SHIFTED = 0, 1, 2
CATEGORY_NAMES = ("unshifted", "marginal", "shifted")

# The per-position columns `token_shifts` returns (and tds writes to token_shifts.parquet).
COLUMNS = {
    "example": "index of the example in the analysed inputs",
    "position": "0-based index of the token in the response",
    "token_id": "the aligned response token o_t",
    "base_rank": "0-based rank of o_t under the base distribution (tokens tied with o_t rank after it)",
    "aligned_rank": "0-based rank of o_t under the aligned distribution",
    "base_logprob": "log P_base(o_t)",
    "aligned_logprob": "log P_aligned(o_t)",
    "kl_aligned_base": "KL(P_aligned || P_base) over the full vocabulary (nats)",
    "kl_base_aligned": "KL(P_base || P_aligned) over the full vocabulary (nats)",
    "base_entropy": "entropy of P_base (nats)",
    "aligned_entropy": "entropy of P_aligned (nats)",
    "category": "0 unshifted, 1 marginal, 2 shifted (from base_rank and the thresholds)",
    "base_topk_ids": "(k,) ids of the base model's k most likely tokens, most likely first",
    "base_topk_logprobs": "(k,) their full-vocabulary log-probabilities under the base model",
    "aligned_topk_ids": "(k,) ids of the aligned model's k most likely tokens",
    "aligned_topk_logprobs": "(k,) their log-probabilities under the aligned model",
}
COLUMN_DTYPES = {"example": np.int64, "position": np.int32, "token_id": np.int32, "base_rank": np.int32,
                 "aligned_rank": np.int32, "category": np.int8, "base_topk_ids": np.int32,
                 "aligned_topk_ids": np.int32}  # every other column is float32


def categorize(base_rank: Tensor, unshifted_max_rank: int = 0, marginal_max_rank: int = 2) -> Tensor:
    """0 unshifted (rank <= unshifted_max_rank), 1 marginal (rank <= marginal_max_rank), 2 shifted."""
    if not 0 <= unshifted_max_rank <= marginal_max_rank:
        raise ValueError(f"need 0 <= unshifted_max_rank ({unshifted_max_rank}) <= marginal_max_rank "
                         f"({marginal_max_rank})")
    return (base_rank > unshifted_max_rank).to(torch.int8) + (base_rank > marginal_max_rank).to(torch.int8)


def _ranks(logits: Tensor, targets: Tensor) -> Tensor:
    """#{v : logits[n, v] > logits[n, targets[n]]} per row n (int64), by one comparison pass.

    The comparison is written as 0/1 floats and summed, which is exact (float32 counts exactly below
    2^24) and several times faster on a CPU than summing a bool tensor, which is first cast to int64.
    """
    above = torch.empty(logits.shape, dtype=torch.float32 if logits.shape[-1] < 2 ** 24 else torch.float64,
                        device=logits.device)
    torch.gt(logits, logits.gather(-1, targets), out=above)
    return above.sum(-1).long()


def _masked_entropy_and_kl(logp: Tensor, other_logp: Tensor) -> tuple[Tensor, Tensor]:
    """H(P) and KL(P || Q) per row; terms with P(v) = 0 contribute 0 (also where log Q(v) = -inf)."""
    p = logp.exp()
    support = p > 0
    entropy = -torch.where(support, p * logp, 0.0).sum(-1)
    kl = torch.where(support, p * (logp - other_logp), 0.0).sum(-1)
    return entropy, kl


def _entropies_and_kls(logp_a: Tensor, logp_b: Tensor) -> dict[str, Tensor]:
    """Both entropies and both KLs per row from p_a, p_b and one difference logp_a - logp_b (KL(b||a) =
    -sum p_b (logp_a - logp_b), exactly), with no masks.

    A term 0 * -inf (a token of probability 0, i.e. a -inf logit) is nan where the sums must count 0:
    the rows with a nan, and only those, are recomputed with masks (which keep the nan of a nan input).
    """
    p_a, p_b, diff = logp_a.exp(), logp_b.exp(), logp_a - logp_b
    out = {"aligned_entropy": -(p_a * logp_a).sum(-1), "kl_aligned_base": (p_a * diff).sum(-1),
           "base_entropy": -(p_b * logp_b).sum(-1), "kl_base_aligned": -(p_b * diff).sum(-1)}
    rows = torch.stack(list(out.values())).isnan().any(0).nonzero().view(-1)
    if len(rows):
        masked = (*_masked_entropy_and_kl(logp_a[rows], logp_b[rows]),
                  *_masked_entropy_and_kl(logp_b[rows], logp_a[rows]))
        for key, values in zip(out, masked):
            out[key][rows] = values
    return out


def compare_distributions(base_logits: Tensor, aligned_logits: Tensor, targets: Tensor, *, top_k: int = 10,
                          unshifted_max_rank: int = 0, marginal_max_rank: int = 2) -> dict[str, Tensor]:
    """All per-position quantities (see the module docstring) from (N, V) logits and (N,) target ids.

    The inputs are taken in float32; ranks compare raw logits (a softmax cannot reorder them).
    """
    base_logits, aligned_logits = base_logits.float(), aligned_logits.float()
    targets = targets.to(base_logits.device)[:, None]
    out: dict[str, Tensor] = {}
    logps = {}
    for name, logits in (("base", base_logits), ("aligned", aligned_logits)):
        out[f"{name}_rank"] = _ranks(logits, targets)
        logps[name] = torch.log_softmax(logits, dim=-1)
        out[f"{name}_logprob"] = logps[name].gather(-1, targets).squeeze(-1)
        top = logps[name].topk(min(top_k, logits.shape[-1]), dim=-1)
        out[f"{name}_topk_ids"], out[f"{name}_topk_logprobs"] = top.indices, top.values
    out.update(_entropies_and_kls(logps["aligned"], logps["base"]))
    out["category"] = categorize(out["base_rank"], unshifted_max_rank, marginal_max_rank)
    return out


def _response_hidden(model, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], *,
                     padding_side: str) -> Tensor:
    """Hidden states (N_tok, H) at the positions predicting response tokens, row by row, in order.

    Position j of a row predicts token j + 1, so the predicting positions run from the last prompt
    token to the second-to-last response token: the completion mask shifted left by one.
    """
    device = next(model.parameters()).device
    batch = collate_sequences(prompts, responses, pad_id=0, padding_side=padding_side).to(device)
    hidden = decoder_hidden_states(model, batch.input_ids, batch.attention_mask)
    predicting = batch.completion_mask[:, 1:].bool()
    return hidden[:, :-1][predicting]


# On a CPU the statistics run over blocks of about this many logits per model: their (rows, V) float32
# temporaries (~2 MB) stay in the cache through the dozen elementwise passes, which makes those passes
# 2-3x faster than over a whole chunk of positions (a GPU is fastest on the whole chunk).
CPU_BLOCK_ELEMENTS = 2 ** 19


def _rows_per_block(logits: Tensor) -> int:
    if logits.device.type != "cpu":
        return len(logits)
    return max(1, CPU_BLOCK_ELEMENTS // logits.shape[-1])


def _output_size(model) -> int:
    return base_model_of(model).get_output_embeddings().weight.shape[0]


@torch.no_grad()
def token_shifts(base_model, aligned_model, base_prompt_ids: Sequence[Sequence[int]],
                 aligned_prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], *,
                 top_k: int = 10, unshifted_max_rank: int = 0, marginal_max_rank: int = 2,
                 batch_size: int = 8, positions_per_chunk: int = 1024, padding_side: str = "right",
                 vocab_size: Optional[int] = None, progress: bool = False) -> dict[str, np.ndarray]:
    """Per-position TDS quantities of every response token, as the columns of `COLUMNS`.

    Example i is base_prompt_ids[i] + response_ids[i] for the base model and aligned_prompt_ids[i] +
    response_ids[i] for the aligned one. Examples go through each model in length-sorted batches of
    `batch_size` (one forward per model per batch); the logits of at most `positions_per_chunk`
    positions exist at a time. Rows are ordered by (example, position); an empty response has none.

    `vocab_size`: compare the first `vocab_size` logits only (for a model whose embedding matrix is
    padded past the tokenizer); by default both models' output sizes, which must then be equal.
    """
    n = len(response_ids)
    if not (len(base_prompt_ids) == len(aligned_prompt_ids) == n):
        raise ValueError("base_prompt_ids, aligned_prompt_ids and response_ids must have the same length")
    for i in range(n):
        if not base_prompt_ids[i] or not aligned_prompt_ids[i]:
            raise DataError(f"example {i}: an empty prompt (it needs at least one token, e.g. BOS)")
    sizes = (_output_size(base_model), _output_size(aligned_model))
    if vocab_size is None:
        if sizes[0] != sizes[1]:
            raise DataError(f"the base model predicts {sizes[0]} tokens and the aligned model {sizes[1]}: "
                            "give vocab_size (the shared tokenizer's size) to compare the shared vocabulary")
        vocab_size = sizes[0]
    elif vocab_size > min(sizes):
        raise DataError(f"vocab_size {vocab_size} exceeds a model's output size {min(sizes)}")
    for i, response in enumerate(response_ids):
        if response and not 0 <= min(response) <= max(response) < vocab_size:
            raise DataError(f"example {i}: response token id outside the vocabulary 0..{vocab_size - 1}")

    order = sorted(range(n), key=lambda i: len(aligned_prompt_ids[i]) + len(response_ids[i]))
    order = [i for i in order if response_ids[i]]
    chunks: list[dict[str, Tensor]] = []
    examples, positions, tokens = [], [], []
    starts = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="token shifts", unit="batch")
    for start in starts:
        batch = order[start:start + batch_size]
        responses = [list(response_ids[i]) for i in batch]
        base_hidden = _response_hidden(base_model, [base_prompt_ids[i] for i in batch], responses,
                                       padding_side=padding_side)
        aligned_hidden = _response_hidden(aligned_model, [aligned_prompt_ids[i] for i in batch], responses,
                                          padding_side=padding_side)
        targets = torch.tensor([t for r in responses for t in r], device=aligned_hidden.device)
        for s in range(0, len(targets), positions_per_chunk):
            e = s + positions_per_chunk
            base_logits = token_logits(base_model, base_hidden[s:e])[:, :vocab_size]
            aligned_logits = token_logits(aligned_model, aligned_hidden[s:e])[:, :vocab_size]
            rows = _rows_per_block(aligned_logits)
            for r in range(0, len(aligned_logits), rows):
                stats = compare_distributions(base_logits[r:r + rows].to(aligned_logits.device),
                                              aligned_logits[r:r + rows], targets[s:e][r:r + rows], top_k=top_k,
                                              unshifted_max_rank=unshifted_max_rank,
                                              marginal_max_rank=marginal_max_rank)
                chunks.append({k: v.cpu() for k, v in stats.items()})
        for i, response in zip(batch, responses):
            examples.extend([i] * len(response))
            positions.extend(range(len(response)))
            tokens.extend(response)

    k = min(top_k, vocab_size)
    columns = {"example": np.asarray(examples), "position": np.asarray(positions), "token_id": np.asarray(tokens)}
    for key in COLUMNS:
        if key not in columns:
            columns[key] = (torch.cat([c[key] for c in chunks]).numpy() if chunks
                            else np.zeros((0, k) if key.endswith(("_ids", "_logprobs")) else (0,)))
    order_rows = np.lexsort((columns["position"], columns["example"]))
    return {key: values[order_rows].astype(COLUMN_DTYPES.get(key, np.float32)) for key, values in columns.items()}
