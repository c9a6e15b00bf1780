"""sequence_logprobs against a naive per-example computation (full logits, log_softmax, sum)."""
import pytest
import torch

from common.data import collate_sequences
from common.logprobs import SequenceLogProbs, sequence_logprobs
from tests.conftest import random_gemma2, random_llama


def naive_logprob(model, prompt, completion):
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits.double(), -1)[0]
    return sum(logp[len(prompt) + k - 1, tok].item() for k, tok in enumerate(completion))


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_matches_naive_per_example(random_lm, random_pairs, padding_side):
    prompts, completions, _ = random_pairs
    batch = collate_sequences(prompts, completions, pad_id=0, padding_side=padding_side)
    with torch.no_grad():
        got = sequence_logprobs(random_lm, batch.input_ids, batch.attention_mask, batch.completion_mask)
    expected = [naive_logprob(random_lm, p, c) for p, c in zip(prompts, completions)]
    assert got.dtype == torch.float32
    assert got.tolist() == pytest.approx(expected, abs=1e-4)


def test_batch_composition_does_not_change_a_row(random_lm, random_pairs):
    prompts, completions, _ = random_pairs
    full = collate_sequences(prompts, completions, pad_id=0)
    alone = collate_sequences(prompts[:1], completions[:1], pad_id=0)
    with torch.no_grad():
        a = sequence_logprobs(random_lm, full.input_ids, full.attention_mask, full.completion_mask)[0]
        b = sequence_logprobs(random_lm, alone.input_ids, alone.attention_mask, alone.completion_mask)[0]
    assert a.item() == pytest.approx(b.item(), abs=1e-4)


def test_module_gives_gradients(random_pairs):
    from tests.conftest import random_llama

    model = random_llama(seed=3)
    prompts, completions, _ = random_pairs
    batch = collate_sequences(prompts, completions, pad_id=0)
    SequenceLogProbs(model)(batch.input_ids, batch.attention_mask, batch.completion_mask).sum().backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0
    assert model.model.embed_tokens.weight.grad.abs().sum() > 0


def test_never_builds_a_full_vocabulary_tensor_per_position(random_pairs):
    """The LM head only sees the N_tok positions that predict completion tokens."""
    from tests.conftest import random_llama

    model = random_llama(seed=4)
    prompts, completions, _ = random_pairs
    batch = collate_sequences(prompts, completions, pad_id=0)
    seen = []
    handle = model.lm_head.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    with torch.no_grad():
        sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.completion_mask)
    handle.remove()
    assert seen == [(sum(len(c) for c in completions), 97)]


@pytest.mark.parametrize("build", [random_llama, random_gemma2])
def test_packed_rows_match_naive_per_example(build):
    """One long row among many short ones: packing into one padding-free row is chosen, and each row's
    log-prob is still that of the sequence alone (the restarts of the positions isolate the sequences)."""
    from common.logprobs import packing_is_cheaper

    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(3, 97, (n,), generator=g).tolist() for n in (14, 1, 2, 1, 3, 1, 2, 1)]
    completions = [torch.randint(3, 97, (n,), generator=g).tolist() for n in (6, 1, 1, 2, 1, 1, 2, 1)]
    batch = collate_sequences(prompts, completions, pad_id=0)
    model = build()  # a fresh model: the session's `random_lm` may carry other tests' hooks
    assert packing_is_cheaper(model, batch.attention_mask)
    with torch.no_grad():
        got = sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.completion_mask, pack=True)
    assert got.tolist() == pytest.approx([naive_logprob(model, p, c) for p, c in zip(prompts, completions)],
                                         abs=1e-4)


def test_few_equal_long_rows_are_not_packed(random_lm):
    """Without padding to drop, a packed row would only add attention across the block-diagonal mask."""
    from common.logprobs import packing_is_cheaper

    assert not packing_is_cheaper(random_lm, torch.ones(2, 100, dtype=torch.long))


@pytest.mark.parametrize("model_type", ["qwen2", "mistral"])
def test_every_packable_model_type_matches_per_row_forwards(model_type):
    """PACKABLE lists the decoders whose masks transformers builds from restarting position ids: each one
    not covered by `random_lm` (llama, gemma2) is checked here."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from common.logprobs import PACKABLE, packing_is_cheaper

    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, vocab_size=97, hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=128)
    model = AutoModelForCausalLM.from_config(config).eval()
    assert model_type in PACKABLE
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(3, 97, (n,), generator=g).tolist() for n in (14, 1, 2, 1, 3, 1)]
    completions = [torch.randint(3, 97, (n,), generator=g).tolist() for n in (6, 1, 1, 2, 1, 1)]
    batch = collate_sequences(prompts, completions, pad_id=0)
    assert packing_is_cheaper(model, batch.attention_mask)
    with torch.no_grad():
        got = sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.completion_mask, pack=True)
    assert got.tolist() == pytest.approx([naive_logprob(model, p, c) for p, c in zip(prompts, completions)], abs=1e-4)


def test_a_model_with_forward_hooks_is_never_packed():
    """Hooks on hidden states (Vaccine's perturbation, RepNoise's MMD, FSDP) see the padded (B, T, H) batch."""
    from common.logprobs import packing_is_cheaper

    model, mask = random_llama(), torch.tensor([[1] * 20] + [[1] + [0] * 19] * 7)
    assert packing_is_cheaper(model, mask)
    model.model.layers[0].register_forward_hook(lambda module, args, output: None)
    assert not packing_is_cheaper(model, mask)


def test_packing_is_off_unless_asked(monkeypatch):
    """The padded path is the default (`pack_sequences: false`); pack=True takes the packed one."""
    def packed(*args):
        raise AssertionError("packed")

    monkeypatch.setattr("common.logprobs.packed_hidden_states", packed)
    model, batch = random_llama(), collate_sequences([[5] * 14, [6]], [[7] * 6, [8]], pad_id=0)
    with torch.no_grad():
        sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.completion_mask)
        with pytest.raises(AssertionError, match="packed"):
            sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.completion_mask, pack=True)


def shareable_models():
    """The PROMPT_SHAREABLE decoders, tiny and random: llama and gemma2 from conftest, qwen2 and mistral here."""
    from transformers import AutoConfig, AutoModelForCausalLM

    def build(model_type):
        torch.manual_seed(0)
        config = AutoConfig.for_model(model_type, vocab_size=97, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=128)
        return AutoModelForCausalLM.from_config(config).eval()

    return [random_llama, random_gemma2, lambda: build("qwen2"), lambda: build("mistral")]


def shared_pairs():
    from common.data import PreferenceExample

    g = torch.Generator().manual_seed(5)
    lengths = [(9, 3, 5), (1, 1, 1), (4, 6, 2), (12, 2, 1)]
    return [PreferenceExample(*(torch.randint(3, 97, (n,), generator=g).tolist() for n in row), index=i)
            for i, row in enumerate(lengths)]


@pytest.mark.parametrize("build", shareable_models(), ids=["llama", "gemma2", "qwen2", "mistral"])
def test_shared_prompt_rows_match_naive_per_completion(build):
    """(prompt, chosen, rejected) in one row: each completion's log-prob is that of prompt + completion
    alone (float64 full-logit recomputation), chosen rows first, as collate_pairs orders them."""
    from common.data import collate_shared_prompt
    from common.logprobs import PROMPT_SHAREABLE, prompt_sharing_applies, shared_prompt_logprobs

    model, pairs = build(), shared_pairs()
    assert model.config.model_type in PROMPT_SHAREABLE and prompt_sharing_applies(model, 20)
    batch = collate_shared_prompt(pairs, pad_id=0)
    assert batch.input_ids.shape == (4, 17)  # the longest pair's prompt + chosen + rejected
    with torch.no_grad():
        got = shared_prompt_logprobs(model, batch.input_ids, batch.attention_mask, batch.completion_mask)
    expected = ([naive_logprob(model, e.prompt_ids, e.chosen_ids) for e in pairs]
                + [naive_logprob(model, e.prompt_ids, e.rejected_ids) for e in pairs])
    assert got.tolist() == pytest.approx(expected, abs=1e-4)


def test_shared_prompt_gradients_match_two_rows():
    """The prompt's activations serve both completions: the parameter gradients of a loss on both
    log-probs equal those of the unshared rows."""
    from common.data import collate_pairs, collate_shared_prompt
    from common.logprobs import shared_prompt_logprobs

    pairs = shared_pairs()
    grads = []
    for shared in (False, True):
        model = random_llama(seed=7)
        batch = (collate_shared_prompt if shared else collate_pairs)(pairs, pad_id=0)
        score = shared_prompt_logprobs if shared else sequence_logprobs
        logps = score(model, batch.input_ids, batch.attention_mask, batch.completion_mask)
        (logps[:4] - 0.5 * logps[4:]).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_prompt_sharing_falls_back_where_it_would_change_the_numbers():
    from transformers import AutoConfig, AutoModelForCausalLM

    from common.logprobs import prompt_sharing_applies

    model = random_llama()
    assert prompt_sharing_applies(model, 50)
    model.model.layers[0].register_forward_hook(lambda module, args, output: None)
    assert not prompt_sharing_applies(model, 50)  # hooks expect one row per sequence
    config = AutoConfig.for_model("mistral", vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=4, num_key_value_heads=2, sliding_window=16)
    windowed = AutoModelForCausalLM.from_config(config)
    assert prompt_sharing_applies(windowed, 16) and not prompt_sharing_applies(windowed, 17)  # a mask replaces it
    gpt2 = AutoModelForCausalLM.from_config(AutoConfig.for_model("gpt2", vocab_size=97, n_embd=32, n_layer=1, n_head=4))
    assert not prompt_sharing_applies(gpt2, 10)
