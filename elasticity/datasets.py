"""The paper's datasets by hub name or local file, as prompt/response examples with an optional label.

| name        | hub id (config, split)                | prompt                      | response    | label (1=positive) |
|-------------|---------------------------------------|-----------------------------|-------------|--------------------|
| alpaca      | tatsu-lab/alpaca (train)              | instruction [+ "\\n" input] | output      | -                  |
| truthful_qa | truthful_qa (generation, validation)  | question                    | best_answer | -                  |
| beavertails | PKU-Alignment/BeaverTails (30k_train) | prompt                      | response    | is_safe            |
| imdb        | stanfordnlp/imdb (train)              | first N words of text       | the rest    | label              |
| text        | (a local file of documents)           | -                           | text        | -                  |

A local source is a .jsonl/.json file or a directory holding `<split>.jsonl` with the hub's columns;
data_files/elasticity/ has small samples in these schemas (written by `python -m elasticity.fixtures`).
Held-out rows come from one seeded shuffle of the split: the first `num_heldout` rows are never trained
on, the rest (in shuffled order) are the training pool.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from common.data import PreferenceExample, load_records, require_fields, tokenize_preference
from common.errors import DataError
from common.tracking import logger


@dataclass(frozen=True)
class Example:
    """One prompt/response pair (prompt None for a plain document) and its label (1 positive, 0 negative)."""

    prompt: Optional[str]
    response: str
    label: Optional[int] = None
    index: int = 0  # row number in the source split


@dataclass(frozen=True)
class DatasetKind:
    name: str
    hub_id: str
    hub_config: Optional[str]
    split: str
    fields: tuple[str, ...]  # required columns; a labelled dataset's label column comes last
    to_example: Callable[[dict, int, int], Example]  # (row, row index, imdb_prompt_words) -> Example
    label: Optional[tuple[str, str]] = None  # class names (negative, positive) when labelled
    whole_text: bool = False  # the prompt is the start of one text (IMDb): a classifier reads prompt + response

    def classifier_text(self, example: Example) -> str:
        """What a classifier of this dataset reads (and, at scoring time, what is closest to it)."""
        return example.prompt + example.response if self.whole_text else example.response


def _alpaca(row: dict, i: int, _: int) -> Example:
    prompt = row["instruction"] + ("\n" + row["input"] if row.get("input") else "")
    return Example(prompt, row["output"], None, i)


def _truthful_qa(row: dict, i: int, _: int) -> Example:
    return Example(row["question"], row["best_answer"], None, i)


def _beavertails(row: dict, i: int, _: int) -> Example:
    return Example(row["prompt"], row["response"], int(bool(row["is_safe"])), i)


def split_words(text: str, num_words: int) -> tuple[str, str]:
    """(first `num_words` words, the rest with its leading space), so prompt + rest == text."""
    match = re.match(r"\s*(\S+\s+){%d}" % num_words, text)
    if match is None:
        return text, ""
    cut = len(match.group(0).rstrip())
    return text[:cut], text[cut:]


def _imdb(row: dict, i: int, prompt_words: int) -> Example:
    text = " ".join(row["text"].replace("<br />", " ").split())  # the hub reviews carry HTML line breaks
    prompt, rest = split_words(text, prompt_words)
    return Example(prompt, rest, int(row["label"]), i)


def _text(row: dict, i: int, _: int) -> Example:
    return Example(None, row["text"], None, i)


DATASETS: dict[str, DatasetKind] = {k.name: k for k in [
    DatasetKind("alpaca", "tatsu-lab/alpaca", None, "train", ("instruction", "output"), _alpaca),
    DatasetKind("truthful_qa", "truthful_qa", "generation", "validation", ("question", "best_answer"), _truthful_qa),
    DatasetKind("beavertails", "PKU-Alignment/BeaverTails", None, "30k_train", ("prompt", "response", "is_safe"),
                _beavertails, label=("UNSAFE", "SAFE")),
    DatasetKind("imdb", "stanfordnlp/imdb", None, "train", ("text", "label"), _imdb, label=("NEGATIVE", "POSITIVE"),
                whole_text=True),
    DatasetKind("text", "", None, "train", ("text",), _text),
]}


@dataclass
class DatasetSplits:
    train: list[Example]
    heldout: list[Example]


def source_of(name: str, data_sources: dict) -> str:
    source = data_sources.get(name) or DATASETS[name].hub_id
    if not source:
        raise DataError(f"dataset {name!r} has no hub default: name a local file in data_sources")
    return source


def load_examples(name: str, source: str, *, imdb_prompt_words: int = 2) -> list[Example]:
    """Every row of the dataset's split as an Example; DataError naming the row on a missing field."""
    kind = DATASETS[name]
    local = Path(source).expanduser().exists()
    rows = load_records(source, split=kind.split, name=None if local else kind.hub_config)
    if not rows:
        raise DataError(f"{source}: no rows")
    require_fields(rows, kind.fields, source)
    for i, row in enumerate(rows):
        check_row(kind, row, i, source)
    return [kind.to_example(row, i, imdb_prompt_words) for i, row in enumerate(rows)]


def check_row(kind: DatasetKind, row: dict, i: int, source: str) -> None:
    """DataError naming the row and field when a text field is not a string or a label is not 0/1.

    A label such as "positive" would otherwise end in a traceback, and a string "false" for is_safe
    would count as safe (any non-empty string is true)."""
    for field in kind.fields:
        value = row[field]
        if kind.label is not None and field == kind.fields[-1]:  # the label column comes last
            if isinstance(value, str) or value not in (0, 1):
                raise DataError(f"{source}: row {i}: field {field!r}: expected 0/1 or false/true, got {value!r}")
        elif not isinstance(value, str):
            raise DataError(f"{source}: row {i}: field {field!r}: expected a string, got {value!r}")
    if kind.name == "alpaca" and not isinstance(row.get("input") or "", str):
        raise DataError(f"{source}: row {i}: field 'input': expected a string, got {row['input']!r}")


def shuffled(examples: Sequence[Example], seed: int) -> list[Example]:
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    return [examples[i] for i in order]


def heldout_split(examples: Sequence[Example], num_heldout: int, seed: int, source: str = "") -> DatasetSplits:
    """Seeded shuffle; the first `num_heldout` rows are held out, the rest is the training pool."""
    if num_heldout >= len(examples):
        raise DataError(f"{source}: {len(examples)} rows cannot hold out num_heldout={num_heldout} and still "
                        f"train: lower num_heldout")
    rows = shuffled(examples, seed)
    return DatasetSplits(rows[num_heldout:], rows[:num_heldout])


def with_label(examples: Sequence[Example], polarity: str) -> list[Example]:
    """Examples of one polarity ("positive" = label 1, "negative" = label 0) or all of them."""
    if polarity == "all":
        return list(examples)
    return [e for e in examples if e.label == (1 if polarity == "positive" else 0)]


def load_dataset(config, name: str) -> tuple[list[Example], str]:
    source = source_of(name, config.data_sources)
    return load_examples(name, source, imdb_prompt_words=config.imdb_prompt_words), source


def load_splits(config) -> DatasetSplits:
    """The held-out split of the run's dataset under the run's data settings."""
    examples, source = load_dataset(config, config.dataset)
    return heldout_split(examples, config.num_heldout, config.data_seed, source)


def evaluation_rows(config, name: str) -> list[Example]:
    """The first `num_compression_examples` rows of dataset `name` in the held-out shuffle: for the run's
    own dataset a prefix of its held-out rows (num_compression_examples <= num_heldout), for any other
    dataset rows the run never trains on."""
    examples, _ = load_dataset(config, name)
    return shuffled(examples, config.data_seed)[:config.num_compression_examples]


# ----------------------------------------------------------------------------------------------
# Prompts and tokens


def format_prompt(config, prompt: str) -> str:
    return f"{config.prompt_prefix}{prompt}{config.prompt_suffix}"


def encode_document(tokenizer, text: str, add_eos: bool = True) -> tuple[list[int], list[int]]:
    """(context, tokens) of a plain document: the first token is predicted from BOS (or, for tokenizers
    without one, from EOS as the document separator of pre-training), and EOS ends the document."""
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if ids and bos is not None and ids[0] == bos:
        context, ids = ids[:1], ids[1:]
    elif bos is not None:
        context = [bos]
    elif eos is not None:
        context = [eos]
    else:  # nothing can predict the first token: it is context, and its bytes still count
        context, ids = ids[:1], ids[1:]
    return context, ids + ([eos] if add_eos and eos is not None else [])


def encode_example(tokenizer, example: Example, config, index: int = 0) -> PreferenceExample:
    """Prompt and response token ids (response only for a document), as the trainer takes them."""
    if example.prompt is None:
        context, ids = encode_document(tokenizer, example.response)
        return PreferenceExample(context, ids, None, index)
    return tokenize_preference(tokenizer, format_prompt(config, example.prompt), example.response, index=index,
                               use_chat_template=config.use_chat_template)


def encode_examples(tokenizer, examples: Sequence[Example], config) -> list[PreferenceExample]:
    """Token ids of each example (index = position in `examples`); examples over max_length are dropped."""
    encoded = [encode_example(tokenizer, e, config, i) for i, e in enumerate(examples)]
    kept = [e for e in encoded if e.length <= config.max_length]
    if len(kept) < len(encoded):
        logger.info(f"dropped {len(encoded) - len(kept)} of {len(encoded)} examples longer than "
                    f"max_length={config.max_length}")
    return kept
