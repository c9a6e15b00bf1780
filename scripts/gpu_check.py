"""GPU check (issue 12): one JSON of figures, self-contained (no hub: random-weight models from a config,
pairs from the fixtures, the tiny tokenizer), under 8 minutes on one GPU.

- our DPO step vs TRL's DPOTrainer (default, and precompute_ref_log_probs=True), bf16, on a ~1.5B Llama with
  a 128k vocabulary: tokens/s and peak CUDA memory;
- our trainer with `fsdp: true` on one GPU (a 1-rank FSDP2 group);
- the Persona tracker's (NextTokenTracker) overhead per step.

`--dry` runs the same code on CPU with a tiny model and a few steps (the suite runs it); peak memory is
then None (there is no CUDA allocator to ask).
    python scripts/gpu_check.py [--dry] [--out gpu_check.json]
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from _random_models import random_llama  # noqa: E402  (scripts/, this file's directory)

FULL = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
            num_key_value_heads=8, vocab_size=128256, steps=10, pairs=64, batch_size=8)
DRY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, vocab_size=4096, steps=2, pairs=8, batch_size=4)


def rows(n: int) -> list[dict]:
    from pref_similarity.fixtures import plain_rows

    return plain_rows(n, seed=0)


def measured(fn) -> dict:
    """Seconds and peak CUDA memory of fn() (None on CPU)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    start = time.perf_counter()
    extra = fn() or {}
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"seconds": time.perf_counter() - start, "peak_cuda_gib": peak, **extra}


def ours(model_path: str, sizes: dict, work: Path, name: str, *, fsdp: bool = False, tracker: bool = False):
    from common.data import tokenize_preference
    from common.models import load_model_and_tokenizer
    from common.trainer import Trainer
    from train_preferences.config import PreferenceRunConfig

    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(model_path)
    examples = [tokenize_preference(tokenizer, r["prompt"], r["chosen"], r["rejected"], index=i)
                for i, r in enumerate(rows(sizes["pairs"]))]
    config = PreferenceRunConfig(model=model_path, dataset="-", objective="dpo", optimizer="adamw", lr=1e-5,
                                 batch_size=sizes["batch_size"], max_steps=sizes["steps"], shuffle=False,
                                 precision="bf16", fsdp=fsdp)
    callbacks = []
    if tracker:
        from common.data import PreferenceExample
        from persona_experiments.next_token import NextTokenTracker

        e = examples[0]
        callbacks = [NextTokenTracker(PreferenceExample(e.prompt_ids, e.chosen_ids[:1], e.rejected_ids[:1]), tokenizer)]
    trainer = Trainer(config, model, tokenizer, examples, work / name, callbacks=callbacks)
    tokens = sizes["steps"] * sum(2 * len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids)
                                  for e in examples[:sizes["batch_size"]])
    result = measured(lambda: {"train_tokens_per_second": trainer.train()["train_tokens_per_second"]})
    result["tokens_approx"] = tokens
    return result


def trl(model_path: str, sizes: dict, work: Path, name: str, *, precompute: bool):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from common.models import load_model_and_tokenizer

    torch.manual_seed(0)
    model, tokenizer = load_model_and_tokenizer(model_path)
    dataset = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows(sizes["pairs"])])
    config = DPOConfig(output_dir=str(work / name), per_device_train_batch_size=sizes["batch_size"],
                       learning_rate=1e-5, lr_scheduler_type="constant", max_steps=sizes["steps"], beta=0.1,
                       report_to=[], save_strategy="no", use_cpu=not torch.cuda.is_available(),
                       bf16=torch.cuda.is_available(), dataloader_num_workers=0, seed=0, disable_tqdm=True,
                       precompute_ref_log_probs=precompute)
    trainer = DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    result = measured(lambda: {"train_samples_per_second": trainer.train().metrics.get("train_samples_per_second")})
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny sizes, a few steps")
    parser.add_argument("--out", default="gpu_check.json")
    args = parser.parse_args(argv)
    sizes = DRY if args.dry else FULL
    if not args.dry and not torch.cuda.is_available():
        sys.exit("error: no CUDA device; run with --dry on CPU")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_path = random_llama(work / "model", **{k: v for k, v in sizes.items()
                                                      if k not in ("steps", "pairs", "batch_size")})
        figures = {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                   "dry": args.dry, "sizes": sizes}
        ours(model_path, sizes, work, "warm_up")  # kernels, allocator: the first run would pay them
        figures["ours"] = ours(model_path, sizes, work, "ours")
        figures["ours_tracker"] = ours(model_path, sizes, work, "ours_tracker", tracker=True)
        figures["tracker_overhead_seconds_per_step"] = (
            (figures["ours_tracker"]["seconds"] - figures["ours"]["seconds"]) / sizes["steps"])
        figures["trl_default"] = trl(model_path, sizes, work, "trl", precompute=False)
        figures["trl_precompute_ref"] = trl(model_path, sizes, work, "trl_pre", precompute=True)
        figures["ours_fsdp_1gpu"] = ours(model_path, sizes, work, "ours_fsdp", fsdp=True)
    Path(args.out).write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
