"""The three stages of a harmful fine-tuning run: align, finetune, evaluate (see harmful_ft/config.py).

Each run is one stage; its `stage` field picks the config class and the function from STAGES. A stage
loads the model another stage saved (plan templating names it), repeats the data selection
(harmful_ft.data.select) and checks that it matches what the producing stage recorded.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Optional, Sequence

from common.data import PreferenceExample, tokenize_preference
from common.errors import ConfigError, DataError
from common.generation import generate
from common.models import free_memory, load_for_inference, load_for_training
from common.moderation import category_flags, harmful_score, is_flagged
from common.registry import SCORERS
from common.tracking import logger, read_json, read_jsonl, write_jsonl
from common.trainer import Trainer
from harmful_ft import metrics
from harmful_ft.config import AlignConfig, DataConfig, EvaluateConfig, FinetuneConfig
from harmful_ft.data import AGNEWS_LABELS, SST2_LABELS, Sample, Selection, booster_harmful_set, format_prompt, select
from harmful_ft.post_training import post_training_callbacks

OFFLINE_STAND_INS = ("keyword_refusal",)  # judges whose HS is a CPU stand-in, not beaver-dam's


def prompts_sha(samples: Sequence[Sample]) -> str:
    """Fingerprint of a data set (prompts and answers), recorded by one stage and checked by the next."""
    return hashlib.sha1(json.dumps([dataclasses.astuple(s) for s in samples]).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# Training stages


def to_examples(config, tokenizer, samples: Sequence[Sample]) -> tuple[list[PreferenceExample], int]:
    """SFT examples (loss on the response tokens); a sequence longer than max_length keeps its prompt and
    the first tokens of its response (the public code truncates at model_max_length). Returns the number
    truncated."""
    examples, truncated = [], 0
    for i, s in enumerate(samples):
        e = tokenize_preference(tokenizer, format_prompt(s, config.prompt_format), s.output, index=i,
                                use_chat_template=config.use_chat_template)
        room = max(1, config.max_length - len(e.prompt_ids))
        if len(e.chosen_ids) > room:
            e, truncated = PreferenceExample(e.prompt_ids, e.chosen_ids[:room], None, i), truncated + 1
        examples.append(e)
    return examples, truncated


def training_strategy(config, selection: Selection, tokenizer):
    """The alignment stage's step strategy for `defense` (harmful_ft/defenses.py), the finetune stage's for
    `finetune_defense` (`finetune_strategy`; later stages' `defense` only names the aligned model); None
    (the trainer's default SFT) otherwise.
    The harmful set (Booster, T-Vaccine, RepNoise): the first `num_align` distinct unsafe 30k_train prompts
    with their harmful answers, outside the evaluation and alignment prompts."""
    if config.stage == "finetune":
        return finetune_strategy(config, selection, tokenizer)
    if config.stage != "align" or config.defense == "sft":
        return None
    from harmful_ft.defenses import NEEDS_HARMFUL_SET, make_strategy

    harmful = None
    if config.defense in NEEDS_HARMFUL_SET:
        harmful, _ = to_examples(config, tokenizer, booster_harmful_set(config, selection))
    return make_strategy(config.defense, config, harmful)


def finetune_strategy(config, selection: Selection, tokenizer):
    """The finetune stage's step strategy for `finetune_defense`: Lisa's alignment steps train on the align
    stage's own selection; Panacea's harmful set is harmful_ft.data.panacea_harmful_set. None: plain SFT."""
    if config.finetune_defense == "lisa":
        from harmful_ft.lisa import LisaStrategy

        return LisaStrategy(config, to_examples(config, tokenizer, selection.align)[0])
    if config.finetune_defense == "panacea":
        from harmful_ft.data import panacea_harmful_set
        from harmful_ft.post_training import PanaceaStrategy

        return PanaceaStrategy(config, to_examples(config, tokenizer, panacea_harmful_set(config, selection))[0])
    return None


def telemetry_callbacks(config, selection: Selection, tokenizer) -> list:
    """The fine-tuning stage's per-step telemetry (harmful_ft/telemetry.py) on small held-out sets: the
    harmful evaluation prompts with BeaverTails' harmful answers, the task's test items, the alignment
    answers (refusal log-prob) and the alignment prompts (embedding drift)."""
    if config.stage != "finetune" or not config.telemetry_every:
        return []
    from harmful_ft.telemetry import Telemetry

    k = config.telemetry_examples

    def examples(samples):
        return to_examples(config, tokenizer, samples[:k])[0]

    alignment = examples(selection.align)  # their answers give the refusal log-prob, their prompts the drift
    return [Telemetry(examples(selection.harmful_eval), examples(selection.task_eval or selection.attack_benign),
                      refusals=alignment, alignment=alignment, every=config.telemetry_every)]


def train_stage(config, run_dir: Path, samples: Sequence[Sample], selection: Selection) -> dict:
    model, tokenizer = load_for_training(config)  # the plan runner has seeded the run from config.seed
    examples, truncated = to_examples(config, tokenizer, samples)
    trainer = Trainer(config, model, tokenizer, examples, run_dir,
                      callbacks=telemetry_callbacks(config, selection, tokenizer) +
                      (post_training_callbacks(config) if config.stage == "finetune" else []),
                      strategy=training_strategy(config, selection, tokenizer))
    summary = trainer.train()
    summary.pop("eval", None)
    return {**summary, "num_examples": len(examples), "num_truncated": truncated}


def run_align(config: AlignConfig, run_dir: Path) -> dict:
    selection = select(config)
    logger.info(f"align: {len(selection.align)} {config.safety_data} samples, defense {config.defense}")
    summary = train_stage(config, run_dir, selection.align, selection)
    return {**summary, "stage": "align", "align_sha": prompts_sha(selection.align),
            "num_align": len(selection.align), "num_harmful_eval": len(selection.harmful_eval)}


def run_finetune(config: FinetuneConfig, run_dir: Path) -> dict:
    selection = select(config)
    check_producer(config)
    counts = {"num_harmful": len(selection.attack_harmful), "num_benign": len(selection.attack_benign)}
    if counts["num_harmful"] != config.num_harmful() or sum(counts.values()) != config.n:
        raise AssertionError(f"user data counts {counts} do not match p={config.p}, n={config.n}")
    samples, filters = filter_user_data(config, run_dir, selection)
    logger.info(f"finetune on {config.task}: {counts['num_harmful']} harmful + {counts['num_benign']} benign"
                + (f", {len(samples)} kept by {config.user_data_filter()}" if len(samples) < config.n else "")
                + f", finetune_defense {config.finetune_defense}")
    summary = train_stage(config, run_dir, samples, selection)
    return {**summary, "stage": "finetune", **counts, "user_data_sha": prompts_sha(selection.user_data),
            "align_sha": prompts_sha(selection.align), "harmful_data": config.harmful_data,
            "user_data_filter": config.user_data_filter(), "num_trained_samples": len(samples), **filters}


def filter_user_data(config: FinetuneConfig, run_dir: Path, selection: Selection) -> tuple[list[Sample], dict]:
    """D_user after the provider's filters, in order: the guard (harmful_ft/guard.py), then the CHES filter
    (harmful_ft/ches_filter.py) on what the guard kept; and the filters' reports. run_dir/user_data.jsonl
    keeps every sample of D_user with its label and what each filter decided."""
    harmful = set(selection.attack_harmful)
    records = [{**dataclasses.asdict(s), "harmful": s in harmful} for s in selection.user_data]
    kept, report = list(range(len(records))), {}
    filters = []
    if config.guard is not None:
        from harmful_ft.guard import guard_filter

        filters.append(lambda samples, flags: guard_filter(config, samples, flags))
    if config.ches_drop_share:
        from harmful_ft.ches_filter import ches_filter

        filters.append(lambda samples, flags: ches_filter(config, run_dir, samples, flags))
    for apply in filters:
        dropped, decisions, filter_report = apply([selection.user_data[i] for i in kept],
                                                  [records[i]["harmful"] for i in kept])
        for i, decision in zip(kept, decisions):
            records[i].update(decision)
        kept = [i for i, d in zip(kept, dropped) if not d]
        report.update(filter_report)
    write_jsonl(run_dir / "user_data.jsonl", records)
    if not kept:
        raise DataError(f"{config.user_data_filter()} dropped every user sample; nothing is left to fine-tune on")
    return [selection.user_data[i] for i in kept], report


def check_producer(config: DataConfig) -> Optional[dict]:
    """The config of the harmful_ft run that saved `config.model` (None for another model), after checking
    that the fields naming its data and attack agree with this run's."""
    path = Path(config.model).parent / "config.json"
    if not path.is_file():
        return None
    producer = read_json(path)
    if producer.get("study") != "harmful_ft":
        return None
    shared = ["data_sources", "safety_data", "num_align", "eval_protocol", "num_harmful_eval"]
    if producer.get("stage") == "finetune" and config.stage == "evaluate":
        shared += ["task", "p", "n", "defense", "data_seed", "num_task_eval", "finetune_defense"]
    producer.setdefault("finetune_defense", "none")  # saved before the field existed
    differ = [k for k in shared if producer.get(k) != getattr(config, k)]
    if differ:
        k = differ[0]
        raise ConfigError(f"{config.model}: saved by a run with {k}={json.dumps(producer.get(k))}, this run has "
                          f"{k}={json.dumps(getattr(config, k))}; template the field from the same value in the plan")
    return producer


# ----------------------------------------------------------------------------------------------
# Evaluation


def cached_generations(config, run_dir: Path, name: str, prompts: list[str], model_tokenizer) -> list[str]:
    """Greedy answers to `prompts`, kept in run_dir/<name>.jsonl so that a run resumed after a judge
    error does not generate again."""
    path = run_dir / f"{name}.jsonl"
    if path.is_file():
        rows = read_jsonl(path)
        if [r["prompt"] for r in rows] == prompts:
            return [r["response"] for r in rows]
    model, tokenizer = model_tokenizer()
    responses = generate(model, tokenizer, prompts, max_new_tokens=config.protocol()["max_new_tokens"],
                         temperature=0.0, batch_size=config.generation_batch_size,
                         use_chat_template=config.use_chat_template)
    write_jsonl(path, [{"prompt": p, "response": r} for p, r in zip(prompts, responses)])
    return responses


def task_accuracy(task: str, samples: Sequence[Sample], outputs: Sequence[str]) -> tuple[dict, list[dict]]:
    """FA of the task under each rule, and per-item correctness."""
    if task in ("sst2", "agnews"):
        labels = SST2_LABELS if task == "sst2" else AGNEWS_LABELS
        rows = [{"gold": s.label, "substring": metrics.substring_correct(o, s.label),
                 "strict": metrics.strict_correct(o, s.label, labels)} for s, o in zip(samples, outputs)]
        return {"fa_substring": metrics.accuracy([r["substring"] for r in rows]),
                "fa_strict": metrics.accuracy([r["strict"] for r in rows])}, rows
    rows = [{"gold": s.label, "extracted": metrics.gsm8k_answer(o), "correct": metrics.gsm8k_correct(o, s.label)}
            for s, o in zip(samples, outputs)]
    return {"fa": metrics.accuracy([r["correct"] for r in rows])}, rows


def run_evaluate(config: EvaluateConfig, run_dir: Path) -> dict:
    selection = select(config)
    producer = check_producer(config)
    evaluated = (producer or {}).get("stage", "base")  # base: a model no harmful_ft run saved
    loaded = []

    def model_tokenizer():
        if not loaded:
            loaded.append(load_for_inference(config.model, dtype=config.dtype))
        return loaded[0]

    harmful = cached_generations(config, run_dir, "harmful_answers",
                                 [format_prompt(s, config.prompt_format) for s in selection.harmful_eval],
                                 model_tokenizer)
    task_outputs = cached_generations(config, run_dir, "task_answers",
                                      [format_prompt(s, config.prompt_format) for s in selection.task_eval],
                                      model_tokenizer) if selection.task_eval else []
    loaded.clear()
    free_memory()

    judge = SCORERS.make(config.judge)
    raw_prompts = [s.instruction for s in selection.harmful_eval]
    scores = judge.score(raw_prompts, harmful)
    categories = getattr(judge, "last_categories", None) or [None] * len(scores)
    names = getattr(judge, "categories", None)
    judge.close()
    write_jsonl(run_dir / "harmful_scored.jsonl", [
        {"prompt": p, "response": r, "score": s, "flagged": is_flagged(s),
         "category_flags": None if c is None else dict(zip(names, category_flags(c)))}
        for p, r, s, c in zip(raw_prompts, harmful, scores, categories)])
    fa, fa_rows = task_accuracy(config.task, selection.task_eval, task_outputs) if task_outputs else ({}, [])
    write_jsonl(run_dir / "task_scored.jsonl", [{"response": o, **r} for o, r in zip(task_outputs, fa_rows)])
    judge_name = SCORERS.split(config.judge)[0]
    category_rates = None if categories[0] is None else {
        name: 100.0 * sum(category_flags(c)[i] for c in categories) / len(categories)
        for i, name in enumerate(names)}
    attacked = evaluated == "finetune"
    return {"stage": "evaluate", "evaluated": evaluated, "defense": None if evaluated == "base" else config.defense,
            "task": config.task, "p": config.p if attacked else None,
            "n": config.n if attacked else None, "attack_optimizer": producer["optimizer"] if attacked else None,
            "finetune_defense": config.finetune_defense if attacked else None,
            "hs": harmful_score(scores), **fa,
            "judge": judge_name, "judge_offline_stand_in": judge_name in OFFLINE_STAND_INS,
            "hs_category_rates": category_rates, "protocol": config.protocol(),
            "num_harmful_prompts": len(harmful), "num_task_items": len(task_outputs)}


STAGES = {  # stage name (the `stage` field) -> (config class, run function)
    "align": (AlignConfig, run_align),
    "finetune": (FinetuneConfig, run_finetune),
    "evaluate": (EvaluateConfig, run_evaluate),
}


class PlanConfig(DataConfig):
    """What plans are expanded with: each run is built as its stage's config class."""

    @classmethod
    def run_classes(cls) -> tuple[str, dict[str, type]]:
        return "stage", {stage: config_cls for stage, (config_cls, _) in STAGES.items()}


def run(config: DataConfig, run_dir: Path) -> dict:
    return STAGES[config.stage][1](config, run_dir)
