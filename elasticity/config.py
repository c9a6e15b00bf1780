"""The elasticity study's run configs: one dataclass per stage, picked by a run's `experiment` field.

- `classifier` (`ClassifierConfig`): train a tiny sequence classifier (sentiment / safety) on a labelled
  dataset; the offline stand-in for the paper's sentiment and cost models, used by rebound runs as an
  `hf_classifier` scorer.
- `resistance` (`ResistanceConfig`): slices -> successive SFT checkpoints th1..thn -> each checkpoint's
  responses -> forward (th_k on th_l's responses, k < l) and inverse (th_l on th_k's responses)
  fine-tuning (Table 1).
- `rebound` (`ReboundConfig`): SFT on positive data of several sizes, then on negative data of several
  sizes; scores of generations, KL to the base model, negatives needed to bring the KL under epsilon
  (Table 3).

Resistance and rebound runs share the generation and compression fields (`GenerationConfig`) and the
factor fields (`FactorsConfig`): a run may start from a tiny model that it pre-trains itself
(`pretrain_tokens` > 0), the model-size / pre-training-volume factor sweep on CPU. Plans are expanded
with `elasticity.__main__.PlanConfig`, which builds each run as its stage's class; a field that the
run's stage does not use is an error naming the stage.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from common.config import FieldError, TrainConfig, did_you_mean, option


def stage_option(name: str):
    """The `experiment` field of a stage's config class: its stage name, the only value it accepts."""
    return option(name, choices=[name], help="the run's stage: classifier, resistance or rebound (see module doc)")


@dataclass
class ElasticityConfig(TrainConfig):
    """The fields every stage uses: the stage, its SFT optimizer and its dataset."""

    experiment: str = option("resistance", help="the run's stage: classifier, resistance or rebound "
                                                "(see module doc)")

    # SFT defaults (safe-rlhf's: AdamW, lr 2e-5, 3 epochs); every training stage of a run uses them.
    objective: str = option("cross_entropy", help="SFT loss; the study only trains with cross_entropy")
    optimizer: str = option("adamw", choices=["rmsprop", "adam", "adamw", "sgd"])
    lr: float = option(2e-5, min=0.0)
    batch_size: int = option(32, min=1, help="examples per optimizer step (global)")
    num_epochs: float = option(3, min=0, min_exclusive=True)

    # Data
    dataset: str = option("alpaca", help="alpaca, truthful_qa, beavertails, imdb or text")
    data_sources: dict[str, str] = option({}, data_path=True,
                                          help="dataset name -> hub id or local path, overriding the hub default, "
                                               "e.g. {\"imdb\": \"data_files/elasticity/imdb\"}")
    data_seed: int = option(0, help="seeds the held-out split and the slices; keep it fixed across a plan")
    num_heldout: int = option(200, min=1, help="rows held out of training: generation prompts, compression, "
                                               "KL, classifier accuracy")
    imdb_prompt_words: int = option(2, min=1, help="IMDb: the review's first N words are the prompt")

    def validate(self) -> None:
        super().validate()
        if not self.model:
            raise FieldError("model", "required: a hub id or a local path")
        if self.objective != "cross_entropy":
            raise FieldError("objective", "the elasticity study fine-tunes with cross_entropy (SFT) only")
        for field, names in (("dataset", [self.dataset]), ("data_sources", list(self.data_sources))):
            check_dataset_names(field, names)

    def labelled_dataset(self) -> bool:
        from elasticity.datasets import DATASETS

        return DATASETS[self.dataset].label is not None


@dataclass
class PolarityConfig:
    """Mixin of the stages that train on one polarity of a labelled dataset (classifier, resistance)."""

    dataset_polarity: str = option("all", choices=["all", "positive", "negative"],
                                   help="keep only positive (safe / positive) or negative rows of a "
                                        "labelled dataset")

    def validate(self) -> None:
        super().validate()
        if self.dataset_polarity != "all" and not self.labelled_dataset():
            raise FieldError("dataset_polarity", f"{self.dataset} has no labels: use \"all\"")


@dataclass
class ClassifierConfig(PolarityConfig, ElasticityConfig):
    experiment: str = stage_option("classifier")

    def validate(self) -> None:
        super().validate()
        if not self.labelled_dataset():
            raise FieldError("dataset", f"classifier needs a labelled dataset (imdb or beavertails), "
                                        f"not {self.dataset}")


@dataclass
class FactorsConfig:
    """Mixin of the factor sweeps' fields: pre-train the starting model here (tiny scale) instead of
    loading `model` as it is, or label a hub checkpoint's pre-training volume for the plots."""

    pretrain_tokens: int = option(0, min=0, help="> 0: pre-train a fresh tiny model on this many tokens of the "
                                                "tiny corpus, with the tokenizer of `model`")
    pretrain_spec: dict = option({}, help="tiny.pretrain.TinyModelSpec fields, e.g. {\"hidden_size\": 64, "
                                          "\"num_layers\": 2}")
    pretrain_documents: int = option(30000, min=1, help="tiny-corpus documents the pre-training draws from")
    pretrain_lr: float = option(3e-3, min=0.0, min_exclusive=True)
    pretraining_tokens_label: float = option(0.0, min=0.0, help="for plots of hub checkpoints: their "
                                                                  "pre-training tokens, e.g. 2.5e12")

    def validate(self) -> None:
        super().validate()
        if self.pretrain_spec:
            from tiny.pretrain import TinyModelSpec

            spec_fields = {f.name for f in dataclasses.fields(TinyModelSpec)}
            for key in self.pretrain_spec:
                if key not in spec_fields:
                    raise FieldError("pretrain_spec", f"unknown TinyModelSpec field {key!r}"
                                                      f"{did_you_mean(key, spec_fields)}")
            check_tiny_spec(TinyModelSpec(**self.pretrain_spec))


@dataclass
class GenerationConfig(FactorsConfig, ElasticityConfig):
    """What resistance and rebound share: prompts, compression sets, sampling, checkpoints, factors."""

    use_chat_template: Optional[bool] = option(None, help="null = use it when the tokenizer has one")
    prompt_prefix: str = option("", help="text put before every prompt, e.g. \"Question: \"")
    prompt_suffix: str = option("", help="text put after every prompt, e.g. \"\\nAnswer:\\n\"")
    compression_datasets: list = option([], help="datasets (names as in `dataset`) whose held-out compression "
                                                 "rate is logged during every training stage; the run's own "
                                                 "dataset is always included")
    num_compression_examples: int = option(100, min=1, help="held-out rows per dataset for compression rates")

    # Generation (resistance data, rebound scores)
    max_new_tokens: int = option(128, min=1)
    temperature: float = option(1.0, min=0.0, help="0 = greedy")
    top_p: float = option(1.0, min=0.0, max=1.0)
    generation_batch_size: int = option(32, min=1)
    keep_models: bool = option(True, help="false: delete intermediate checkpoints once nothing needs them")

    def validate(self) -> None:
        super().validate()
        check_dataset_names("compression_datasets", self.compression_datasets)
        if self.dataset == "text":
            raise FieldError("dataset", f"{self.experiment} needs prompts to answer; 'text' is for compression only")
        if self.num_compression_examples > self.num_heldout:
            raise FieldError("num_compression_examples", f"the compression rows of the run's dataset are held-out "
                                                         f"rows: at most num_heldout={self.num_heldout}")


@dataclass
class ResistanceConfig(PolarityConfig, GenerationConfig):
    experiment: str = stage_option("resistance")
    num_slices: int = option(3, min=2, help="SFT slices, one checkpoint th_k per slice")
    slice_size: int = option(-1, help="examples per slice; -1 = the training rows split equally")
    num_generation_prompts: int = option(200, min=2, help="held-out prompts every checkpoint answers")
    num_generation_heldout: int = option(20, min=1, help="of those, responses kept out of the pair "
                                                           "fine-tuning to measure compression on")

    def validate(self) -> None:
        super().validate()
        if self.num_generation_heldout >= self.num_generation_prompts:
            raise FieldError("num_generation_heldout", "must be smaller than num_generation_prompts")
        if self.num_generation_prompts > self.num_heldout:
            raise FieldError("num_generation_prompts", f"the prompts come from the {self.num_heldout} "
                                                       f"held-out rows: raise num_heldout")


@dataclass
class ReboundConfig(GenerationConfig):
    experiment: str = stage_option("rebound")
    positive_sizes: list = option([1000, 2000, 5000, 10000], help="positive SFT set sizes")
    negative_sizes: list = option([100, 200, 500, 1000, 2000], help="negative SFT set sizes")
    num_test_prompts: int = option(200, min=1, help="held-out prompts scored after every stage")
    num_kl_examples: int = option(100, min=1, help="held-out examples the KL to the base model is measured on")
    kl_epsilon: float = option(0.01, min=0.0, min_exclusive=True, help="Table 3 threshold on the per-token KL")
    scorer: dict = option({}, help="a common.registry.SCORERS spec, e.g. {\"type\": \"hf_classifier\", \"model\": "
                                   "\"siebert/sentiment-roberta-large-english\", \"label\": \"POSITIVE\"}; "
                                   "string values may use {field} templates")

    def validate(self) -> None:
        super().validate()
        if not self.labelled_dataset():
            raise FieldError("dataset", f"rebound needs a labelled dataset (imdb or beavertails), not {self.dataset}")
        for field in ("positive_sizes", "negative_sizes"):
            sizes = getattr(self, field)
            if not sizes or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in sizes):
                raise FieldError(field, f"expected a non-empty list of positive integers, got {sizes}")
        if not self.scorer:
            raise FieldError("scorer", "rebound scores generations: give a scorer spec, e.g. "
                                       "{\"type\": \"hf_classifier\", \"model\": ..., \"label\": ...}")
        for field in ("num_test_prompts", "num_kl_examples"):  # both are taken from the held-out rows
            if getattr(self, field) > self.num_heldout:
                raise FieldError(field, f"the rows come from the {self.num_heldout} held-out rows: at most "
                                        f"num_heldout, or raise num_heldout")


def check_dataset_names(field: str, names) -> None:
    from elasticity.datasets import DATASETS

    for name in names:
        if name not in DATASETS:
            raise FieldError(field, f"unknown dataset {name!r}{did_you_mean(name, DATASETS)}; "
                                    f"choose one of {', '.join(DATASETS)}")


def check_tiny_spec(spec) -> None:
    """FieldError for a TinyModelSpec that would fail (or silently misbuild) only once pre-training starts."""
    for field in dataclasses.fields(spec):
        value = getattr(spec, field.name)
        if field.name == "num_kv_heads" and value is None:
            continue
        if field.name == "rms_norm_eps":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        if not ok:
            kind = "number" if field.name == "rms_norm_eps" else "integer"
            raise FieldError(f"pretrain_spec.{field.name}", f"expected a positive {kind}, got {value!r}")
    if spec.hidden_size % spec.num_heads:
        raise FieldError("pretrain_spec.num_heads", f"hidden_size {spec.hidden_size} is not divisible by "
                                                    f"num_heads {spec.num_heads}")
    if spec.num_kv_heads is not None and spec.num_heads % spec.num_kv_heads:
        raise FieldError("pretrain_spec.num_kv_heads", f"num_heads {spec.num_heads} is not divisible by "
                                                       f"num_kv_heads {spec.num_kv_heads}")
