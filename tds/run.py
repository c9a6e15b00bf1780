"""One TDS analysis run: (generate,) tokenize, analyse in resumable parts, merge, statistics, viewer.

The examples are cut into parts of `examples_per_part`; under `accelerate launch` / `torchrun`,
process r analyses parts r, r + N, ... and writes each finished part to run_dir/parts/, so an
interrupted run redoes at most one part per process. The main process then merges the parts into
token_shifts.parquet and examples.parquet (see tds/storage.py) and writes the HTML viewer.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from common.data import load_records
from common.distributed import process_state
from common.errors import DataError
from common.models import load_inference_model, load_tokenizer
from common.tracking import logger, read_jsonl, write_json, write_jsonl
from tds import statistics
from tds.analysis import token_shifts
from tds.config import TDSConfig
from tds.generate import generate_responses
from tds.inputs import (
    TDSRecord,
    check_same_tokenizer,
    encode_records,
    parse_records,
    read_instructions,
    resolve_base_template,
)
from tds.storage import EXAMPLE_TABLE, TOKEN_STRINGS, TOKEN_TABLE, concat_tables, read_table, write_table

RESPONSES_FILE = "responses.jsonl"


def _first(items: list, n: int) -> list:
    return items[:n] if n >= 0 else items


def generated_records(config: TDSConfig, run_dir: Path, model, tokenizer) -> list[dict]:
    """Greedy responses of the aligned model to the data's instructions (cached in responses.jsonl).

    Each process generates every N-th instruction; the main process interleaves the shards back.
    """
    path = run_dir / RESPONSES_FILE
    state = process_state()
    if not path.is_file():
        items = _first(read_instructions(load_records(config.data, split=config.split), config.data),
                       config.num_examples)
        shard = items[state.process_index::state.num_processes]
        rows = generate_responses(model, tokenizer, shard, generator=config.aligned_model,
                                  aligned_template=config.aligned_template, system_prompt=config.system_prompt,
                                  max_new_tokens=config.max_new_tokens, batch_size=config.generation_batch_size,
                                  progress=state.is_main_process)
        shard_path = run_dir / f"responses.rank{state.process_index}.jsonl"
        write_jsonl(shard_path, rows)
        state.wait_for_everyone()
        if state.is_main_process:
            shards = [read_jsonl(run_dir / f"responses.rank{r}.jsonl") for r in range(state.num_processes)]
            write_jsonl(path, [shards[i % state.num_processes][i // state.num_processes] for i in range(len(items))])
            for r in range(state.num_processes):
                (run_dir / f"responses.rank{r}.jsonl").unlink()
        state.wait_for_everyone()
    return read_jsonl(path)


def given_records(config: TDSConfig) -> list[TDSRecord]:
    return parse_records(_first(load_records(config.data, split=config.split), config.num_examples), config.data)


def part_ranges(num_examples: int, per_part: int) -> list[range]:
    return [range(s, min(s + per_part, num_examples)) for s in range(0, num_examples, per_part)]


def part_path(run_dir: Path, k: int) -> Path:
    return run_dir / "parts" / f"part-{k:06d}.parquet"


def shared_vocab_size(base_model, aligned_model, tokenizer) -> int | None:
    """None when both output layers have the same size; else the tokenizer's size (must fit both)."""
    sizes = {m.get_output_embeddings().weight.shape[0] for m in (base_model, aligned_model)}
    return None if len(sizes) == 1 else len(tokenizer)


def run_analysis(config: TDSConfig, run_dir: Path) -> dict:
    """The plan runner's run function: returns the pair's headline numbers (summary.json)."""
    state = process_state()
    if (run_dir / TOKEN_TABLE).is_file() and not (run_dir / "parts").exists():
        logger.info(f"{run_dir / TOKEN_TABLE} already merged: finishing the run")
        return statistics.summarize(read_table(run_dir / TOKEN_TABLE), len(read_table(run_dir / EXAMPLE_TABLE)["id"]))
    base_template = resolve_base_template(config.base_template, config.urial_prefix_file)
    base_tokenizer = load_tokenizer(config.base_model, trust_remote_code=config.trust_remote_code)
    tokenizer = load_tokenizer(config.aligned_model, trust_remote_code=config.trust_remote_code)
    check_same_tokenizer(base_tokenizer, tokenizer, config.base_model, config.aligned_model)

    def model(name: str):
        return load_inference_model(name, dtype=config.dtype, device=state.device,
                                    trust_remote_code=config.trust_remote_code)

    records = None if config.generate else given_records(config)  # bad data fails before models load
    aligned_model = model(config.aligned_model)
    if config.generate:
        records = parse_records(generated_records(config, run_dir, aligned_model, tokenizer),
                                str(run_dir / RESPONSES_FILE))
    if not records:
        raise DataError(f"{config.data}: no examples to analyse")
    encoded = encode_records(records, base_tokenizer, tokenizer, base_template=base_template,
                             aligned_template=config.aligned_template, system_prompt=config.system_prompt,
                             use_record_prompt=config.use_record_prompt, include_eos=config.include_eos,
                             max_response_tokens=config.max_response_tokens)
    if not any(encoded.response_ids):  # else the run "finishes" with NaN ratios and an empty table
        source = run_dir / RESPONSES_FILE if config.generate else config.data
        raise DataError(f"{source}: all {len(records)} responses are empty: no response token to analyse")
    base_model = model(config.base_model)
    vocab_size = shared_vocab_size(base_model, aligned_model, tokenizer)

    parts = part_ranges(len(records), config.examples_per_part)
    mine = [k for k in range(len(parts)) if k % state.num_processes == state.process_index]
    todo = [k for k in mine if not part_path(run_dir, k).is_file()]
    logger.info(f"process {state.process_index} of {state.num_processes}: {len(todo)} of its {len(mine)} parts "
                f"to analyse ({len(parts)} parts of up to {config.examples_per_part} examples in all)")
    from tqdm.auto import tqdm

    for k in tqdm(todo, desc="token shifts", unit="part", disable=not state.is_main_process):
        part = parts[k]
        columns = token_shifts(base_model, aligned_model, [encoded.base_prompt_ids[i] for i in part],
                               [encoded.aligned_prompt_ids[i] for i in part], [encoded.response_ids[i] for i in part],
                               top_k=config.top_k, unshifted_max_rank=config.unshifted_max_rank,
                               marginal_max_rank=config.marginal_max_rank, batch_size=config.batch_size,
                               positions_per_chunk=config.positions_per_chunk, vocab_size=vocab_size)
        columns["example"] += part.start
        write_table(part_path(run_dir, k), columns)
    state.wait_for_everyone()
    summary = {}
    if state.is_main_process:
        summary = merge_parts(config, run_dir, records, encoded, tokenizer, len(parts))
    state.wait_for_everyone()
    return summary


def merge_parts(config: TDSConfig, run_dir: Path, records: list[TDSRecord], encoded, tokenizer,
                num_parts: int) -> dict:
    """Parts -> token_shifts.parquet, examples.parquet, tokens.json and the viewer; returns the summary."""
    table = concat_tables([read_table(part_path(run_dir, k)) for k in range(num_parts)])
    write_table(run_dir / TOKEN_TABLE, table)
    per_example = statistics.per_example(table, len(records))
    write_table(run_dir / EXAMPLE_TABLE, {
        "example": np.arange(len(records)), "id": [r.id for r in records],
        "instruction": [r.instruction for r in records], "response": [r.response for r in records],
        "base_prompt": [tokenizer.decode(ids) for ids in encoded.base_prompt_ids],
        "aligned_prompt": [tokenizer.decode(ids) for ids in encoded.aligned_prompt_ids], **per_example})
    ids = np.unique(np.concatenate([table["token_id"], table["base_topk_ids"].ravel(),
                                    table["aligned_topk_ids"].ravel()]))
    write_json(run_dir / TOKEN_STRINGS, {int(i): tokenizer.decode([int(i)]) for i in ids})
    if config.viewer_examples:
        from tds.viewer import write_viewer

        write_viewer(run_dir, run_dir / "viewer", max_examples=config.viewer_examples)
    shutil.rmtree(run_dir / "parts")
    summary = statistics.summarize(table, len(records))
    logger.info("positions: " + ", ".join(f"{k.removesuffix('_ratio')} {summary[k]:.1%}"
                                          for k in ("unshifted_ratio", "marginal_ratio", "shifted_ratio")))
    return summary
