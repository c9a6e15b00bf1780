"""The plan runner behind `python -m ensembles`: ensemble runs (LLM-TOPLA over the lab's own models) and
H3Fusion's stages. A run's `stage` field picks its config class and run function from STAGES: absent (or
"ensemble"), an ensemble run (EnsembleConfig); "expert" or "fusion", H3Fusion's (ensembles/h3fusion_run.py).

One ensemble run:
1. collects each pool member's answers on the labelled multiple-choice set once (ensembles/collect.py:
   probability vectors over the shared answer space, a correctness matrix; resumable per member);
2. splits the samples (seeded) into disjoint train / validation / test parts;
3. prunes: every sub-ensemble of the wanted sizes scored by focal diversity on the validation split,
   thresholded, the top k kept (ensembles/pruning.py);
4. fuses each kept team and the whole pool with TOPLA-Weighted (ensembles/fusion.py: trained on train,
   epoch picked on validation);
5. optionally trains MARL-Focal's decider and aggregator on the whole pool (ensembles/marl_focal.py),
   evaluated frozen, without test labels;
6. reports on the test split: each member's accuracy, and per team its focal diversity, generalized
   diversity, Fleiss' kappa, plurality-vote accuracy and fused accuracy (summary.json, teams.jsonl).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.config import RunConfig, option
from common.errors import DataError
from common.tracking import logger, write_jsonl
from ensembles.collect import Member, collect_pool, read_config_set
from ensembles.config import EnsembleConfig
from ensembles.fusion import FusionSettings, fit_fusion
from ensembles.h3fusion_config import ExpertConfig, FusionConfig
from ensembles.h3fusion_run import run_expert, run_fusion
from ensembles.marl_focal import MarlSettings, fit_agents
from ensembles.metrics import accuracy, fleiss_kappa, focal_diversity, generalized_diversity, plurality_vote
from ensembles.pruning import prune, team_sizes

SPLITS = ("train", "validation", "test")


def split_samples(num_samples: int, train_fraction: float, validation_fraction: float, seed: int) -> dict:
    """Disjoint index arrays {train, validation, test} of a seeded permutation (each split non-empty)."""
    order = np.random.default_rng(seed).permutation(num_samples)
    num_train = max(1, int(round(train_fraction * num_samples)))
    num_val = max(1, int(round(validation_fraction * num_samples)))
    if num_train + num_val >= num_samples:
        raise DataError(f"{num_samples} samples leave no test split with train_fraction {train_fraction:g} and "
                        f"validation_fraction {validation_fraction:g}; use a larger set")
    return {"train": np.sort(order[:num_train]), "validation": np.sort(order[num_train:num_train + num_val]),
            "test": np.sort(order[num_train + num_val:])}


def team_record(members: tuple[int, ...], names: list[str], probs: np.ndarray, labels: np.ndarray,
                splits: dict, config: EnsembleConfig, validation_focal: float | None = None) -> dict:
    """Test-split diversity and accuracies of one team; probs is (samples, members, classes) of the pool."""
    test, team = splits["test"], list(members)
    num_classes = probs.shape[-1]
    predictions = probs[:, team].argmax(-1)
    correct = predictions == labels[:, None]
    fusion = fit_fusion(probs[splits["train"]][:, team], labels[splits["train"]],
                        probs[splits["validation"]][:, team], labels[splits["validation"]],
                        FusionSettings(config.fusion_epochs, config.fusion_lr, config.fusion_batch_size,
                                       config.fusion_hidden, config.seed))
    return {"members": team, "names": [names[m] for m in team], "size": len(team),
            "validation_focal_diversity": validation_focal,
            "focal_diversity": focal_diversity(correct[test]),
            "generalized_diversity": generalized_diversity(correct[test]),
            "fleiss_kappa": fleiss_kappa(predictions[test], num_classes),
            "plurality_accuracy": accuracy(plurality_vote(predictions[test], num_classes, probs[test][:, team]),
                                           labels[test]),
            "fused_accuracy": accuracy(fusion.predict(probs[test][:, team]), labels[test]),
            "fusion_best_epoch": fusion.best_epoch}


def marl_focal_record(probs: np.ndarray, labels: np.ndarray, splits: dict, config: EnsembleConfig) -> dict:
    train, val, test = splits["train"], splits["validation"], splits["test"]
    fitted = fit_agents(probs[train], labels[train], probs[val], labels[val],
                        MarlSettings(config.marl_epochs, config.fusion_lr, config.fusion_batch_size,
                                     config.fusion_hidden, config.marl_size_penalty, config.seed))
    answers, teams = fitted.predict(probs[test])
    return {"protocol": "frozen agents, trained on the train split, no test labels",
            "test_accuracy": accuracy(answers, labels[test]), "mean_team_size": float(teams.sum(1).mean()),
            "selection_rate": teams.mean(0).tolist(), "best_epoch": fitted.best_epoch}


def run_ensemble(config: EnsembleConfig, run_dir: Path) -> dict:
    data = read_config_set(config)
    names = [Member.of(entry).name for entry in config.pool]
    probs = np.exp(collect_pool(config, run_dir, data)).transpose(1, 0, 2)  # (samples, members, classes)
    labels, num_classes = data.labels, data.num_classes
    splits = split_samples(len(labels), config.train_fraction, config.validation_fraction, config.seed)
    predictions = probs.argmax(-1)
    correct = predictions == labels[:, None]
    members = [{"index": m, "name": name,
                **{f"{split}_accuracy": accuracy(predictions[splits[split], m], labels[splits[split]])
                   for split in SPLITS}} for m, name in enumerate(names)]

    val = splits["validation"]
    kept = prune(correct[val], predictions[val], labels[val], num_classes,
                 sizes=team_sizes(len(names), config.min_team_size, config.max_team_size),
                 threshold=config.diversity_threshold, top_k=config.top_k, max_teams=config.max_teams,
                 probabilities=probs[val])
    logger.info(f"pruning kept {len(kept)} teams; fusing them and the whole pool")
    teams = [team_record(t.members, names, probs, labels, splits, config, t.focal_diversity) for t in kept]
    whole = tuple(range(len(names)))
    pool = team_record(whole, names, probs, labels, splits, config, focal_diversity(correct[val]))
    write_jsonl(run_dir / "teams.jsonl", [{**t, "rank": r} for r, t in enumerate(teams, start=1)])
    marl = marl_focal_record(probs, labels, splits, config) if config.marl_focal else None
    return {"marl_focal": marl, "num_samples": len(labels), "num_classes": num_classes,
            "split_sizes": {s: len(splits[s]) for s in SPLITS}, "members": members, "pool": pool, "teams": teams,
            "best_member_test_accuracy": max(m["test_accuracy"] for m in members)}


STAGES = {  # stage name (the `stage` field) -> (config class, run function)
    "ensemble": (EnsembleConfig, run_ensemble),
    "expert": (ExpertConfig, run_expert),
    "fusion": (FusionConfig, run_fusion),
}


@dataclass
class PlanConfig(RunConfig):
    """What plans are expanded with: each run is built as its stage's config class (an ensemble run's config
    has no `stage` field: its plans predate H3Fusion)."""

    stage: str = option("ensemble", help="ensemble (default): an LLM-TOPLA ensemble run; expert or fusion: "
                                         "H3Fusion's stages")

    @classmethod
    def run_classes(cls) -> tuple[str, dict[str, type]]:
        return "stage", {stage: config_cls for stage, (config_cls, _) in STAGES.items()}


def run(config, run_dir: Path) -> dict:
    return {config_cls: fn for config_cls, fn in STAGES.values()}[type(config)](config, run_dir)
