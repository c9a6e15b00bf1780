"""TDS analysis: our single pass against the per-position method of the public AlignTDS code.

Same tiny pair (tiny-base vs tiny-chat), same 32 responses of 256 tokens, both models:
- per-position (AlignTDS logit_analysis.py): for every response token, one forward over the whole
  prefix (no cache), softmax, top-30 as dicts {token_id, token, logit, prob} plus the decoded
  prefix, pickled; once for the aligned model (i2i) and once for the base model (i2b);
- ours: `tds.analysis.token_shifts` (one forward per model per batch of 8 responses, full-vocabulary
  ranks/KL/entropies and top-10 of both models), written as token_shifts.parquet + tokens.json.
Reported: wall-clock and CPU seconds and their ratios, bytes stored per response position and their ratio,
and the agreement of the two methods (the base rank of each token, where it is in the top 30).

    python scripts/bench_tds.py [--responses 32] [--tokens 256] [--baseline_responses 32] [--base M --aligned M]

`--baseline_responses N < responses` times the per-position method on N responses and scales its
time and bytes linearly (it is linear in the number of responses). Not a test: record the printed
lines in docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import datetime
import pickle
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common.models import load_model, load_tokenizer
from tds.analysis import token_shifts
from tds.inputs import aligned_prompt_text, encode_text
from tds.storage import TOKEN_STRINGS, TOKEN_TABLE, write_table
from tiny.corpus.instructions import instruction_records, plain_prompt
from tiny.corpus.mixtures import base_corpus_texts

REPO = Path(__file__).resolve().parents[1]


def bench_inputs(tokenizer, n: int, length: int):
    """n instructions with both prompts, and n responses of exactly `length` tokens of tiny-corpus text."""
    stream = []
    for text in base_corpus_texts(400, seed=7):
        stream.extend(tokenizer(text + "\n", add_special_tokens=False)["input_ids"])
    responses = [stream[i * length:(i + 1) * length] for i in range(n)]
    instructions = [r["instruction"] for r in instruction_records(n, seed=7)]
    base_prompts = [encode_text(tokenizer, plain_prompt(x)) for x in instructions]
    aligned_prompts = [encode_text(tokenizer, aligned_prompt_text(tokenizer, x)) for x in instructions]
    return base_prompts, aligned_prompts, responses


@torch.no_grad()
def per_position_logits(model, tokenizer, prompt_ids, response_ids, top_k=30) -> list[dict]:
    """AlignTDS's get_logits: one forward per response token over the full prefix; top-k dicts + prefix."""
    input_ids = torch.tensor([prompt_ids])
    results = []
    for token in response_ids:
        logits = model(input_ids).logits[:, -1, :]
        probs = torch.softmax(logits, dim=-1)
        top = logits.topk(k=top_k).indices[0].numpy()
        logits, probs = logits[0].numpy(), probs[0].numpy()
        prefix = tokenizer.decode(input_ids[0])
        results.append({"tokens": [{"token_id": t, "token": tokenizer.decode(t), "logit": logits[t], "prob": probs[t]}
                                   for t in top], "prefix": prefix})
        input_ids = torch.cat([input_ids, torch.tensor([[token]])], dim=1)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--baseline_responses", type=int, default=None, help="default: all responses")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--base", default=str(REPO / "outputs/tiny_models/tiny-base"))
    parser.add_argument("--aligned", default=str(REPO / "outputs/tiny_models/tiny-chat"), help="(built by make tiny)")
    args = parser.parse_args(argv)
    baseline_n = args.baseline_responses or args.responses

    torch.set_num_threads(2)
    tokenizer = load_tokenizer(args.aligned)
    base, aligned = load_model(args.base).eval(), load_model(args.aligned).eval()
    base_prompts, aligned_prompts, responses = bench_inputs(tokenizer, args.responses, args.tokens)
    positions = args.responses * args.tokens

    with tempfile.TemporaryDirectory() as tmp:
        start, cpu_start = time.perf_counter(), time.process_time()
        columns = token_shifts(base, aligned, base_prompts, aligned_prompts, responses, top_k=10,
                               batch_size=args.batch_size)
        ours_compute = time.perf_counter() - start
        write_table(Path(tmp) / TOKEN_TABLE, columns)
        ids = np.unique(np.concatenate([columns["token_id"], columns["base_topk_ids"].ravel(),
                                        columns["aligned_topk_ids"].ravel()]))
        import json

        (Path(tmp) / TOKEN_STRINGS).write_text(json.dumps({int(i): tokenizer.decode([int(i)]) for i in ids}))
        ours_seconds, ours_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        ours_bytes = sum(f.stat().st_size for f in Path(tmp).iterdir())

        from tqdm.auto import tqdm

        start, cpu_start = time.perf_counter(), time.process_time()
        i2i = [{"id": i, "results": per_position_logits(aligned, tokenizer, aligned_prompts[i], responses[i])}
               for i in tqdm(range(baseline_n), desc="per-position i2i", unit="response")]
        i2b = [{"id": i, "results": per_position_logits(base, tokenizer, base_prompts[i], responses[i])}
               for i in tqdm(range(baseline_n), desc="per-position i2b", unit="response")]
        baseline_bytes = 0
        for name, data in (("i2i", i2i), ("i2b", i2b)):
            path = Path(tmp) / f"{name}.pkl"
            with open(path, "wb") as f:
                pickle.dump(data, f)
            baseline_bytes += path.stat().st_size
        scale = args.responses / baseline_n
        baseline_seconds = (time.perf_counter() - start) * scale
        baseline_cpu = (time.process_time() - cpu_start) * scale
        baseline_bytes *= scale

    # Agreement: the base rank of o_t from the top-30 lists equals ours wherever o_t is in them.
    agree = total = 0
    for i in range(baseline_n):
        for t, entry in enumerate(i2b[i]["results"]):
            top_ids = [int(d["token_id"]) for d in entry["tokens"]]
            j = i * args.tokens + t
            if responses[i][t] in top_ids:
                total += 1
                agree += top_ids.index(responses[i][t]) == columns["base_rank"][j]
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {datetime.date.today().isoformat()}")
    print(f"{args.responses} responses x {args.tokens} tokens = {positions} positions, both models"
          + (f" (per-position method timed on {baseline_n} responses, scaled)" if baseline_n < args.responses else ""))
    print(f"wall time: ours {ours_seconds:.2f}s (analysis {ours_compute:.2f}s + writing), per-position "
          f"{baseline_seconds:.1f}s -> {baseline_seconds / ours_seconds:.0f}x faster")
    print(f"CPU time (less sensitive to other load on the machine): ours {ours_cpu:.2f}s, per-position "
          f"{baseline_cpu:.1f}s -> {baseline_cpu / ours_cpu:.0f}x less")
    print(f"bytes per position: ours {ours_bytes / positions:.0f} (parquet + token strings, top-10 of both, "
          f"full-vocab ranks/KL/entropies), per-position {baseline_bytes / positions:.0f} (pickled top-30 dicts + "
          f"prefixes) -> {ours_bytes / baseline_bytes:.4f} = 1/{baseline_bytes / ours_bytes:.0f}")
    print(f"agreement: base rank equal at {agree}/{total} positions where the token is in the top 30")


if __name__ == "__main__":
    main()
