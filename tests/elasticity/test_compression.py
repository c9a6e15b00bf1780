"""Compression rates against hand computations and a naive per-example loop; the trainer callback."""
import math
import types

import pytest
import torch

from common.config import TrainConfig
from common.data import PreferenceExample
from common.tracking import read_jsonl
from common.trainer import Trainer
from elasticity.compression import (
    CompressionCallback,
    CompressionRate,
    EncodedTexts,
    code_lengths,
    compression_rate_ids,
)
from tests.conftest import random_llama


@pytest.fixture
def encoded():
    g = torch.Generator().manual_seed(3)

    def ids(n):
        return torch.randint(3, 97, (n,), generator=g).tolist()

    contexts = [ids(n) for n in (1, 6, 3, 9, 2)]
    tokens = [ids(n) for n in (5, 2, 7, 1, 4)]
    return EncodedTexts(contexts, tokens, [11, 3, 20, 2, 9])


def naive_code_length(model, context, tokens):
    """-sum log p over the tokens, one unpadded forward and a full log-softmax per example."""
    ids = torch.tensor([context + tokens])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    return -sum(logp[len(context) + j - 1, t].item() for j, t in enumerate(tokens))


def test_uniform_model_costs_log2_vocab_bits_per_token(encoded):
    # Zero unembedding -> every logit 0 -> p = 1/97 for every token: log2(97) = 6.6008 bits per token.
    model = random_llama()
    with torch.no_grad():
        model.lm_head.weight.zero_()
    rate = compression_rate_ids(model, encoded, batch_size=2)
    assert rate.tokens == 19 and rate.bytes == 45
    assert rate.bits_per_token == pytest.approx(math.log2(97), rel=1e-6)
    assert rate.bits_per_byte == pytest.approx(19 * math.log2(97) / 45, rel=1e-6)  # 2.7870 bits per byte


def test_code_lengths_match_naive_loop_for_any_batching(encoded):
    model = random_llama()
    expected = [naive_code_length(model, c, t) for c, t in zip(encoded.contexts, encoded.tokens)]
    for batch_size in (1, 2, 5):  # different padding in every batch
        got = code_lengths(model, encoded.contexts, encoded.tokens, batch_size=batch_size)
        assert got.tolist() == pytest.approx(expected, abs=1e-4)
    rate = compression_rate_ids(model, encoded, batch_size=3)
    assert rate.nats == pytest.approx(sum(expected), abs=1e-3)
    # A ratio of dataset sums, not a mean of per-example ratios.
    assert rate.bits_per_byte == pytest.approx(sum(expected) / math.log(2) / 45, rel=1e-5)


def test_compression_rate_dict_and_empty_set():
    rate = CompressionRate(nats=2 * math.log(2), tokens=4, bytes=8)
    assert rate.as_dict() == {"bits_per_token": 0.5, "bits_per_byte": 0.25, "tokens": 4, "bytes": 8}
    assert math.isnan(CompressionRate(0.0, 0, 0).bits_per_token)


def test_callback_logs_every_evaluation_and_summarises(encoded, tmp_path):
    model = random_llama()
    initial = compression_rate_ids(model, encoded)
    train = [PreferenceExample(c, t, None, i) for i, (c, t) in enumerate(zip(encoded.contexts, encoded.tokens))]
    config = TrainConfig(model="random", objective="cross_entropy", optimizer="adam", lr=1e-2, batch_size=5,
                         max_steps=4, eval_every_steps=2)
    summary = Trainer(config, model, types.SimpleNamespace(pad_token_id=0), train, tmp_path,
                      callbacks=[CompressionCallback({"set": encoded}, batch_size=2)]).train()
    records = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if r["kind"] == "compression"]
    assert [r["step"] for r in records] == [0, 2, 4]
    assert records[0]["bits_per_token"] == pytest.approx(initial.bits_per_token, rel=1e-5)
    final = compression_rate_ids(model, encoded)
    assert records[-1]["bits_per_byte"] == pytest.approx(final.bits_per_byte, rel=1e-5)
    assert final.bits_per_token < initial.bits_per_token  # SFT on this very data compresses it better
    assert summary["compression"]["set"]["initial"]["bits_per_token"] == records[0]["bits_per_token"]
    assert summary["compression"]["set"]["final"]["bits_per_byte"] == records[-1]["bits_per_byte"]


def test_encode_texts_documents_and_pairs(tiny_base):
    from common.models import load_tokenizer
    from elasticity.compression import encode_texts

    tok = load_tokenizer(tiny_base)
    text_ids = tok("The cat sleeps.", add_special_tokens=False)["input_ids"]
    encoded = encode_texts(tok, ["The cat sleeps.", ("Question: Why?\nAnswer:\n", "Héllo.")])
    # A document is predicted from BOS and ends with EOS; its raw length is its UTF-8 bytes.
    assert encoded.contexts[0] == [tok.bos_token_id] and encoded.tokens[0] == text_ids + [tok.eos_token_id]
    # A pair scores the response only (+ EOS): the prompt is context; "Héllo." is 7 bytes (é takes two).
    assert encoded.contexts[1] == tok("Question: Why?\nAnswer:\n")["input_ids"]
    assert encoded.tokens[1] == tok("Héllo.", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert encoded.num_bytes == [15, 7]
