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
