"""H3Fusion's two stages (configs: ensembles/h3fusion_config.py; mechanics: ensembles/h3fusion.py).

- expert: SFT of one LoRA (MLP projections) on its data set through the shared trainer; the adapter is
  saved in run_dir/model.
- fusion: the base model and the three experts' adapters become the MoE; its routers train through the
  shared trainer (RouterStrategy) on the equal mixture of the three sets and are saved in
  run_dir/routers.safetensors (with routers.json, the training summary); then every model of MODELS is
  evaluated with the same prompts and greedy decoding:
  - HS: 100 x share of the answers to the pinned harmful prompts flagged by `harmful_judge`
    (common.moderation.harmful_score);
  - helpfulness: the mean score of `helpful_scorer` over the answers to the helpful prompts;
  - honesty: TruthfulQA MC1 accuracy (ensembles.metrics.mc1_accuracy) from each choice's log-prob
    after the question (ensembles.collect.option_scores).
  Each model's answers and MC1 scores go to run_dir/eval/<model>.json as soon as they exist, so a resumed
  run generates only for the models it lacks (and does not retrain saved routers); each judge is then
  loaded once and scores every model's answers (run_dir/eval/scored.jsonl).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

from common.errors import DataError
from common.generation import generate
from common.models import free_memory, load_for_inference, load_for_training
from common.moderation import harmful_score, is_flagged
from common.preference_data import Tokenization, tokenize_pairs
from common.registry import SCORERS
from common.tracking import logger, read_json, write_json, write_jsonl
from common.trainer import Trainer
from ensembles.collect import option_scores
from ensembles.h3fusion import (
    RouterStrategy,
    add_deltas,
    build_h3fusion,
    load_expert_deltas,
    load_router_state,
    mean_deltas,
    router_state,
)
from ensembles.h3fusion_config import EXPERTS, ExpertConfig, FusionConfig
from ensembles.h3fusion_data import H3Data, Pair, select
from ensembles.metrics import mc1_accuracy

MODELS = ("base", *EXPERTS, "merge", "h3fusion")  # every model the fusion stage evaluates, in table order
ROUTERS_FILE = "routers.safetensors"
OFFLINE_STAND_INS = ("keyword_refusal",)  # scorers that stand in offline for a judge or reward model


def sft_examples(config, tokenizer, pairs: Sequence[Pair], source: str):
    """Tokenized SFT examples (loss on the response) of `pairs`, truncated to max_length, and the counts."""
    rows = [{"prompt": p.prompt, "chosen": p.response, "rejected": None} for p in pairs]
    settings = Tokenization(config.max_length, config.max_prompt_length, config.truncation_mode,
                            config.use_chat_template)
    return tokenize_pairs(rows, tokenizer, settings, source=source)


def run_expert(config: ExpertConfig, run_dir: Path) -> dict:
    data = select(config)
    model, tokenizer = load_for_training(config)  # the plan runner has seeded the run from config.seed
    examples, counts = sft_examples(config, tokenizer, data.train[config.expert], f"{config.expert} data")
    logger.info(f"expert {config.expert}: SFT of a LoRA on {len(examples)} rows")
    summary = Trainer(config, model, tokenizer, examples, run_dir).train()
    summary.pop("eval", None)
    return {**summary, "stage": "expert", "expert": config.expert, "truncation": counts.as_dict()}


def expert_adapters(config: FusionConfig) -> list[Path]:
    """The saved adapter of each expert run, in EXPERTS order, after checking that each run is a finished
    expert run of that data set on this fusion's base model."""
    adapters = []
    for name, directory in config.expert_dirs().items():
        where, directory = f"{name}_expert {directory}", Path(directory)
        if not (directory / "config.json").is_file():
            raise DataError(f"{where}: no such run directory; run the expert stage (stage \"expert\", expert "
                            f"\"{name}\") first or fix the path")
        producer = read_json(directory / "config.json")
        if producer.get("study") != "ensembles" or producer.get("stage") != "expert":
            raise DataError(f"{where}: not an H3Fusion expert run (its config.json has no stage \"expert\")")
        if producer.get("expert") != name:
            raise DataError(f"{where}: trained the {producer.get('expert')} expert, not the {name} one; "
                            f"{name}_expert names the run of expert \"{name}\"")
        if producer.get("model") != config.model:
            raise DataError(f"{where}: trained on {producer.get('model')}, this fusion's base is {config.model}; "
                            f"the experts must adapt the same base model")
        if not (directory / "summary.json").is_file() or not (directory / "model" / "adapter_config.json").is_file():
            raise DataError(f"{where}: unfinished (no summary.json or no saved adapter); re-run its plan to "
                            f"finish it")
        adapters.append(directory / "model")
    return adapters


def train_routers(config: FusionConfig, run_dir: Path, moe, tokenizer, data: H3Data) -> dict:
    """Train the routers of `moe` (or load the saved ones); the training summary."""
    from safetensors.torch import load_file, save_file

    path, record = run_dir / ROUTERS_FILE, run_dir / "routers.json"
    if path.is_file() and record.is_file():
        logger.info(f"routers: loaded from {path}")
        load_router_state(moe, load_file(path))
        return read_json(record)
    pairs, sources = [], []
    for index, name in enumerate(EXPERTS):
        pairs += data.train[name]
        sources += [index] * len(data.train[name])
    examples, counts = sft_examples(config, tokenizer, pairs, "the mixture")
    logger.info(f"fusion: routers trained on {len(examples)} rows ({config.num_train} of each set), gate loss "
                f"{config.gate_loss} x {config.gate_coeff:g}, top-{config.top_k}")
    initial = router_state(moe)
    strategy = RouterStrategy(config, [sources[e.index] for e in examples])
    summary = Trainer(config, moe, tokenizer, examples, run_dir, strategy=strategy).train()
    summary.pop("eval", None)
    trained = router_state(moe)
    summary.update(truncation=counts.as_dict(),
                   router_max_change=max((trained[k] - initial[k]).abs().max().item() for k in trained))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(trained, str(tmp))
    os.replace(tmp, path)
    write_json(record, summary)  # after the weights: a record always has its routers
    return summary


def build_model(config: FusionConfig, name: str, deltas, run_dir: Path):
    """Model `name` of MODELS, for inference, and its tokenizer."""
    from safetensors.torch import load_file

    model, tokenizer = load_for_inference(config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code)
    if name in EXPERTS:
        add_deltas(model, deltas[EXPERTS.index(name)])
    elif name == "merge":
        add_deltas(model, mean_deltas(deltas))
    elif name == "h3fusion":
        build_h3fusion(model, deltas, config.top_k, config.seed)
        load_router_state(model, load_file(run_dir / ROUTERS_FILE))
    return model.eval(), tokenizer


def model_answers(config: FusionConfig, run_dir: Path, data: H3Data, name: str, deltas) -> dict:
    """Model `name`'s greedy answers and MC1 choice scores, stored in run_dir/eval/<name>.json."""
    path = run_dir / "eval" / f"{name}.json"
    if path.is_file():
        return read_json(path)
    logger.info(f"evaluate {name}: {len(data.harmful)} harmful + {len(data.helpful)} helpful prompts, "
                f"{len(data.mc_questions)} MC1 questions")
    model, tokenizer = build_model(config, name, deltas, run_dir)
    answers = {kind: generate(model, tokenizer, [p.text for p in prompts], max_new_tokens=config.max_new_tokens,
                              temperature=0.0, batch_size=config.generation_batch_size,
                              use_chat_template=config.use_chat_template, progress=False)
               for kind, prompts in (("harmful", data.harmful), ("helpful", data.helpful))}
    scores = option_scores(model, tokenizer, data.mc_questions, data.mc_choices, batch_size=config.eval_batch_size,
                           option_score=config.mc_option_score, use_chat_template=config.use_chat_template)
    record = {"model": name, **answers, "mc1_scores": [s.tolist() for s in scores]}
    del model
    free_memory()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return record


def score_answers(spec: dict, prompts: list[str], answers: dict[str, list[str]]) -> dict[str, list[Optional[float]]]:
    """Each model's scores under one scorer, loaded once for all models."""
    scorer = SCORERS.make(spec)
    flat = scorer.score(prompts * len(answers), [a for model in answers.values() for a in model])
    scorer.close()
    return {name: flat[i * len(prompts):(i + 1) * len(prompts)] for i, name in enumerate(answers)}


def mean_score(scores: Sequence[Optional[float]]) -> Optional[float]:
    scored = [s for s in scores if s is not None]
    return sum(scored) / len(scored) if scored else None


def evaluate_models(config: FusionConfig, run_dir: Path, data: H3Data, deltas) -> list[dict]:
    records = {name: model_answers(config, run_dir, data, name, deltas) for name in MODELS}
    harmful = score_answers(config.harmful_judge, [p.raw for p in data.harmful],
                            {n: r["harmful"] for n, r in records.items()})
    helpful = score_answers(config.helpful_scorer, [p.raw for p in data.helpful],
                            {n: r["helpful"] for n, r in records.items()})
    sets = (("harmful", data.harmful, harmful), ("helpful", data.helpful, helpful))
    write_jsonl(run_dir / "eval" / "scored.jsonl", [
        {"model": name, "set": kind, "prompt": p.raw, "response": a, "score": s,
         **({"flagged": is_flagged(s)} if kind == "harmful" else {})}
        for name in MODELS for kind, prompts, scores in sets
        for p, a, s in zip(prompts, records[name][kind], scores[name])])
    return [{"model": name, "hs": harmful_score(harmful[name]), "helpfulness": mean_score(helpful[name]),
             "honesty_mc1": mc1_accuracy(records[name]["mc1_scores"], data.mc_answers),
             "unscored_helpful": sum(s is None for s in helpful[name])} for name in MODELS]


def run_fusion(config: FusionConfig, run_dir: Path) -> dict:
    adapters = expert_adapters(config)
    data = select(config)
    base, tokenizer = load_for_training(config)
    base, deltas = load_expert_deltas(base, adapters)
    moe = build_h3fusion(base, deltas, config.top_k, config.seed)
    training = train_routers(config, run_dir, moe, tokenizer, data)
    del moe, base
    free_memory()
    rows = evaluate_models(config, run_dir, data, deltas)
    judge, scorer = SCORERS.split(config.harmful_judge)[0], SCORERS.split(config.helpful_scorer)[0]
    return {"stage": "fusion", "models": rows, "router_training": training,
            "judge": judge, "judge_offline_stand_in": judge in OFFLINE_STAND_INS,
            "helpful_scorer": scorer, "helpful_scorer_offline_stand_in": scorer in OFFLINE_STAND_INS,
            "protocol": {"num_harmful_prompts": len(data.harmful), "num_helpful_prompts": len(data.helpful),
                         "num_mc1_questions": len(data.mc_questions), "max_new_tokens": config.max_new_tokens,
                         "decoding": "greedy", "mc_option_score": config.mc_option_score},
            "num_train_per_set": config.num_train, "top_k": config.top_k, "gate_loss": config.gate_loss,
            "gate_coeff": config.gate_coeff}
