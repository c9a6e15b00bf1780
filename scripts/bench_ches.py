"""Preference-similarity throughput: our batched pass against the public code's per-example loop.

Both compute CHES, LN-CHES, the last-hidden inner product and the minus normalised edit distance of
the same examples (the first N pairs of the tiny UltraFeedback fixture, tokenized as for training):
- ours: `ches.measures.similarity_rows`: length-sorted batches holding both sequences of
  the pairs, the decoder's final hidden states only (no logits), rapidfuzz edit distance;
- public: per example, batch 1, two forwards of the full model with `output_hidden_states=True`
  (every layer's states and the logits), and the pure-Python edit-distance double loop of
  compute_preference_similarity_per_example.py.
Reported: examples/s of the hidden-state measures and of the edit distance separately and in total
(best of --repeats timings: on a shared machine other jobs only add time), the ratios, and the
largest disagreement between the two (they compute the same numbers).

    python scripts/bench_ches.py [--model PATH] [--vocab 32000] [--examples 256] [--batch_size 16] [--threads 2]
                                 [--repeats 3]

One table for --model (default tiny-chat) and, unless --vocab 0, one for a random Llama of the same
shape and tokenizer with a --vocab-token LM head: there the public forwards' unused full-vocabulary
logits cost what a realistic vocabulary costs.

Not a test: CI times nothing. Record the printed table in docs/BENCHMARKS.md ("CHES").
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch
from _random_models import random_llama  # scripts/, this file's directory

REPO = Path(__file__).resolve().parents[1]

FIXTURE = REPO / "data_files" / "pref_similarity" / "ultrafeedback_tiny.jsonl"


def python_normalized_edit_distance(seq1, seq2) -> float:
    """The public script's two-row dynamic programme (from torchaudio's edit_distance), kept as is."""
    dold = list(range(len(seq2) + 1))
    dnew = [0] * (len(seq2) + 1)
    for i in range(1, len(seq1) + 1):
        dnew[0] = i
        for j in range(1, len(seq2) + 1):
            if seq1[i - 1] == seq2[j - 1]:
                dnew[j] = dold[j - 1]
            else:
                dnew[j] = min(dold[j - 1] + 1, dnew[j - 1] + 1, dold[j] + 1)
        dnew, dold = dold, dnew
    return dold[-1] / max(len(seq1), len(seq2))


@torch.no_grad()
def public_hidden_measures(model, examples) -> list[tuple[float, float, float]]:
    """Per example: two batch-1 forwards with all hidden states; sums over the |y| predicting positions."""
    out = []
    for e in examples:
        states = []
        for response in (e.chosen_ids, e.rejected_ids):
            ids = torch.tensor([e.prompt_ids + response])
            hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
            states.append(hidden[len(e.prompt_ids) - 1:-1].double())
            states.append(hidden[-1].double())
        pos, pos_last, neg, neg_last = states
        s_pos, s_neg = pos.sum(0), neg.sum(0)
        ches = s_pos @ s_neg - s_pos @ s_pos
        ln_ches = s_pos @ s_neg / (len(pos) * len(neg)) - s_pos @ s_pos / len(pos) ** 2
        out.append((ches.item(), ln_ches.item(), (pos_last @ neg_last).item()))
    return out


def timed(fn, repeats: int):
    """Result and the best of `repeats` wall times: other jobs on a shared machine only add time."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return result, best


def largest_gap(ours: list[tuple], public: list[tuple]) -> float:
    """Largest |ours - public| of each measure relative to that measure's largest |value|."""
    gaps = []
    for k in range(len(public[0])):
        scale = max(abs(p[k]) for p in public)
        gaps.append(max(abs(o[k] - p[k]) for o, p in zip(ours, public)) / scale)
    return max(gaps)


def random_twin(model_path: str, vocab: int) -> str:
    """A random Llama of `model_path`'s shape (and tokenizer) with a `vocab`-token vocabulary, built once."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model_path)
    return random_llama(REPO / "outputs" / "bench_models" / f"{Path(model_path).name}-shape-v{vocab}", vocab_size=vocab,
                        hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
                        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                        num_key_value_heads=c.num_key_value_heads, tokenizer_from=Path(model_path).name)


def bench_model(model_path: str, args) -> None:
    """Time both methods on `model_path` and print one table."""
    from ches.ches import ches_from_sums, hidden_state_sums
    from ches.measures import minus_normalized_edit_distance
    from common.models import load_model_and_tokenizer
    from common.preference_data import Tokenization, tokenize_pairs
    from pref_similarity.preference_sets import load_preference_set

    model, tokenizer = load_model_and_tokenizer(model_path)
    model.eval()
    examples, _ = tokenize_pairs(load_preference_set(str(FIXTURE)).rows, tokenizer, Tokenization(), source=str(FIXTURE))
    examples = examples[:args.examples]
    n = len(examples)
    public_hidden_measures(model, examples[:4])  # warm-up (allocator, kernels) for both sides
    hidden_state_sums(model, [e.prompt_ids for e in examples[:4]], [e.chosen_ids for e in examples[:4]],
                      [e.rejected_ids for e in examples[:4]])

    def ours_hidden():
        sums = hidden_state_sums(model, [e.prompt_ids for e in examples], [e.chosen_ids for e in examples],
                                 [e.rejected_ids for e in examples], batch_size=args.batch_size)
        scores = ches_from_sums(sums)
        inner = (sums["preferred_last"].double() * sums["dispreferred_last"].double()).sum(-1)
        return list(zip(scores["ches"].tolist(), scores["ln_ches"].tolist(), inner.tolist()))

    ours, t_ours = timed(ours_hidden, args.repeats)
    public, t_public = timed(lambda: public_hidden_measures(model, examples), args.repeats)
    ours_ed, t_ours_ed = timed(lambda: [minus_normalized_edit_distance(e.chosen_ids, e.rejected_ids)
                                        for e in examples], args.repeats)
    public_ed, t_public_ed = timed(lambda: [-python_normalized_edit_distance(e.chosen_ids, e.rejected_ids)
                                            for e in examples], args.repeats)
    gap = largest_gap(ours, public)
    ed_gap = max(abs(a - b) for a, b in zip(ours_ed, public_ed))

    tokens = sum(2 * len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in examples)
    rows = [("hidden-state measures (CHES, LN-CHES, last inner)", t_ours, t_public),
            ("edit distance", t_ours_ed, t_public_ed),
            ("all four measures", t_ours + t_ours_ed, t_public + t_public_ed)]
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} | {platform.processor() or platform.machine()}, "
          f"{args.threads} threads, best of {args.repeats}, load average {load} | torch {torch.__version__} | "
          f"{Path(model_path).name} (vocab {model.config.vocab_size}), {n} pairs, {tokens} tokens, "
          f"batch {args.batch_size} rows")
    print("| part | ours (examples/s) | public method (examples/s) | ratio |")
    print("|---|---|---|---|")
    for name, ours_s, public_s in rows:
        print(f"| {name} | {n / ours_s:.1f} | {n / public_s:.1f} | {public_s / ours_s:.1f}x |")
    print(f"largest difference of the hidden-state measures (relative to each measure's range): {gap:.1e}; "
          f"of the edit distance: {ed_gap:.1e}")


def main() -> None:
    from tiny.build import tiny_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: the tiny chat model")
    parser.add_argument("--vocab", type=int, default=32000,
                        help="also a random model of --model's shape with this vocabulary (0: --model only)")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="report the best of this many timings per side")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_path = args.model or tiny_model_path("tiny-chat")
    for path in [model_path] + ([random_twin(model_path, args.vocab)] if args.vocab else []):
        bench_model(path, args)


if __name__ == "__main__":
    main()
