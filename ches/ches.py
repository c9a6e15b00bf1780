"""CHES: centered hidden embedding similarity of a preference pair (Razin et al., Definition 2).

With h(x, y<k) the hidden state (final layer by default) at the position that predicts y_k, i.e. from
the last prompt token to the second-to-last response token:
    S+ = sum_k h(x, y+<k),   S- = sum_k h(x, y-<k)
    CHES    = <S+, S-> - ||S+||^2
    LN-CHES = <S+, S-> / (|y+| |y-|) - ||S+||^2 / |y+|^2
y is the response as the trainer tokenizes and scores it, so it includes the end token(s) (EOS, or the
chat template's end-of-turn tokens) and |y| counts them. These are the same positions as both public
implementations: the public dataset script runs x+y without EOS and sums the |y|+1 positions from the
last prompt token on (dividing by |y|+1, its response length with EOS), which are the positions
predicting y_1..y_|y| here. Any padding side gives the same numbers (the standalone public function
needs left padding); sums are accumulated in float32 with inner products in float64.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from common.data import Prompt, collate_sequences, tokenize_preference
from common.errors import DataError
from common.logprobs import base_model_of, position_ids_from_mask


def strip_end(response_ids: Sequence[int], end_ids: Sequence[int]) -> list[int]:
    """The response without its end tokens `end_ids` (when it ends with them: truncation may cut them)."""
    response_ids, end_ids = list(response_ids), list(end_ids)
    if end_ids and response_ids[-len(end_ids):] == end_ids:
        return response_ids[:-len(end_ids)]
    return response_ids


@torch.no_grad()
def hidden_state_sums(model, prompt_ids: Sequence[Sequence[int]], preferred_ids: Sequence[Sequence[int]],
                      dispreferred_ids: Sequence[Sequence[int]], *, end_ids: Sequence[int] = (), layer: int = -1,
                      batch_size: int = 16, padding_side: str = "right", progress: bool = False
                      ) -> dict[str, torch.Tensor]:
    """Per pair: summed response-predicting hidden states of y+ and y- and the last hidden states.

    Returns float32 tensors `preferred_sum`, `dispreferred_sum` (N, H), `preferred_last`,
    `dispreferred_last` (N, H) (hidden state at the last response token before the end tokens
    `end_ids`, for the "last hidden embedding inner product" measure: the last token of x+y without
    its end, as the public script computes it) and the response lengths `preferred_len`,
    `dispreferred_len` (N,).
    Both sequences of all pairs go through the model in length-sorted batches of `batch_size` rows.
    """
    n = len(prompt_ids)
    if not (len(preferred_ids) == len(dispreferred_ids) == n):
        raise ValueError("prompt_ids, preferred_ids and dispreferred_ids must have the same length")
    for i in range(n):
        if not preferred_ids[i] or not dispreferred_ids[i] or not prompt_ids[i]:
            raise DataError(f"pair {i}: the prompt and both responses need at least one token")
    rows = [(i, 0, prompt_ids[i], preferred_ids[i]) for i in range(n)] + \
           [(i, 1, prompt_ids[i], dispreferred_ids[i]) for i in range(n)]
    rows.sort(key=lambda r: len(r[2]) + len(r[3]))  # length bucketing: little padding per batch
    device = next(model.parameters()).device
    decoder = base_model_of(model).get_decoder()
    hidden_size = base_model_of(model).config.hidden_size
    sums = torch.zeros(2, n, hidden_size, dtype=torch.float32)
    lasts = torch.zeros(2, n, hidden_size, dtype=torch.float32)
    starts = range(0, len(rows), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="hidden states", unit="batch")
    for start in starts:
        chunk = rows[start:start + batch_size]
        batch = collate_sequences([r[2] for r in chunk], [r[3] for r in chunk], pad_id=0,
                                  padding_side=padding_side).to(device)
        out = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                      position_ids=position_ids_from_mask(batch.attention_mask), use_cache=False,
                      output_hidden_states=layer != -1)
        hidden = (out.last_hidden_state if layer == -1 else out.hidden_states[layer]).float().to(device)
        # Positions predicting response tokens: shift the completion mask left by one.
        predicting = torch.zeros_like(batch.completion_mask, dtype=torch.float32)
        predicting[:, :-1] = batch.completion_mask[:, 1:].float()
        chunk_sums = torch.einsum("bt,bth->bh", predicting, hidden).cpu()
        positions = torch.arange(batch.completion_mask.shape[1], device=device)
        last_completion = (batch.completion_mask * positions).argmax(-1)
        end_lengths = torch.tensor([len(r[3]) - len(strip_end(r[3], end_ids)) for r in chunk], device=device)
        last_pos = last_completion - end_lengths
        chunk_lasts = hidden[torch.arange(len(chunk), device=device), last_pos].cpu()
        for j, (i, which, _, _) in enumerate(chunk):
            sums[which, i] = chunk_sums[j]
            lasts[which, i] = chunk_lasts[j]
    return {"preferred_sum": sums[0], "dispreferred_sum": sums[1],
            "preferred_last": lasts[0], "dispreferred_last": lasts[1],
            "preferred_len": torch.tensor([len(y) for y in preferred_ids]),
            "dispreferred_len": torch.tensor([len(y) for y in dispreferred_ids])}


def ches_from_sums(sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CHES and LN-CHES from `hidden_state_sums` output (inner products in float64)."""
    pos, neg = sums["preferred_sum"].double(), sums["dispreferred_sum"].double()
    len_pos, len_neg = sums["preferred_len"].double(), sums["dispreferred_len"].double()
    cross = (pos * neg).sum(-1)
    own = (pos * pos).sum(-1)
    return {"ches": (cross - own).float(),
            "ln_ches": (cross / (len_pos * len_neg) - own / len_pos ** 2).float()}


def ches_scores(model, prompt_ids: Sequence[Sequence[int]], preferred_ids: Sequence[Sequence[int]],
                dispreferred_ids: Sequence[Sequence[int]], *, layer: int = -1, batch_size: int = 16
                ) -> dict[str, torch.Tensor]:
    """`{"ches": Tensor[N], "ln_ches": Tensor[N]}` for N preference pairs given as token-id lists."""
    return ches_from_sums(hidden_state_sums(model, prompt_ids, preferred_ids, dispreferred_ids,
                                            layer=layer, batch_size=batch_size))


def ches_scores_text(model, tokenizer, prompts: Sequence[Prompt], preferred: Sequence[str],
                     dispreferred: Sequence[str], *, use_chat_template: Optional[bool] = None, layer: int = -1,
                     batch_size: int = 16) -> dict[str, torch.Tensor]:
    """CHES of text pairs, tokenized as the trainer tokenizes them (chat template when present)."""
    examples = [tokenize_preference(tokenizer, p, c, r, use_chat_template=use_chat_template)
                for p, c, r in zip(prompts, preferred, dispreferred)]
    return ches_scores(model, [e.prompt_ids for e in examples], [e.chosen_ids for e in examples],
                       [e.rejected_ids for e in examples], layer=layer, batch_size=batch_size)
