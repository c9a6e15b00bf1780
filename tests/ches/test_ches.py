"""CHES / LN-CHES against a direct, per-pair implementation of Definition 2 (Razin et al.; docs/pref_similarity.md)."""
import pytest
import torch

from ches.ches import ches_scores, hidden_state_sums


def direct_ches(model, prompt, pos, neg, layer=-1):
    """Definition 2 literally: one unpadded forward per sequence, sum h at positions predicting y_k."""

    def summed(response):
        ids = torch.tensor([prompt + response])
        with torch.no_grad():
            hidden = model(ids, output_hidden_states=True).hidden_states[layer][0].double()
        # h(x, y<k) for k = 1..|y| sits at positions len(x)-1 .. len(x)+|y|-2
        return sum(hidden[len(prompt) - 1 + k] for k in range(len(response)))

    s_pos, s_neg = summed(pos), summed(neg)
    ches = s_pos @ s_neg - s_pos @ s_pos
    ln_ches = s_pos @ s_neg / (len(pos) * len(neg)) - s_pos @ s_pos / len(pos) ** 2
    return ches.item(), ln_ches.item()


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_matches_definition(random_lm, random_pairs, batch_size):
    prompts, pos, neg = random_pairs
    got = ches_scores(random_lm, prompts, pos, neg, batch_size=batch_size)
    for i in range(len(prompts)):
        ches, ln_ches = direct_ches(random_lm, prompts[i], pos[i], neg[i])
        assert got["ches"][i].item() == pytest.approx(ches, rel=1e-4, abs=1e-3)
        assert got["ln_ches"][i].item() == pytest.approx(ln_ches, rel=1e-4, abs=1e-4)


def test_intermediate_layer(random_lm, random_pairs):
    prompts, pos, neg = random_pairs
    got = ches_scores(random_lm, prompts, pos, neg, layer=1)
    ches, _ = direct_ches(random_lm, prompts[2], pos[2], neg[2], layer=1)
    assert got["ches"][2].item() == pytest.approx(ches, rel=1e-4, abs=1e-3)


def test_padding_side_does_not_matter(random_lm, random_pairs):
    prompts, pos, neg = random_pairs
    right = hidden_state_sums(random_lm, prompts, pos, neg, padding_side="right", batch_size=4)
    left = hidden_state_sums(random_lm, prompts, pos, neg, padding_side="left", batch_size=4)
    for key in right:
        assert torch.allclose(right[key].float(), left[key].float(), atol=1e-4), key


def test_last_hidden_state_is_at_the_last_token(random_lm, random_pairs):
    prompts, pos, neg = random_pairs
    sums = hidden_state_sums(random_lm, prompts, pos, neg, batch_size=4)
    with torch.no_grad():
        h = random_lm(torch.tensor([prompts[3] + neg[3]]), output_hidden_states=True).hidden_states[-1][0, -1]
    assert torch.allclose(sums["dispreferred_last"][3], h, atol=1e-5)


def test_identical_responses_give_zero_ches(random_lm, random_pairs):
    prompts, pos, _ = random_pairs
    got = ches_scores(random_lm, prompts, pos, pos)
    assert torch.allclose(got["ches"], torch.zeros(5), atol=1e-2)
    assert torch.allclose(got["ln_ches"], torch.zeros(5), atol=1e-4)
