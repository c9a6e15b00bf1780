"""The config of one ensemble run (`python -m ensembles`): the pool, the labelled multiple-choice set,
the splits, the pruning search and the TOPLA-Weighted fusion."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from common.config import FieldError, RunConfig, option

MEMBER_KEYS = {"model", "name", "perturb_std", "perturb_seed"}


@dataclass
class EnsembleConfig(RunConfig):
    pool: list[Union[str, dict]] = option([], help="the members: hub ids, local model paths, or run directories of "
                                                    "other studies (their model/ subfolder); or objects {\"model\": "
                                                    "..., \"name\": ..., \"perturb_std\": s, \"perturb_seed\": k} "
                                                    "(weights + s * std(w) * seeded noise: a cheap seed variant)")
    dataset_path: str = option("", data_path=True, help="multiple-choice set, rows {question, choices (the same "
                                                        "number on every row: the shared answer space), answer "
                                                        "(index of the right choice)}: a .jsonl/.json/.parquet/.csv "
                                                        "file, a save_to_disk directory or a hub dataset (cais/mmlu)")
    dataset_name: str = option("", help="the hub dataset's config name (cais/mmlu: all)")
    dataset_split: str = option("test", help="split of a hub dataset or a directory of <split>.jsonl")
    question_prefix: str = option("", help="written before each question (e.g. \"Question: \")")
    question_suffix: str = option("", help="written after each question, before a choice (e.g. \"\\nAnswer:\")")
    max_samples: int = option(-1, help="first N rows of the set; -1 = all")
    option_score: str = option("mean", choices=["sum", "mean"],
                               help="a choice's score: summed or per-token mean log-prob of its tokens after the "
                                    "question (mean: choices of different lengths compete fairly)")
    use_chat_template: Optional[bool] = option(None, help="null = use it when the tokenizer has one")
    dtype: str = option("float32", choices=["float32", "bfloat16", "float16"])
    device: Optional[str] = option(None, help="null = cuda when available, else cpu")
    trust_remote_code: bool = option(False)
    batch_size: int = option(32, min=1, help="question-choice rows per forward")
    train_fraction: float = option(0.4, min=0.0, max=1.0, min_exclusive=True,
                                   help="share of the samples the fusion MLP trains on")
    validation_fraction: float = option(0.2, min=0.0, max=1.0, min_exclusive=True,
                                        help="share (disjoint from train) that scores pruning and picks the fusion "
                                             "epoch; the rest is the test split every reported accuracy is on")
    min_team_size: int = option(2, min=2)
    max_team_size: int = option(0, min=0, help="largest sub-ensemble enumerated; 0 = the whole pool")
    diversity_threshold: float = option(0.0, help="keep teams whose validation focal diversity is at least this")
    top_k: int = option(5, min=0, help="teams kept after pruning (best focal diversity first); 0 = all kept")
    max_teams: int = option(5000, min=1, help="refuse a search over more sub-ensembles than this")
    fusion_epochs: int = option(100, min=1)
    fusion_lr: float = option(1e-3, min=0.0, min_exclusive=True, help="Adam lr of the fusion MLP (paper: 1e-3)")
    fusion_batch_size: int = option(32, min=1)
    fusion_hidden: int = option(100, min=1, help="width of the MLP's two hidden layers (paper: 100)")
    marl_focal: bool = option(True, help="train MARL-Focal's decider and aggregator on the whole pool (train split) "
                                         "and report the frozen agents' test accuracy")
    marl_epochs: int = option(100, min=1)
    marl_size_penalty: float = option(0.2, min=0.0, help="decider reward: +1 right / -1 wrong, minus this x "
                                                         "team size / pool size")

    def validate(self) -> None:
        super().validate()
        if not self.dataset_path:
            raise FieldError("dataset_path", "required: a JSONL multiple-choice set (python -m ensembles.fixtures "
                                             "writes the tiny one)")
        if len(self.pool) < 2:
            raise FieldError("pool", f"an ensemble needs at least 2 members, got {len(self.pool)}")
        names = []
        for i, entry in enumerate(self.pool):
            if isinstance(entry, dict):
                unknown = sorted(set(entry) - MEMBER_KEYS)
                if unknown:
                    raise FieldError("pool", f"member {i}: unknown key {unknown[0]!r}; a member has "
                                             f"{sorted(MEMBER_KEYS)}")
                if not isinstance(entry.get("model"), str) or not entry["model"]:
                    raise FieldError("pool", f"member {i}: \"model\" (a hub id or path) is required")
                if not isinstance(entry.get("perturb_std", 0.0), (int, float)) or entry.get("perturb_std", 0.0) < 0:
                    raise FieldError("pool", f"member {i}: perturb_std must be a number >= 0")
                if not isinstance(entry.get("perturb_seed", 0), int):
                    raise FieldError("pool", f"member {i}: perturb_seed must be an integer")
            elif not entry:
                raise FieldError("pool", f"member {i}: empty model name")
            names.append(member_name(entry))
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise FieldError("pool", f"two members are both named {repeated[0]!r}; give them distinct \"name\"s")
        if self.train_fraction + self.validation_fraction >= 1:
            raise FieldError("validation_fraction", f"train_fraction + validation_fraction = "
                                                    f"{self.train_fraction + self.validation_fraction:g} leaves no "
                                                    f"test split; keep their sum below 1")
        if self.max_team_size and self.max_team_size < self.min_team_size:
            raise FieldError("max_team_size", f"{self.max_team_size} is below min_team_size {self.min_team_size}")


def member_name(entry: Union[str, dict]) -> str:
    """A member's label: its "name", else the model path's last part (+ "~s<seed>" for a perturbed copy)."""
    if isinstance(entry, str):
        entry = {"model": entry}
    if entry.get("name"):
        return entry["name"]
    name = entry["model"].rstrip("/").split("/")[-1]
    if name == "model":  # a run directory's model/ folder: name it by the run
        name = entry["model"].rstrip("/").split("/")[-2]
    return name + (f"~s{entry.get('perturb_seed', 0)}" if entry.get("perturb_std") else "")
