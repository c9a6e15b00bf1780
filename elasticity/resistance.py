"""Resistance (Ji et al., Table 1): is moving back towards an earlier checkpoint easier than moving on?

1. The training pool of an SFT set is cut into `num_slices` slices; successive SFT gives th_k =
   SFT(th_{k-1}, slice k), with th_0 the pre-trained model.
2. Every th_k answers the same held-out prompts: its responses are the data D_k.
3. For every k < l: forward alignment fine-tunes th_k on D_l (towards the later checkpoint) and inverse
   alignment fine-tunes th_l on D_k (back towards the earlier one), with the same settings.
The paper's claim: the inverse run reaches a lower training loss than the forward run for every pair.
Run directory:
    theta{k}/                        SFT on slice k (metrics.jsonl, model/, generations.jsonl)
    pairs/theta{a}_to_theta{b}/      th_a fine-tuned on D_b (forward if a < b, inverse if a > b)
Every training stage logs compression rates on the held-out generated data of both checkpoints
(`target`: D_b, `own`: D_a) and on the held-out rows of the datasets the plan names.
"""
from __future__ import annotations

import itertools
from pathlib import Path

from common.data import tokenize_preference
from common.distributed import process_state
from common.errors import DataError
from common.models import free_memory, load_tokenizer
from common.tracking import read_jsonl
from elasticity.datasets import Example, encode_examples, format_prompt, load_splits, source_of, with_label
from elasticity.stages import (
    MODEL_DIR,
    compression_sets,
    generate_rows,
    generated_set,
    load,
    remove_model,
    run_stage,
    starting_model,
    train_sft,
    write_generations,
)


def make_slices(pool: list[Example], num_slices: int, slice_size: int, source: str) -> list[list[Example]]:
    """Consecutive slices of the (shuffled) pool: `slice_size` each, or the pool split equally (-1)."""
    size = len(pool) // num_slices if slice_size < 0 else slice_size
    if size < 1 or size * num_slices > len(pool):
        raise DataError(f"{source}: {len(pool)} training rows cannot make {num_slices} slices of "
                        f"{slice_size if slice_size > 0 else 'at least 1'}: lower slice_size or num_slices")
    return [pool[i * size:(i + 1) * size] for i in range(num_slices)]


def encode_generated(config, tokenizer, rows: list[dict]) -> list:
    """Generated rows (formatted prompt, response) as SFT examples; rows over max_length are dropped."""
    examples = [tokenize_preference(tokenizer, r["prompt"], r["response"], index=i,
                                    use_chat_template=config.use_chat_template) for i, r in enumerate(rows)]
    return [e for e in examples if e.length <= config.max_length]


def pair_table(results: dict[tuple[int, int], dict], num_slices: int) -> list[dict]:
    """One row per k < l: forward (th_k on D_l) and inverse (th_l on D_k) training losses and the target
    compression after training, and whether the inverse loss is lower (the paper's 27 comparisons)."""
    rows = []
    for earlier, later in itertools.combinations(range(1, num_slices + 1), 2):
        forward, inverse = results[(earlier, later)], results[(later, earlier)]
        rows.append({"k": earlier, "l": later, "forward": pair_numbers(forward), "inverse": pair_numbers(inverse),
                     "inverse_lower": inverse["token_loss_mean"] < forward["token_loss_mean"]})
    return rows


def pair_numbers(summary: dict) -> dict:
    target = summary["compression"]["target"]
    return {"token_loss_mean": summary["token_loss_mean"], "token_loss_final": summary["token_loss_final"],
            "target_bits_per_token_initial": target["initial"]["bits_per_token"],
            "target_bits_per_token_final": target["final"]["bits_per_token"]}


def run_resistance(config, run_dir: Path) -> dict:
    base_path, facts = starting_model(config, run_dir)
    source = source_of(config.dataset, config.data_sources)
    splits = load_splits(config)
    pool = with_label(splits.train, config.dataset_polarity)
    slices = make_slices(pool, config.num_slices, config.slice_size, source)
    heldout = with_label(splits.heldout, config.dataset_polarity)[:config.num_generation_prompts]
    if len(heldout) < config.num_generation_prompts:
        raise DataError(f"{source}: {len(heldout)} held-out {config.dataset_polarity} rows for "
                        f"num_generation_prompts={config.num_generation_prompts}: raise num_heldout")
    prompts = [format_prompt(config, e.prompt) for e in heldout]
    tokenizer = load_tokenizer(base_path, trust_remote_code=config.trust_remote_code)
    dataset_sets = compression_sets(config, tokenizer)

    def theta_dir(k: int) -> Path:
        return run_dir / f"theta{k}"

    def theta_path(k: int) -> str:
        return base_path if k == 0 else str(theta_dir(k) / MODEL_DIR)

    # 1-2. Successive SFT on the slices; each checkpoint answers the held-out prompts.
    for k in range(1, config.num_slices + 1):
        def sft_slice(stage_dir: Path, k: int = k) -> dict:
            model, tok = load(config, theta_path(k - 1))
            summary = train_sft(config, stage_dir, model, tok, encode_examples(tok, slices[k - 1], config),
                                compression=dataset_sets, save=True)
            write_generations(stage_dir / "generations.jsonl", generate_rows(config, model, tok, prompts))
            del model
            free_memory()
            return summary

        run_stage(theta_dir(k), sft_slice)
    generations = {k: read_jsonl(theta_dir(k) / "generations.jsonl") for k in range(1, config.num_slices + 1)}
    num_train = config.num_generation_prompts - config.num_generation_heldout

    # 3. Forward (a < b) and inverse (a > b) fine-tuning of th_a on D_b.
    results = {}
    for a, b in itertools.permutations(range(1, config.num_slices + 1), 2):
        def pair(stage_dir: Path, a: int = a, b: int = b) -> dict:
            model, tok = load(config, theta_path(a))
            sets = {"target": generated_set(config, tok, generations[b][num_train:]),
                    "own": generated_set(config, tok, generations[a][num_train:]), **dataset_sets}
            summary = train_sft(config, stage_dir, model, tok,
                                encode_generated(config, tok, generations[b][:num_train]), compression=sets)
            del model
            free_memory()
            return {**summary, "model": a, "data": b, "direction": "forward" if a < b else "inverse"}

        results[(a, b)] = run_stage(run_dir / "pairs" / f"theta{a}_to_theta{b}", pair)
    if not config.keep_models:
        for k in range(1, config.num_slices + 1):
            remove_model(theta_dir(k))
    if not process_state().is_main_process:  # the per-token losses are read from the main process's files
        return {}

    table = pair_table(results, config.num_slices)
    return {"experiment": "resistance", "dataset": config.dataset, "model": config.model, "base_model": base_path,
            **facts, "slice_sizes": [len(s) for s in slices], "pairs": table,
            "inverse_lower": sum(r["inverse_lower"] for r in table), "comparisons": len(table)}
