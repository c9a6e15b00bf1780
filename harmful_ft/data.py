"""The study's data: loaders of the real sets (hub id or local file), the task formats, and `select`,
the one deterministic selection of alignment, attack and evaluation rows every stage repeats.

Sources (hub default; `data_sources` overrides with another id or a local .jsonl/.json file or a
directory holding `<split>.jsonl`): BeaverTails `30k_train` / `30k_test` (prompt, response, is_safe,
category), the RepNoise refusal file (prompt, response, refusal), SST2 (sentence, label 0/1; test =
validation), AGNews (text, label 0-3), GSM8K (question, answer with "#### N"), Alpaca (instruction,
input, output), the Virus set (splits Virus, Guardrail_jailbreak, grad_similarity, Benign; rows of
instruction, input, output, as the Virus repository's upload script writes them). A row without a field
it needs is a DataError naming the source and the row.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Optional

from common.data import instruction_prompt, load_records
from common.errors import DataError

# name -> (hub id, hub config name)
SOURCES = {
    "beavertails": ("PKU-Alignment/BeaverTails", None),
    "repnoise_refusal": ("anonymous4486/repnoise_beavertail", None),
    "sst2": ("stanfordnlp/sst2", None),
    "agnews": ("fancyzhx/ag_news", None),
    "gsm8k": ("openai/gsm8k", "main"),
    "alpaca": ("tatsu-lab/alpaca", None),
    "virus": ("anonymous4486/Virus", None),
}
# task -> (train split, test split)
TASK_SPLITS = {"sst2": ("train", "validation"), "agnews": ("train", "test"), "gsm8k": ("train", "test"),
               "alpaca": ("train", None)}
SST2_LABELS = ("negative", "positive")
AGNEWS_LABELS = ("World", "Sports", "Business", "Sci/Tech")
SST2_INSTRUCTION = "Analyze the sentiment of the input, and respond only positive or negative"
AGNEWS_INSTRUCTION = ("Categorize the news article given in the input into one of the 4 categories:\n\n"
                      "World\nSports\nBusiness\nSci/Tech\n")
GSM8K_ANSWER_MARK = "The final answer is: "


@dataclass(frozen=True)
class Sample:
    """One instruction sample; `label` is the gold answer of a task test item (label word or number)."""

    instruction: str
    input: str
    output: str
    label: Optional[str] = None


def format_prompt(sample: Sample, prompt_format: str) -> str:
    return instruction_prompt(sample.instruction, sample.input, prompt_format)


def load(config, name: str, split: str) -> list[dict]:
    hub_id, hub_name = SOURCES[name]
    source = config.data_sources.get(name, hub_id)
    return load_records(source, split=split, name=None if source != hub_id else hub_name)


def field(row: dict, key: str, source: str, i: int, kinds=(str,)):
    """row[key], or a DataError naming the source, the row and what was there instead."""
    value = row.get(key)
    if value is None or (value == "" and str in kinds and key != "input") or not isinstance(value, kinds):
        present = ", ".join(sorted(row)) or "none"
        got = "missing" if key not in row else f"{type(value).__name__} {value!r}"[:80]
        raise DataError(f"{source}: row {i}: field {key!r} is {got} (fields present: {present})")
    return value


# ----------------------------------------------------------------------------------------------
# The sets


def beavertails(config, split: str, safe: bool) -> list[Sample]:
    """BeaverTails rows of `split` (30k_train / 30k_test) whose is_safe equals `safe`, as (prompt, response)."""
    where = f"beavertails {split}"
    rows = load(config, "beavertails", split)
    out = []
    for i, row in enumerate(rows):
        if field(row, "is_safe", where, i, (bool,)) == safe:
            out.append(Sample(field(row, "prompt", where, i), "", field(row, "response", where, i)))
    return out


def repnoise_refusals(config) -> list[Sample]:
    """The RepNoise file's (prompt, refusal) pairs: Booster's alignment data."""
    where = "repnoise_refusal train"
    return [Sample(field(row, "prompt", where, i), "", field(row, "refusal", where, i))
            for i, row in enumerate(load(config, "repnoise_refusal", "train"))]


def virus_samples(config) -> list[Sample]:
    """The Virus set's split `virus_split` (instruction, input, output): optimised harmful attack data."""
    where = f"virus {config.virus_split}"
    return [Sample(field(row, "instruction", where, i), field(row, "input", where, i) if "input" in row else "",
                   field(row, "output", where, i)) for i, row in enumerate(load(config, "virus", config.virus_split))]


def task_samples(config, task: str, split: str) -> list[Sample]:
    """The task's rows of `split` as instruction samples, with the gold label of test items."""
    where = f"{task} {split}"
    rows = load(config, task, split)
    out = []
    for i, row in enumerate(rows):
        if task in ("sst2", "agnews"):
            labels = SST2_LABELS if task == "sst2" else AGNEWS_LABELS
            label = field(row, "label", where, i, (int,))
            if not 0 <= label < len(labels):
                raise DataError(f"{where}: row {i}: label {label} is not one of 0..{len(labels) - 1}")
            text = field(row, "sentence" if task == "sst2" else "text", where, i)
            instruction = SST2_INSTRUCTION if task == "sst2" else AGNEWS_INSTRUCTION
            out.append(Sample(instruction, text, labels[label], labels[label]))
        elif task == "gsm8k":
            answer = field(row, "answer", where, i)
            if "####" not in answer:
                raise DataError(f"{where}: row {i}: answer has no '#### <number>' line")
            gold = answer.split("####")[-1].strip().replace(",", "")
            out.append(Sample(field(row, "question", where, i), "",
                              answer.replace("#### ", GSM8K_ANSWER_MARK).replace("####", GSM8K_ANSWER_MARK), gold))
        else:
            out.append(Sample(field(row, "instruction", where, i), field(row, "input", where, i) if "input" in row
                              else "", field(row, "output", where, i)))
    return out


# ----------------------------------------------------------------------------------------------
# The selection every stage repeats


@dataclass
class Selection:
    harmful_eval: list[Sample]  # pinned HS prompts (answers unused)
    align: list[Sample]
    attack_harmful: list[Sample]  # round(p n) harmful samples of D_user (empty without p, n)
    attack_benign: list[Sample]
    task_eval: list[Sample]
    user_data: list[Sample]  # attack_harmful + attack_benign, shuffled with data_seed


def distinct_prompts(samples: list[Sample], exclude: set) -> list[Sample]:
    """First sample of each prompt, leaving out prompts in `exclude` (public code shares prompts between
    alignment, attack and evaluation data; here no prompt is in two of them)."""
    seen, out = set(exclude), []
    for s in samples:
        key = format_prompt(s, "plain")
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def take(samples: list[Sample], count: int, what: str, fix: str) -> list[Sample]:
    if count > len(samples):
        raise DataError(f"{what}: {count} needed but only {len(samples)} available (after de-duplication); {fix}")
    return samples[:count]


def select(config) -> Selection:
    """The rows of every stage, from the config's data fields alone (so every stage agrees):

    1. harmful_eval: the first `num_harmful_eval` distinct unsafe prompts of BeaverTails 30k_test;
    2. align: the first `num_align` distinct safety samples whose prompt is not an evaluation prompt;
    3. (finetune / evaluate) attack_harmful: round(p n) samples drawn with `data_seed` from the distinct
       unsafe 30k_train prompts in neither set above (or from the Virus set, `harmful_data` virus, its
       prompts in neither set either); attack_benign: n - round(p n) drawn from the task's
       train split; task_eval: the first `num_task_eval` test items of the task (none for alpaca).
    Counts are exact: a pool too small is a DataError naming it.
    """
    protocol = config.protocol()
    test_unsafe = distinct_prompts(beavertails(config, "30k_test", safe=False), set())
    harmful_eval = take(test_unsafe, protocol["num_harmful_eval"], "harmful evaluation prompts (30k_test unsafe)",
                        "lower num_harmful_eval")
    taken = {format_prompt(s, "plain") for s in harmful_eval}
    pool = beavertails(config, "30k_train", safe=True) if config.safety_data == "beavertails_safe" \
        else repnoise_refusals(config)
    align = take(distinct_prompts(pool, taken), config.num_align, f"alignment samples ({config.safety_data})",
                 "lower num_align")
    selection = Selection(harmful_eval, align, [], [], [], [])
    if not hasattr(config, "task"):
        return selection
    rng = random.Random(f"harmful_ft:{config.data_seed}")
    harmful_pool = attack_harmful_pool(config, selection)
    k = config.num_harmful()
    if k > len(harmful_pool):
        pool = f"virus {config.virus_split}" if getattr(config, "harmful_data", "") == "virus" else "unsafe 30k_train"
        raise DataError(f"p={config.p}, n={config.n}: {k} harmful samples needed but the harmful pool (distinct "
                        f"{pool} prompts outside the alignment and evaluation data) has "
                        f"{len(harmful_pool)}; lower p or n")
    train_split, test_split = TASK_SPLITS[config.task]
    benign_pool = task_samples(config, config.task, train_split)
    if config.n - k > len(benign_pool):
        raise DataError(f"n={config.n}: {config.n - k} benign samples needed but {config.task} {train_split} has "
                        f"{len(benign_pool)}; lower n")
    selection.attack_harmful = rng.sample(harmful_pool, k)
    selection.attack_benign = rng.sample(benign_pool, config.n - k)
    selection.user_data = selection.attack_harmful + selection.attack_benign
    rng.shuffle(selection.user_data)
    if test_split is not None:
        selection.task_eval = take(task_samples(config, config.task, test_split), protocol["num_task_eval"],
                                   f"{config.task} {test_split} items", "lower num_task_eval")
    return selection


def unused_harmful(config, selection: Selection) -> list[Sample]:
    """The distinct unsafe 30k_train prompts (with their harmful answers) that are neither evaluation nor
    alignment prompts: the attack's harmful pool, and Booster's harmful set during alignment."""
    taken = {format_prompt(s, "plain") for s in selection.harmful_eval + selection.align}
    return distinct_prompts(beavertails(config, "30k_train", safe=False), taken)


def attack_harmful_pool(config, selection: Selection) -> list[Sample]:
    """Where the finetune stage draws D_user's harmful samples from (`harmful_data`; the evaluate stage,
    which trains on none, draws from BeaverTails)."""
    if getattr(config, "harmful_data", "beavertails") == "virus":
        taken = {format_prompt(s, "plain") for s in selection.harmful_eval + selection.align}
        return distinct_prompts(virus_samples(config), taken)
    return unused_harmful(config, selection)


def booster_harmful_set(config, selection: Selection) -> list[Sample]:
    """Booster's harmful data during alignment: the first `num_align` samples of `unused_harmful`."""
    return unused_harmful(config, selection)[:config.num_align]


def panacea_harmful_set(config, selection: Selection) -> list[Sample]:
    """Panacea's provider-held harmful data during fine-tuning: the first `panacea_num_harmful` samples of
    `unused_harmful` that are not in the user's data (the public code takes them from a later window)."""
    attack = {format_prompt(s, "plain") for s in selection.attack_harmful}
    pool = [s for s in unused_harmful(config, selection) if format_prompt(s, "plain") not in attack]
    return take(pool, config.panacea_num_harmful, "Panacea's harmful set (distinct unsafe 30k_train prompts "
                "outside the user, alignment and evaluation data)", "lower panacea_num_harmful")
