"""The configs of H3Fusion's two stages (ensembles/h3fusion_run.py), picked by a run's `stage` field:

- `expert` (`ExpertConfig`): SFT of one LoRA on the base model's MLP projections with one data set
  (`expert`: helpful = Alpaca, harmless = BeaverTails' safe answers, honest = TruthfulQA's best
  answers); the adapter is saved (run_dir/model, peft's format).
- `fusion` (`FusionConfig`): the base model and the three expert runs become the mixture of experts
  (ensembles/h3fusion.py); its routers are trained on the equal mixture of the three sets with the gate
  loss and saved (run_dir/routers.safetensors); then the base, each expert alone, the mean-delta merge
  and the fused MoE are evaluated: HS on pinned harmful prompts, helpfulness on held-out Alpaca
  instructions, honesty as TruthfulQA MC1 accuracy.

Both stages share the data fields (`H3FusionConfig`) and select the same rows (h3fusion_data.select),
so that no training row is an evaluation row. Defaults are the public code's where it has them (LoRA r 8,
alpha 4, dropout 0.1 on gate/up/down_proj; AdamW lr 5e-4, 3 epochs, max length 300; top-2 routing,
gate-loss weight 0.01); the rest are ours (docs/ensembles.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from common.config import FieldError, TrainConfig, did_you_mean, option
from ensembles.h3fusion import GATE_LOSSES, PROJECTIONS

EXPERTS = ("helpful", "harmless", "honest")  # the experts' order in the mixture


def stage_option(name: str):
    return option(name, choices=[name], help="the run's stage: expert or fusion (ensembles/h3fusion_config.py)")


@dataclass
class H3FusionConfig(TrainConfig):
    """Fields both stages share: the data sets, the selection of their rows, the prompt."""

    stage: str = option("expert", help="the run's stage: expert or fusion (ensembles/h3fusion_config.py)")
    data_sources: dict[str, str] = option({}, data_path=True,
                                          help="data set -> hub id or local file/dir, overriding the hub default "
                                               "(ensembles/h3fusion_data.py: SOURCES): helpful, harmless, honest, "
                                               "honest_mc")
    num_train: int = option(400, min=1, help="training rows of each data set (an expert: its set's; fusion: this "
                                             "many of each, the equal mixture)")
    num_harmful_eval: int = option(500, min=1, help="pinned harmful prompts for HS: the first distinct unsafe "
                                                    "prompts of BeaverTails 30k_test")
    num_helpful_eval: int = option(100, min=1, help="helpful prompts: the first Alpaca rows (the training rows "
                                                    "follow them)")
    num_honest_eval: int = option(0, min=0, help="TruthfulQA MC1 questions not trained on (the first ones); "
                                                 "0 = all of them")
    instruction_template: str = option("alpaca", choices=["alpaca", "plain"],
                                       help="alpaca: the public code's Alpaca prompt; plain: the instruction alone "
                                            "(chat models, with their chat template)")
    use_chat_template: Optional[bool] = option(None, help="null = use it when the tokenizer has one")
    # SFT (the public code: HF Trainer, AdamW, token-mean cross-entropy on the response tokens)
    objective: str = option("cross_entropy", help="H3Fusion trains with cross_entropy (SFT) only")
    sft_loss_type: str = option("token_mean", choices=["sum", "token_mean"],
                                help="token_mean: the HF Trainer's loss (the gate-loss weight is relative to it)")
    optimizer: str = option("adamw", choices=["adamw", "adam", "sgd", "rmsprop"])
    lr: float = option(5e-4, min=0.0, min_exclusive=True)
    batch_size: int = option(8, min=1)
    num_epochs: float = option(3, min=0, min_exclusive=True)
    max_length: int = option(300, min=2, help="prompt + response tokens (the public code's model_max_length)")

    def validate(self) -> None:
        super().validate()
        if not self.model:
            raise FieldError("model", "required: the base model (hub id or local path)")
        if self.objective != "cross_entropy":
            raise FieldError("objective", "H3Fusion's experts and routers train with cross_entropy (SFT) only")
        from ensembles.h3fusion_data import SOURCES

        for name in self.data_sources:
            if name not in SOURCES:
                raise FieldError("data_sources", f"unknown data set {name!r}{did_you_mean(name, SOURCES)}; "
                                                 f"choose among {', '.join(SOURCES)}")


@dataclass
class ExpertConfig(H3FusionConfig):
    stage: str = stage_option("expert")
    expert: str = option("helpful", choices=list(EXPERTS), help="which data set this expert is aligned on")
    lora: Optional[dict] = option({"r": 8, "lora_alpha": 4, "lora_dropout": 0.1, "target_modules": list(PROJECTIONS)},
                                  help="peft LoraConfig kwargs; its target_modules must be MLP projections (the "
                                       "experts are MLPs)")
    save_model: bool = option(True, help="the adapter is what the fusion stage loads")

    def validate(self) -> None:
        super().validate()
        if not self.lora:
            raise FieldError("lora", "an expert is a LoRA: give peft LoraConfig kwargs, e.g. {\"r\": 8}")
        targets = self.lora.get("target_modules")
        if not isinstance(targets, list) or not targets or any(t not in PROJECTIONS for t in targets):
            raise FieldError("lora", f"target_modules {targets!r}: an expert adapts the MLP only; list some of "
                                     f"{', '.join(PROJECTIONS)}")
        if self.lora.get("use_dora"):
            raise FieldError("lora", "use_dora: a DoRA delta is not B A; leave it out")
        if not self.save_model or self.merge_lora:
            raise FieldError("save_model" if not self.save_model else "merge_lora",
                             "the fusion stage loads the expert's adapter: keep save_model true and merge_lora false")


@dataclass
class FusionConfig(H3FusionConfig):
    stage: str = stage_option("fusion")
    helpful_expert: str = option("{outputs_dir}/expert_helpful_s{seed}", path=True,
                                 help="run directory of the helpful expert stage")
    harmless_expert: str = option("{outputs_dir}/expert_harmless_s{seed}", path=True,
                                  help="run directory of the harmless expert stage")
    honest_expert: str = option("{outputs_dir}/expert_honest_s{seed}", path=True,
                                help="run directory of the honest expert stage")
    top_k: int = option(2, min=1, max=len(EXPERTS), help="experts mixed per token (the paper: 2)")
    gate_loss: str = option("source", choices=list(GATE_LOSSES),
                            help="source: -log of the router's mean probability of the example's own expert (the "
                                 "paper's, without its double softmax); balance: the Switch-Transformer term")
    gate_coeff: float = option(0.01, min=0.0, help="weight of the gate loss (the paper's lambda: 0.01)")
    lr: float = option(1e-3, min=0.0, min_exclusive=True, help="router learning rate")
    num_epochs: float = option(1, min=0, min_exclusive=True)
    harmful_judge: dict = option({"type": "keyword_refusal"},
                                 help="HS judge, a common.registry.SCORERS spec: keyword_refusal (offline stand-in: "
                                      "flagged = does not refuse) or beaver_dam (PKU-Alignment/beaver-dam-7b)")
    helpful_scorer: dict = option({"type": "keyword_refusal"},
                                  help="helpfulness, a SCORERS spec whose mean score is reported: keyword_refusal "
                                       "(offline plumbing: share of helpful prompts answered, not refused) or "
                                       "hf_reward (a reward model)")
    max_new_tokens: int = option(128, min=1, help="greedy generation length of the HS and helpfulness answers")
    generation_batch_size: int = option(32, min=1)
    mc_option_score: str = option("sum", choices=["sum", "mean"],
                                  help="an MC1 choice's score: its summed (TruthfulQA's) or per-token mean log-prob")

    def validate(self) -> None:
        super().validate()
        if self.lora:
            raise FieldError("lora", "the fusion stage trains the routers only; leave lora out")
        if self.save_model or self.merge_lora:
            raise FieldError("save_model", "the fusion stage saves its routers (routers.safetensors); leave "
                                           "save_model and merge_lora false")
        seen: dict[str, str] = {}
        for name, directory in self.expert_dirs().items():
            if directory in seen:
                raise FieldError(f"{name}_expert", f"{directory!r} is the run directory of {seen[directory]}_expert "
                                                   f"too; give each expert its own run")
            seen[directory] = name
        from common.errors import DataError
        from common.models import check_model_source
        from common.registry import SCORERS

        for field in ("harmful_judge", "helpful_scorer"):
            spec = getattr(self, field)
            SCORERS.check(spec)
            if isinstance(spec.get("model"), str):  # a local scorer path that does not exist fails before training
                try:
                    check_model_source(spec["model"])
                except DataError as e:
                    raise FieldError(field, f"cannot load it: {e}") from None

    def expert_dirs(self) -> dict[str, str]:
        return {name: getattr(self, f"{name}_expert") for name in EXPERTS}
