"""Each member answers the labelled multiple-choice set once: its log-probabilities over the shared answer
space (the choices), stored per member in the run directory, so that a resumed run loads the members it
has and scores only the rest.

A choice's score is the log-prob of its tokens after the question (summed, or the per-token mean), one
forward per batch of question-choice rows through common.logprobs; the scores of a question's choices are
normalized (log-softmax over the choices) into the member's probability vector.

Layout under the run directory:
    members/<k>_<name>.npy   (samples, choices) float32 log-probabilities of member k
    members/<k>_<name>.json  what produced it (the member, its resolved model path, the scoring settings)
    labels.npy               (samples,) index of the right choice
    correct.npy              (samples, members) bool correctness matrix, written once every member is in
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch

from common.data import collate_sequences, encode_completion, encode_prompt, load_records
from common.errors import DataError
from common.logprobs import sequence_logprobs
from common.tracking import logger, read_json, write_json
from ensembles.config import EnsembleConfig, member_name


@dataclass(frozen=True)
class Member:
    name: str
    model: str
    perturb_std: float = 0.0
    perturb_seed: int = 0

    @classmethod
    def of(cls, entry: Union[str, dict]) -> "Member":
        entry = {"model": entry} if isinstance(entry, str) else entry
        return cls(member_name(entry), entry["model"], float(entry.get("perturb_std", 0.0)),
                   int(entry.get("perturb_seed", 0)))


@dataclass(frozen=True)
class MultipleChoiceSet:
    questions: list[str]
    choices: list[list[str]]
    labels: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.choices[0])


def read_multiple_choice(source: str, max_samples: int = -1, *, split: str = "test", name: str = "",
                         prefix: str = "", suffix: str = "") -> MultipleChoiceSet:
    """Rows {"question", "choices", "answer"} (MMLU's own fields) of a local file or a hub dataset; every row
    must have as many choices (the shared space). The question the members see is prefix + question + suffix."""
    rows = load_records(source, split=split, name=name or None)
    rows = rows if max_samples < 0 else rows[:max_samples]
    if not rows:
        raise DataError(f"{source}: no rows")
    width = None
    for line, row in enumerate(rows, start=1):
        if not isinstance(row.get("question"), str) or not isinstance(row.get("choices"), list):
            raise DataError(f"{source}:{line}: a row needs \"question\" (text) and \"choices\" (a list of texts)")
        width = width or len(row["choices"])
        if len(row["choices"]) != width or width < 2:
            raise DataError(f"{source}:{line}: {len(row['choices'])} choices where row 1 has {width}; the members' "
                            f"probability vectors need one shared answer space (the same number of choices, >= 2)")
        answer = row.get("answer")
        if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < width:
            raise DataError(f"{source}:{line}: \"answer\" must be the index (0..{width - 1}) of the right choice, "
                            f"got {answer!r}")
    return MultipleChoiceSet([prefix + r["question"] + suffix for r in rows],
                             [list(map(str, r["choices"])) for r in rows],
                             np.array([r["answer"] for r in rows], dtype=np.int64))


def read_config_set(config: EnsembleConfig) -> MultipleChoiceSet:
    return read_multiple_choice(config.dataset_path, config.max_samples, split=config.dataset_split,
                                name=config.dataset_name, prefix=config.question_prefix,
                                suffix=config.question_suffix)


def resolve_model(source: str) -> str:
    """A run directory of another study stands for the model it saved (its model/ subfolder)."""
    path = Path(os.path.expanduser(source))
    if (path / "model").is_dir():
        return str(path / "model")
    if (path / "summary.json").is_file() and not (path / "model.safetensors").exists():
        raise DataError(f"pool member {source}: a run directory without a saved model/ (re-run it with "
                        f"save_model true)")
    return source


@torch.no_grad()
def perturb(model: torch.nn.Module, std: float, seed: int) -> None:
    """w += std * std(w) * N(0, 1) on every weight matrix (seeded): a cheap variant of the member."""
    generator = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        if param.ndim >= 2:
            noise = torch.randn(param.shape, generator=generator).to(param.device, param.dtype)
            param.add_(noise * (std * param.float().std().item()))


@torch.no_grad()
def option_scores(model, tokenizer, questions: list[str], choices: list[list[str]], *, batch_size: int,
                  option_score: str = "mean", use_chat_template=None) -> list[torch.Tensor]:
    """Per question, the (choices,) float64 scores of its choices: the log-prob of a choice's tokens after
    the question, summed or per-token mean. Questions may have different numbers of choices."""
    prompts, completions = [], []
    for question, options in zip(questions, choices):
        prompt_ids = encode_prompt(tokenizer, question, use_chat_template)
        for choice in options:
            prompts.append(prompt_ids)
            completions.append(encode_completion(tokenizer, question, " " + choice.strip(), prompt_ids,
                                                 use_chat_template=use_chat_template, add_eos=False))
    device = next(model.parameters()).device
    scores = torch.zeros(len(prompts), dtype=torch.float64)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(completions[i]))  # little padding
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = collate_sequences([prompts[i] for i in chunk], [completions[i] for i in chunk],
                                  tokenizer.pad_token_id).to(device)
        logps = sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.completion_mask).double().cpu()
        if option_score == "mean":
            logps = logps / batch.completion_lengths.clamp(min=1).double().cpu()
        scores[chunk] = logps
    return list(scores.split([len(options) for options in choices]))


def choice_logprobs(model, tokenizer, data: MultipleChoiceSet, *, batch_size: int, option_score: str = "mean",
                    use_chat_template=None) -> np.ndarray:
    """(samples, choices) log-softmax over each question's choice scores."""
    scores = torch.stack(option_scores(model, tokenizer, data.questions, data.choices, batch_size=batch_size,
                                       option_score=option_score, use_chat_template=use_chat_template))
    return torch.log_softmax(scores, dim=-1).float().numpy()


def member_record(member: Member, config: EnsembleConfig, num_samples: int) -> dict:
    """What a member's stored answers depend on: equal records mean the stored file can be reused."""
    return {"member": vars(member), "model_path": resolve_model(member.model), "option_score": config.option_score,
            "use_chat_template": config.use_chat_template, "dtype": config.dtype, "num_samples": num_samples}


def member_stem(index: int, member: Member) -> str:
    return f"{index:02d}_" + re.sub(r"[^A-Za-z0-9._~-]+", "_", member.name)


def save_array(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def collect_pool(config: EnsembleConfig, run_dir: Path, data: MultipleChoiceSet) -> np.ndarray:
    """(members, samples, choices) log-probabilities of the pool, loading the members stored already."""
    from common.models import check_model_source, free_memory, load_for_inference

    members = [Member.of(entry) for entry in config.pool]
    for member in members:  # a missing member fails before the others are scored, not after
        check_model_source(resolve_model(member.model))
    directory = run_dir / "members"
    directory.mkdir(parents=True, exist_ok=True)
    save_array(run_dir / "labels.npy", data.labels)
    pool = []
    for index, member in enumerate(members):
        stem = directory / member_stem(index, member)
        record = member_record(member, config, len(data.labels))
        if stem.with_suffix(".npy").is_file() and stem.with_suffix(".json").is_file() \
                and read_json(stem.with_suffix(".json")) == record:
            logger.info(f"member {index} {member.name}: stored answers reused")
            pool.append(np.load(stem.with_suffix(".npy")))
            continue
        logger.info(f"member {index} {member.name}: scoring {len(data.labels)} questions ({record['model_path']})")
        model, tokenizer = load_for_inference(record["model_path"], dtype=config.dtype, device=config.device,
                                              trust_remote_code=config.trust_remote_code)
        if member.perturb_std:
            perturb(model, member.perturb_std, member.perturb_seed)
        logprobs = choice_logprobs(model, tokenizer, data, batch_size=config.batch_size,
                                   option_score=config.option_score, use_chat_template=config.use_chat_template)
        del model
        free_memory()
        save_array(stem.with_suffix(".npy"), logprobs)
        write_json(stem.with_suffix(".json"), record)  # after the answers: a record always has its array
        pool.append(logprobs)
    pool = np.stack(pool)
    save_array(run_dir / "correct.npy", (pool.argmax(-1) == data.labels[None]).T)
    return pool
