"""Compute the preference-similarity measures of every example of a preference set, resumably.

    python -m pref_similarity.compute --model M --dataset D --output_dir O \\
        [--num_train_samples N --train_samples_random_seed S --max_input_length L]

Writes `O/<model name>_<dataset name>/`:
- `preference_similarities.jsonl`: one row per example, keyed by its row index in the dataset split
  (`ches.similarity_file` format), appended chunk by chunk as examples finish;
- `info.json`: the settings the rows were computed with and, once finished, the counts.
Examples longer than `max_input_length` (prompt + response, in tokens) are truncated as the public
code truncates them (`common.preference_data.Tokenization`, the same as training); only an example
with an empty response after truncation is dropped.
`num_train_samples` are drawn as the public script draws them (`--sample_draw randperm`, the default):
`torch.randperm(rows in the split, generator=torch.Generator().manual_seed(seed))[:num_train_samples]`
over the whole split, so seed 548 selects the paper's 5000 UltraFeedback examples; an example of the draw
that is then dropped (an empty response after truncation) is lost. `--sample_draw after_drop` (ours)
drops first and draws from the examples kept (`random.Random(seed).sample`), so the requested count is met.
Re-running the same command after an interruption computes only the examples not in the file yet;
other settings in the same directory are an error.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ches.measures import response_end_ids, similarity_rows
from ches.similarity_file import FILE_NAME, append_rows, drop_partial_last_line, read_similarities
from common.cli import command_main
from common.config import option
from common.data import PROMPT_FORMATS, subsample
from common.errors import ConfigError, DataError
from common.preference_data import TRUNCATION_MODES, Tokenization, tokenize_pairs
from common.tracking import logger, read_json, setup_console_logging, write_json
from pref_similarity.preference_sets import FORMATS, dataset_identity, load_preference_set

INFO_FILE = "info.json"
SAMPLE_DRAWS = ("randperm", "after_drop")


def draw_examples(examples: list, num_rows: int, num_samples: int, seed: int, draw: str) -> list:
    """The examples of `num_samples` drawn with `draw` (see the module doc); all of them when -1.

    `num_rows` is the size of the whole split: the public draw permutes the row indices of the split
    (an example's `index`), not the examples left after dropping."""
    if draw == "after_drop":
        return subsample(examples, num_samples, seed)
    if num_samples < 0:
        return list(examples)
    drawn = set(torch.randperm(num_rows, generator=torch.Generator().manual_seed(seed))[:num_samples].tolist())
    return [e for e in examples if e.index in drawn]


def similarity_dir(output_dir: str | Path, model: str, dataset: str) -> Path:
    """`output_dir/<model name>_<dataset name>`, e.g. outputs/pref_similarity/OLMo-1B-hf_ultrafeedback_binarized."""
    return Path(output_dir) / f"{Path(model.rstrip('/')).name}_{Path(dataset.rstrip('/')).stem}"


@dataclass
class ComputeOptions:
    model: str = option(help="hub id or local path of a causal LM")
    dataset: str = option(help="hub id, .jsonl/.json file or directory of a preference set")
    output_dir: str = option("outputs/pref_similarity")
    format: str = option("auto", choices=list(FORMATS), help="preference set format (auto: from the fields)")
    split: str = option("", help="default: train_prefs / preference for the paper's hub datasets, else train")
    dataset_config: str = option("", help="hub dataset config name (default for AlpacaFarm: alpaca_human_preference)")
    num_train_samples: int = option(-1, help="examples drawn at random; -1 = all")
    train_samples_random_seed: int = option(0)
    sample_draw: str = option("randperm", choices=list(SAMPLE_DRAWS),
                              help="randperm: the public draw over the whole split (seed 548 = the paper's "
                                   "examples); after_drop: drawn from the examples that fit, count met")
    max_input_length: int = option(512, help="prompt + response tokens (TRL's max_length, as training's "
                                             "max_length); longer examples are truncated; -1 = no limit")
    max_prompt_length: int = option(-1, help="prompt tokens kept; -1 = no limit")
    truncation_mode: str = option("keep_start", choices=list(TRUNCATION_MODES))
    use_chat_template: str = option("auto", choices=["auto", "true", "false"],
                                    help="auto: use the tokenizer's chat template when it has one")
    prompt_format: str = option("text", choices=list(PROMPT_FORMATS),
                                help="without a chat template (as training's prompt_format)")
    prompt_separator: str = option("\n", help="prompt_format text: written after each prompt message")
    layer: int = option(-1, help="hidden layer of CHES and the last-hidden inner product")
    dtype: str = option("float32", choices=["float32", "bfloat16", "float16"],
                        help="weights dtype (hidden-state sums are accumulated in float32 either way)")
    batch_size: int = option(16, min=1, help="sequences per forward (pairs per appended chunk)")
    device: str = option("auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    trust_remote_code: bool = option(False)


def chat_template_flag(value: str) -> Optional[bool]:
    return {"auto": None, "true": True, "false": False}[value]


def resolve_compute_device(value: str) -> torch.device:
    """The --device flag as a torch device ("auto": cuda when available), or a ConfigError."""
    from common.models import resolve_device

    try:
        device = resolve_device(None if value == "auto" else value)
    except RuntimeError:
        raise ConfigError(f"--device {value!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {value!r}: CUDA is not available on this machine; use auto or cpu")
    return device


def check_layer(layer: int, model) -> None:
    """`--layer` must name a hidden state: 0 (embeddings) .. L, or -(L+1) .. -1, with L decoder layers."""
    num_layers = getattr(model.config, "num_hidden_layers", None)
    if num_layers is not None and not -(num_layers + 1) <= layer <= num_layers:
        raise ConfigError(f"--layer {layer}: the model has {num_layers} layers; use -1 (final) or a layer "
                          f"in {-(num_layers + 1)}..{num_layers} (0 = the embeddings)")


def check_settings(out_dir: Path, settings: dict) -> None:
    """The rows already in `out_dir` must come from the same settings, or resuming would mix them."""
    info_path = out_dir / INFO_FILE
    if not info_path.exists():
        return
    stored = read_json(info_path).get("settings", {})
    diffs = [f"{k}: {stored.get(k)!r} -> {settings.get(k)!r}" for k in sorted(set(stored) | set(settings))
             if stored.get(k) != settings.get(k)]
    if diffs:
        raise ConfigError(f"{out_dir}: holds similarities computed with other settings ({'; '.join(diffs[:3])}); "
                          f"choose another --output_dir or delete that directory")


def compute(args: ComputeOptions) -> Path:
    from tqdm.auto import tqdm

    from common.models import add_prompt_format_tokens, load_for_inference

    setup_console_logging()
    started = time.time()
    out_dir = similarity_dir(args.output_dir, args.model, args.dataset)
    settings = {"model": args.model, "dataset": dataset_identity(args.dataset), "format": args.format,
                "split": args.split, "dataset_config": args.dataset_config,
                "num_train_samples": args.num_train_samples,
                "train_samples_random_seed": args.train_samples_random_seed, "sample_draw": args.sample_draw,
                "max_input_length": args.max_input_length, "max_prompt_length": args.max_prompt_length,
                "truncation_mode": args.truncation_mode, "use_chat_template": args.use_chat_template,
                "prompt_format": args.prompt_format, "prompt_separator": args.prompt_separator,
                "layer": args.layer, "dtype": args.dtype}
    check_settings(out_dir, settings)
    device = resolve_compute_device(args.device)

    preference_set = load_preference_set(args.dataset, format=args.format, split=args.split,
                                         config_name=args.dataset_config, format_field="--format")
    model, tokenizer = load_for_inference(args.model, dtype=args.dtype, device=device,
                                          trust_remote_code=args.trust_remote_code)
    tokenization = Tokenization(args.max_input_length, args.max_prompt_length, args.truncation_mode,
                             chat_template_flag(args.use_chat_template), args.prompt_format, args.prompt_separator)
    add_prompt_format_tokens(model, tokenizer, tokenization.prompt_format, tokenization.use_chat_template)
    check_layer(args.layer, model)

    examples, counts = tokenize_pairs(preference_set.rows, tokenizer, tokenization, source=args.dataset)
    examples = draw_examples(examples, len(preference_set.rows), args.num_train_samples,
                             args.train_samples_random_seed, args.sample_draw)
    if not examples:
        raise DataError(f"{args.dataset}: no example to compute ({counts.dropped_empty_response} of "
                        f"{len(preference_set.rows)} have an empty response after truncation to --max_input_length "
                        f"{args.max_input_length}, --num_train_samples {args.num_train_samples})")
    logger.info(f"{preference_set.source} ({preference_set.format}, {len(preference_set.rows)} rows): "
                f"{len(examples)} examples")

    write_json(out_dir / INFO_FILE, {"settings": settings, "complete": False})
    path = out_dir / FILE_NAME
    drop_partial_last_line(path)
    done = set(read_similarities(path)) if path.exists() else set()
    end_ids = response_end_ids(tokenizer, chat_template_flag(args.use_chat_template))
    todo = sorted((e for e in examples if e.index not in done), key=lambda e: e.length)  # length-bucketed chunks
    if done:
        logger.info(f"resuming: {len(examples) - len(todo)} examples already in {path}")
    with tqdm(total=len(examples), initial=len(examples) - len(todo), desc="similarities", unit="pair") as bar:
        for start in range(0, len(todo), args.batch_size):
            chunk = todo[start:start + args.batch_size]
            append_rows(path, similarity_rows(model, chunk, end_ids=end_ids, batch_size=args.batch_size,
                                              layer=args.layer))
            bar.update(len(chunk))

    write_json(out_dir / INFO_FILE, {"settings": settings, "complete": True, "num_examples": len(examples),
                                     "truncation": counts.as_dict(), "dataset_rows": len(preference_set.rows),
                                     "resolved_format": preference_set.format, "resolved_split": preference_set.split,
                                     "seconds": round(time.time() - started, 1)})
    logger.info(f"wrote {path}")
    return out_dir


def main(argv=None) -> Path:
    return command_main("python -m pref_similarity.compute", __doc__.splitlines()[0], ComputeOptions, compute, argv)


if __name__ == "__main__":
    main()
