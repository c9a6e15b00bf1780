"""The per-example preference-similarity measures of Section 5 (higher = y+ and y- more similar).

For a pair (x, y+, y-) with hidden states h from the final layer (or `layer`):
- ches, ln_ches: CHES and length-normalised CHES (Definition 2), see `ches.ches`.
- minus_normalized_edit_distance: -Levenshtein(y+, y-) / max(|y+|, |y-|) over the response token ids
  without the end tokens (0 for identical responses, -1 when no token can be kept).
- last_hidden_inner_prod: <h(x, y+), h(x, y-)>, the hidden states at the last response token (not the
  end token) of each full sequence.
Both follow the public script, which runs x+y without EOS. The end tokens are what the trainer's
tokenization appends to every response (`response_end_ids`: EOS, or the chat template's end-of-turn
tokens); a response that does not end with them (cut by truncation) is used whole.
All four come from one batched pass (`ches.ches.hidden_state_sums`, which needs no logits) plus a
C-backed edit distance (rapidfuzz) on the token-id lists.
"""
from __future__ import annotations

from typing import Optional, Sequence

from rapidfuzz.distance import Levenshtein

from ches.ches import ches_from_sums, hidden_state_sums, strip_end
from common.data import PreferenceExample, tokenize_preference


def response_end_ids(tokenizer, use_chat_template: Optional[bool] = None) -> list[int]:
    """The tokens the trainer's tokenization appends after every response's text (EOS or end of turn).

    The common suffix of two responses whose text ends differently; [] when nothing is appended."""
    example = tokenize_preference(tokenizer, "Hi", "a", "b 1", use_chat_template=use_chat_template)
    a, b = example.chosen_ids, example.rejected_ids
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return a[len(a) - n:]


def minus_normalized_edit_distance(preferred: Sequence[int], dispreferred: Sequence[int]) -> float:
    """-(token edit distance) / (length of the longer response)."""
    distance = Levenshtein.distance(preferred, dispreferred)
    return -distance / max(len(preferred), len(dispreferred)) if distance else 0.0  # 0.0, not -0.0


def similarity_rows(model, examples: Sequence[PreferenceExample], *, end_ids: Sequence[int], batch_size: int = 16,
                    layer: int = -1) -> list[dict]:
    """One similarity-file row per example (see `similarity_file`), in the order of `examples`.

    `end_ids`: the responses' end tokens (`response_end_ids`), left out of the edit distance and the
    last-hidden position."""
    sums = hidden_state_sums(model, [e.prompt_ids for e in examples], [e.chosen_ids for e in examples],
                             [e.rejected_ids for e in examples], end_ids=end_ids, layer=layer,
                             batch_size=batch_size)
    scores = ches_from_sums(sums)
    last_inner = (sums["preferred_last"].double() * sums["dispreferred_last"].double()).sum(-1)
    return [{"index": e.index,
             "ches": scores["ches"][i].item(),
             "ln_ches": scores["ln_ches"][i].item(),
             "minus_normalized_edit_distance": minus_normalized_edit_distance(strip_end(e.chosen_ids, end_ids),
                                                                               strip_end(e.rejected_ids, end_ids)),
             "last_hidden_inner_prod": last_inner[i].item(),
             "prompt_len": len(e.prompt_ids),
             "preferred_len": len(e.chosen_ids),
             "dispreferred_len": len(e.rejected_ids)}
            for i, e in enumerate(examples)]
