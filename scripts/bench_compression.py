"""Compression-rate benchmark: elasticity.compression against two usual recipes, same numbers, time and memory.

    python scripts/bench_compression.py [--examples 64] [--vocab 32000] [--threads 1]

On a random Llama with a real-size vocabulary and prompt/response lengths like an SFT set:
- per_example_hf_loss: one forward per example with `labels` (prompt masked with -100), loss * tokens;
- batched_full_logits: padded batches, full (B, T, V) logits, log_softmax, gather on response tokens;
- ours: `compression_rate_ids` (length-sorted batches, unembedding only at response positions).
Each method runs in its own process, so that its peak resident memory (ru_maxrss) is its own. Prints
bits/token of each method (they must agree), seconds, tokens/s and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

METHODS = ("per_example_hf_loss", "batched_full_logits", "ours")


def make_model(vocab: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=4, max_position_embeddings=512, tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


def make_data(n: int, vocab: int):
    import torch

    g = torch.Generator().manual_seed(1)
    contexts = [torch.randint(3, vocab, (int(torch.randint(32, 160, (1,), generator=g)),), generator=g).tolist()
                for _ in range(n)]
    tokens = [torch.randint(3, vocab, (int(torch.randint(16, 128, (1,), generator=g)),), generator=g).tolist()
              for _ in range(n)]
    return contexts, tokens


def run_method(method: str, n: int, vocab: int, batch_size: int) -> dict:
    import torch

    from common.data import collate_sequences
    from elasticity.compression import EncodedTexts, compression_rate_ids

    model = make_model(vocab)
    contexts, tokens = make_data(n, vocab)
    start = time.perf_counter()
    with torch.no_grad():
        if method == "per_example_hf_loss":
            nats = 0.0
            for c, t in zip(contexts, tokens):
                ids = torch.tensor([c + t])
                labels = ids.clone()
                labels[0, :len(c)] = -100
                nats += model(input_ids=ids, labels=labels).loss.item() * len(t)
        elif method == "batched_full_logits":
            nats = 0.0
            for s in range(0, n, batch_size):
                batch = collate_sequences(contexts[s:s + batch_size], tokens[s:s + batch_size], 0)
                logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
                logp = torch.log_softmax(logits.float(), -1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
                nats -= (logp * batch.completion_mask[:, 1:]).sum().item()
        else:
            rate = compression_rate_ids(model, EncodedTexts(contexts, tokens, [1] * n), batch_size=batch_size)
            nats = rate.nats
    seconds = time.perf_counter() - start
    num_tokens = sum(map(len, tokens))
    return {"method": method, "bits_per_token": nats / math.log(2) / num_tokens, "seconds": seconds,
            "tokens_per_second": num_tokens / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = stable timings on a shared CPU)")
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)  # one method, in a child process
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.method:
        print(json.dumps(run_method(args.method, args.examples, args.vocab, args.batch_size)))
        return 0
    results = []
    for method in METHODS:
        out = subprocess.run([sys.executable, __file__, "--method", method, "--examples", str(args.examples),
                              "--vocab", str(args.vocab), "--batch_size", str(args.batch_size),
                              "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{args.examples} examples, vocab {args.vocab}, batch {args.batch_size}, {args.threads} thread(s)")
    print(f"{'method':22s} {'bits/token':>11s} {'seconds':>8s} {'tokens/s':>9s} {'peak RSS MB':>12s}")
    for r in results:
        print(f"{r['method']:22s} {r['bits_per_token']:11.6f} {r['seconds']:8.2f} {r['tokens_per_second']:9.0f} "
              f"{r['peak_rss_mb']:12.0f}")
    spread = max(r["bits_per_token"] for r in results) - min(r["bits_per_token"] for r in results)
    print(f"largest difference in bits/token between methods: {spread:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
