"""The per-example preference-similarity measures of Section 5 (higher = y+ and y- more similar).

For a pair (x, y+, y-) with hidden states h from the final layer (or `layer`):
- ches, ln_ches: CHES and length-normalised CHES (Definition 2), see `ches.ches`.
- minus_normalized_edit_distance: -Levenshtein(y+, y-) / max(|y+|, |y-|) over the response token ids
  (0 for identical responses, -1 when no token can be kept).
- last_hidden_inner_prod: <h(x, y+), h(x, y-)>, the hidden states at the last token of each full
  sequence.
All four come from one batched pass (`ches.ches.hidden_state_sums`, which needs no logits) plus a
C-backed edit distance (rapidfuzz) on the token-id lists.
"""
from __future__ import annotations

from typing import Sequence

from rapidfuzz.distance import Levenshtein

from ches.ches import ches_from_sums, hidden_state_sums
from common.data import PreferenceExample


def minus_normalized_edit_distance(preferred: Sequence[int], dispreferred: Sequence[int]) -> float:
    """-(token edit distance) / (length of the longer response)."""
    distance = Levenshtein.distance(preferred, dispreferred)
    return -distance / max(len(preferred), len(dispreferred)) if distance else 0.0  # 0.0, not -0.0


def similarity_rows(model, examples: Sequence[PreferenceExample], *, batch_size: int = 16, layer: int = -1
                    ) -> list[dict]:
    """One similarity-file row per example (see `similarity_file`), in the order of `examples`."""
    sums = hidden_state_sums(model, [e.prompt_ids for e in examples], [e.chosen_ids for e in examples],
                             [e.rejected_ids for e in examples], layer=layer, batch_size=batch_size)
    scores = ches_from_sums(sums)
    last_inner = (sums["preferred_last"].double() * sums["dispreferred_last"].double()).sum(-1)
    return [{"index": e.index,
             "ches": scores["ches"][i].item(),
             "ln_ches": scores["ln_ches"][i].item(),
             "minus_normalized_edit_distance": minus_normalized_edit_distance(e.chosen_ids, e.rejected_ids),
             "last_hidden_inner_prod": last_inner[i].item(),
             "prompt_len": len(e.prompt_ids),
             "preferred_len": len(e.chosen_ids),
             "dispreferred_len": len(e.rejected_ids)}
            for i, e in enumerate(examples)]
