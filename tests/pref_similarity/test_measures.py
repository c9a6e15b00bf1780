"""Each similarity measure against a direct computation on the tiny chat model and fixture pairs."""
import dataclasses
import json

import pytest
import torch

from ches.measures import minus_normalized_edit_distance, response_end_ids, similarity_rows
from common.preference_data import Tokenization, tokenize_pairs
from pref_similarity.preference_sets import load_preference_set
from tests.pref_similarity.conftest import ULTRAFEEDBACK


def naive_edit_distance(a, b):
    """Textbook Levenshtein table: d[i][j] = distance between a[:i] and b[:j]."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[-1][-1]


@torch.no_grad()
def direct_measures(model, prompt, pos, neg, end):
    """Definition 2 with one unpadded forward per sequence and every layer's states (float64 sums); the
    last-hidden product and the edit distance as the public script computes them, on x+y without the end
    tokens `end` (the public script's x+y without EOS)."""
    summed, last, text = [], [], []
    for response in (pos, neg):
        hidden = model(torch.tensor([prompt + response]), output_hidden_states=True).hidden_states[-1][0].double()
        # h(x, y<k) for k = 1..|y| sits at positions |x|-1 .. |x|+|y|-2
        summed.append(sum(hidden[len(prompt) - 1 + k] for k in range(len(response))))
        without_end = response[:-len(end)] if response[-len(end):] == end else response
        no_end = model(torch.tensor([prompt + without_end]), output_hidden_states=True).hidden_states[-1][0]
        last.append(no_end[-1].double())
        text.append(without_end)
    s_pos, s_neg = summed
    return {"ches": (s_pos @ s_neg - s_pos @ s_pos).item(),
            "ln_ches": (s_pos @ s_neg / (len(pos) * len(neg)) - s_pos @ s_pos / len(pos) ** 2).item(),
            "last_hidden_inner_prod": (last[0] @ last[1]).item(),
            "minus_normalized_edit_distance": -naive_edit_distance(*text) / max(map(len, text))}


@pytest.fixture(scope="module")
def end_ids(tiny_chat):
    """tiny-chat's template closes every assistant turn with "<|end|>\n"."""
    _, tokenizer = tiny_chat
    end = tokenizer("<|end|>\n", add_special_tokens=False)["input_ids"]
    assert len(end) == 2 and response_end_ids(tokenizer) == end
    return end


def test_plain_responses_end_with_eos(tiny_chat):
    _, tokenizer = tiny_chat
    assert response_end_ids(tokenizer, use_chat_template=False) == [tokenizer.eos_token_id]


@pytest.fixture(scope="module")
def examples(tiny_chat):
    _, tokenizer = tiny_chat
    examples, _ = tokenize_pairs(load_preference_set(str(ULTRAFEEDBACK)).rows, tokenizer, Tokenization(),
                                 source="fixture", indices=range(0, 400, 29))
    return examples


def test_edit_distance_worked_examples():
    assert minus_normalized_edit_distance([1, 2, 3, 4], [1, 3, 4, 5]) == -2 / 4  # delete 2, insert 5
    assert minus_normalized_edit_distance(list("kitten"), list("sitting")) == -3 / 7
    assert minus_normalized_edit_distance([5, 6], [5, 6]) == 0.0
    assert minus_normalized_edit_distance([1, 2], [3, 4, 5]) == -1.0


@pytest.mark.parametrize("batch_size", [1, 5])
def test_rows_match_direct_computation(tiny_chat, examples, end_ids, batch_size):
    model, _ = tiny_chat
    # The last example's y+ lost its end tokens (as truncation can cut them): it is used whole.
    examples = examples[:-1] + [dataclasses.replace(examples[-1], chosen_ids=examples[-1].chosen_ids[:-3])]
    rows = similarity_rows(model, examples, end_ids=end_ids, batch_size=batch_size)
    assert [r["index"] for r in rows] == [e.index for e in examples] == list(range(0, 400, 29))
    for row, e in zip(rows, examples):
        expected = direct_measures(model, e.prompt_ids, e.chosen_ids, e.rejected_ids, end_ids)
        for measure, value in expected.items():
            assert row[measure] == pytest.approx(value, rel=1e-4, abs=1e-3), (e.index, measure)
        assert (row["prompt_len"], row["preferred_len"], row["dispreferred_len"]) == (
            len(e.prompt_ids), len(e.chosen_ids), len(e.rejected_ids))


def test_near_duplicates_are_more_similar_by_edit_distance(tiny_chat):
    """A wrong fact differs from the right one in a token or two; a needless refusal shares almost nothing."""
    _, tokenizer = tiny_chat
    kinds = [json.loads(line)["kind"] for line in ULTRAFEEDBACK.read_text().splitlines()]
    examples, _ = tokenize_pairs(load_preference_set(str(ULTRAFEEDBACK)).rows, tokenizer, Tokenization(),
                                 source="fixture")
    by_kind = {}
    for e in examples:
        by_kind.setdefault(kinds[e.index], []).append(minus_normalized_edit_distance(e.chosen_ids, e.rejected_ids))
    mean = {k: sum(v) / len(v) for k, v in by_kind.items()}
    assert mean["wrong_fact"] > -0.35 > mean["needless_refusal"]
