"""The harmful fine-tuning study's run configs: one dataclass per stage, picked by a run's `stage` field.

- `align` (`AlignConfig`): SFT (LoRA or full) of a base model on safety data (BeaverTails `is_safe`
  answers, Vaccine; or the RepNoise refusals, Booster); the LoRA merged (alpha/r respected) and saved.
- `finetune` (`FinetuneConfig`): the user's fine-tuning of the aligned model on D_user = round(p*n)
  harmful + n - round(p*n) benign samples of `task`; a new LoRA (merged and saved) or full; the provider's
  `finetune_defense` during it (Lisa) or after it (Panacea, random perturbation), `FinetuneDefenseConfig`.
- `evaluate` (`EvaluateConfig`): harmful score HS (a moderation judge over the pinned harmful prompts)
  and fine-tune accuracy FA (the task's test items) of a model.

Every stage shares the data fields (`DataConfig`): each stage selects the same rows deterministically
(harmful_ft/data.py: `select`), so that prompts are de-duplicated across alignment, attack and
evaluation data in every stage without files passed by hand. Stages name each other's models by plan
templating, e.g. `"model": "{outputs_dir}/align_{defense}_s{seed}/model"`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ches.similarity_file import MEASURES
from common.config import GRADIENT_OPTIMIZERS, ZEROTH_ORDER_OPTIMIZERS, FieldError, TrainConfig, did_you_mean, option

TASKS = ("sst2", "agnews", "gsm8k", "alpaca")
SAFETY_DATA = ("beavertails_safe", "repnoise_refusal")
# Evaluation protocols: (harmful prompts, task test items, max new tokens); decoding is greedy.
PROTOCOLS = {"vaccine": (500, 500, 128), "booster": (1000, 1000, 512)}
# Fine-tuning-stage (lisa) and post-fine-tuning (panacea, random_perturbation) defenses of the finetune stage
FINETUNE_DEFENSES = ("none", "lisa", "panacea", "random_perturbation")
HARMFUL_DATA = ("beavertails", "virus")


def stage_option(name: str):
    return option(name, choices=[name], help="the run's stage: align, finetune or evaluate (see module doc)")


@dataclass
class DataConfig(TrainConfig):
    """Fields every stage shares: the data sources, the selection of the rows, the prompt format."""

    stage: str = option("align", help="the run's stage: align, finetune or evaluate (see module doc)")
    data_sources: dict[str, str] = option({}, data_path=True,
                                          help="dataset -> hub id or local file/dir, overriding the hub "
                                               "default (harmful_ft/data.py: SOURCES), e.g. "
                                               "{\"sst2\": \"data_files/harmful_ft/sst2\"}")
    data_seed: int = option(0, help="seeds the attack data draw; the same in every stage of a plan")
    safety_data: str = option("beavertails_safe", choices=list(SAFETY_DATA),
                              help="alignment data: BeaverTails is_safe answers (Vaccine) or RepNoise "
                                   "refusals (Booster)")
    num_align: int = option(2000, min=1, help="alignment samples (Vaccine 2000, Booster 5000)")
    num_harmful_eval: int = option(0, min=0, help="harmful prompts of 30k_test for HS (the first ones, unsafe, "
                                                  "de-duplicated); 0 = the eval_protocol's")
    num_task_eval: int = option(0, min=0, help="task test items for FA (the first ones); 0 = the eval_protocol's")
    eval_protocol: str = option("vaccine", choices=[*PROTOCOLS, "custom"],
                                help="vaccine: 500 prompts / 500 items / 128 new tokens; booster: 1000 / 1000 / 512; "
                                     "custom: give num_harmful_eval, num_task_eval and max_new_tokens")
    max_new_tokens: int = option(0, min=0, help="greedy generation length; 0 = the eval_protocol's")
    prompt_format: str = option("alpaca", choices=["alpaca", "plain"],
                                help="alpaca: the Alpaca prompt of the public code; plain: instruction and input "
                                     "only (for chat models, with their chat template)")
    use_chat_template: Optional[bool] = option(None, help="null = use it when the tokenizer has one")

    # SFT (the public code: AdamW, loss on response tokens only)
    objective: str = option("cross_entropy", help="the study trains with cross_entropy (SFT) only")
    optimizer: str = option("adamw", choices=[*GRADIENT_OPTIMIZERS, *ZEROTH_ORDER_OPTIMIZERS],
                            help="mezo / tezo / tezo_adam in the finetune stage: the forward-only (zeroth-order) "
                                 "attacker")
    defense: str = option("sft", help="alignment-stage defense (harmful_ft.defenses.DEFENSES): sft, vaccine, "
                                      "random_vaccine, booster, tvaccine or repnoise; later stages name it for the "
                                      "model path")

    def validate(self) -> None:
        super().validate()
        if not self.model:
            raise FieldError("model", "required: a hub id or a local path")
        if self.objective != "cross_entropy":
            raise FieldError("objective", "the harmful fine-tuning study trains with cross_entropy (SFT) only")
        from harmful_ft.data import SOURCES

        for name in self.data_sources:
            if name not in SOURCES:
                raise FieldError("data_sources", f"unknown dataset {name!r}{did_you_mean(name, SOURCES)}; "
                                                 f"choose among {', '.join(SOURCES)}")
        if self.eval_protocol == "custom":
            for field in ("num_harmful_eval", "num_task_eval", "max_new_tokens"):
                if not getattr(self, field):
                    raise FieldError(field, "eval_protocol custom: give a value > 0")
        check_defense(self.defense)

    def protocol(self) -> dict:
        """The resolved evaluation protocol (stored with every result)."""
        preset = PROTOCOLS.get(self.eval_protocol, (0, 0, 0))
        return {"eval_protocol": self.eval_protocol, "num_harmful_eval": self.num_harmful_eval or preset[0],
                "num_task_eval": self.num_task_eval or preset[1], "max_new_tokens": self.max_new_tokens or preset[2],
                "decoding": "greedy", "harmful_prompts": "first unsafe prompts of BeaverTails 30k_test, "
                                                          "de-duplicated by prompt"}


def check_defense(name: str) -> None:
    from harmful_ft.defenses import DEFENSES

    if name not in DEFENSES:
        raise FieldError("defense", f"unknown defense {name!r}{did_you_mean(name, DEFENSES)}; "
                                    f"choose one of {', '.join(DEFENSES)}")


@dataclass
class AlignConfig(DataConfig):
    stage: str = stage_option("align")
    lr: float = option(1e-3, min=0.0)
    weight_decay: float = option(0.1, min=0.0)
    batch_size: int = option(5, min=1)
    num_epochs: float = option(50, min=0, min_exclusive=True)
    save_model: bool = option(True, help="the aligned model is what the next stage loads")
    merge_lora: bool = option(True, help="with lora: save the full model with the adapter merged in (alpha/r)")
    # The defenses' strengths (harmful_ft/defenses.py; the papers' values)
    vaccine_rho: float = option(2.0, min=0.0, help="Vaccine / RandomVaccine: global norm of the perturbation")
    vaccine_site: str = option("attention", choices=["attention", "layer"],
                               help="Vaccine perturbs each layer's attention output (the public code) or its output")
    booster_lambda: float = option(5.0, min=0.0, help="Booster: weight of the harmful-loss-reduction term")
    booster_alpha: float = option(0.1, min=0.0, help="Booster: step size of the inner harmful step")
    # T-Vaccine and RepNoise (harmful_ft/tvaccine.py, harmful_ft/repnoise.py; the papers' values)
    tvaccine_rho: float = option(3.0, min=0.0, help="T-Vaccine: global norm of the perturbation on the sampled layers")
    tvaccine_layers: int = option(8, min=1, help="T-Vaccine: layers sampled (S), the others frozen")
    tvaccine_sample_every: int = option(20, min=1, help="T-Vaccine: steps between two layer draws")
    tvaccine_score_every: int = option(200, min=1, help="T-Vaccine: steps between two harmful-gradient scorings")
    tvaccine_score_samples: int = option(200, min=1, help="T-Vaccine: harmful examples per scoring")
    repnoise_beta: float = option(0.001, min=0.0, help="RepNoise: weight of the MMD towards Gaussian noise")
    repnoise_alpha: float = option(1.0, min=0.0, help="RepNoise: weight of the log-damped harmful ascent")

    def validate(self) -> None:
        super().validate()
        if not self.save_model:
            raise FieldError("save_model", "the aligned model must be saved: the finetune stage loads it")
        if self.lora and not self.merge_lora:
            raise FieldError("merge_lora", "the next stage loads a full model: keep merge_lora true with lora")


@dataclass
class AttackConfig:
    """Mixin of the stages that name the user data: the task, the harmful share p and the size n."""

    task: str = option("sst2", help=f"the user's benign task: {', '.join(TASKS)}")
    p: float = option(0.1, help="harmful share of the user data, in [0, 1]")
    n: int = option(1000, min=1, help="user data size (harmful + benign samples)")
    finetune_defense: str = option("none", choices=list(FINETUNE_DEFENSES),
                                   help="the provider's defense at or after the user's fine-tuning (harmful_ft/lisa.py,"
                                        " harmful_ft/post_training.py); evaluate names it for the model path")

    def validate(self) -> None:
        super().validate()
        if self.task not in TASKS:
            raise FieldError("task", f"unknown task {self.task!r}{did_you_mean(self.task, TASKS)}; "
                                     f"choose one of {', '.join(TASKS)}")
        if not 0.0 <= self.p <= 1.0:
            raise FieldError("p", f"the harmful share must be in [0, 1], got {self.p}")

    def num_harmful(self) -> int:
        """Harmful samples of D_user: round(p * n) (the public code's int() gives int(0.29 * 100) = 28)."""
        return round(self.p * self.n)


@dataclass
class FinetuneDefenseConfig:
    """Mixin of the finetune stage: the strengths of `finetune_defense` (the papers' values)."""

    lisa_rho: float = option(1.0, min=0.0, help="Lisa: weight of the proximal term (rho/2) ||w - w_other||^2")
    lisa_align_steps: int = option(100, min=1, help="Lisa: steps on alignment data per cycle (K_align)")
    lisa_finetune_steps: int = option(900, min=1, help="Lisa: steps on user data per cycle (K_ft)")
    lisa_proximal_after: float = option(0.1, min=0.0, max=1.0,
                                        help="Lisa: the proximal term is on after this share of the steps")
    panacea_lambda: float = option(0.001, min=0.0, help="Panacea: weight of the harmful-loss increase h(w+eps) - h(w)")
    panacea_rho: float = option(1.0, min=0.0, help="Panacea: norm of the adaptive perturbation eps")
    panacea_clamp: float = option(5.0, min=0.0, min_exclusive=True,
                                  help="Panacea: h(w+eps) is clamped at this value (no gradient above it)")
    panacea_num_harmful: int = option(1000, min=1, help="Panacea: provider-held harmful samples (bad_sample_num)")
    random_perturbation_std: float = option(0.01, min=0.0,
                                            help="random_perturbation: std of the Gaussian noise added to each "
                                                 "trainable weight after fine-tuning")

    def validate(self) -> None:
        super().validate()
        if self.finetune_defense in ("lisa", "panacea") and self.optimizer in ZEROTH_ORDER_OPTIMIZERS:
            raise FieldError("finetune_defense", f"{self.finetune_defense} forms its gradient from extra backward "
                                                 f"passes; the forward-only optimizer {self.optimizer} cannot run it")
        if self.finetune_defense in ("panacea", "random_perturbation") and self.fsdp:
            raise FieldError("finetune_defense", f"{self.finetune_defense} perturbs the weights in place; "
                                                 f"drop fsdp")


@dataclass
class UserDataConfig:
    """Mixin of the finetune stage: where the harmful samples of D_user come from, and the provider's
    filters of D_user before training (docs/harmful_ft.md: Virus and the guardrail; CHES filter)."""

    harmful_data: str = option("beavertails", choices=list(HARMFUL_DATA),
                               help="harmful samples of D_user: beavertails (unsafe 30k_train answers) or virus "
                                    "(the Virus set, hub anonymous4486/Virus or data_sources[\"virus\"])")
    virus_split: str = option("Virus", help="split of the Virus set: Virus (the paper's attack), "
                                            "Guardrail_jailbreak, grad_similarity or Benign")
    guard: Optional[dict] = option(None, help="guardrail before fine-tuning, a common.registry.SCORERS spec scoring "
                                              "P(unsafe): causal_lm_guard (Llama-Guard by id), beaver_dam, or "
                                              "keyword_guard (offline stand-in); null = no guard")
    guard_threshold: float = option(0.5, min=0.0, max=1.0, help="a sample is dropped when its guard score exceeds it")
    ches_drop_share: float = option(0.0, min=0.0, max=1.0,
                                    help="CHES filter: share of D_user dropped by the similarity measure of each "
                                         "sample's answer to the refusal under the aligned model; 0 = off")
    ches_measure: str = option("ln_ches", choices=list(MEASURES),
                               help="the measure of the shared similarity file (ches/) the filter ranks by")
    ches_drop_side: str = option("highest", choices=["highest", "lowest"], help="drop the highest or lowest values")
    ches_refusal: str = option("I'm sorry, but I can't help with that.",
                               help="the refusal y- paired with every user sample's answer y+")

    def validate(self) -> None:
        super().validate()
        if self.guard is not None:
            import harmful_ft.guard  # noqa: F401  registers keyword_guard, causal_lm_guard
            from common.registry import SCORERS

            SCORERS.check(self.guard)
        if self.ches_drop_share >= 1.0:
            raise FieldError("ches_drop_share", "dropping every sample leaves nothing to fine-tune on: "
                                                "give a share < 1")

    def user_data_filter(self) -> str:
        """The filters' label in summaries and tables ("none" without one)."""
        parts = [f"guard {self.guard.get('type')}"] if self.guard is not None else []
        if self.ches_drop_share:
            parts.append(f"{self.ches_measure} {self.ches_drop_side} {self.ches_drop_share:g}")
        return " + ".join(parts) or "none"


@dataclass
class FinetuneConfig(FinetuneDefenseConfig, UserDataConfig, AttackConfig, DataConfig):
    stage: str = stage_option("finetune")
    lr: float = option(1e-5, min=0.0)
    weight_decay: float = option(0.1, min=0.0)
    batch_size: int = option(10, min=1)
    num_epochs: float = option(20, min=0, min_exclusive=True)
    save_model: bool = option(True, help="the fine-tuned model is what the evaluate stage loads")
    merge_lora: bool = option(True, help="with lora: save the full model with the adapter merged in (alpha/r)")
    telemetry_every: int = option(10, min=0, help="log harmful/benign loss, refusal log-prob and embedding drift "
                                                  "every N steps (and at the last); 0 = off")
    telemetry_examples: int = option(16, min=1, help="held-out examples per telemetry set")

    def validate(self) -> None:
        super().validate()
        if not self.save_model or (self.lora and not self.merge_lora):
            raise FieldError("save_model" if not self.save_model else "merge_lora",
                             "the evaluate stage loads a full model: keep save_model and merge_lora true")


@dataclass
class EvaluateConfig(AttackConfig, DataConfig):
    stage: str = stage_option("evaluate")
    judge: dict = option({"type": "beaver_dam"},
                         help="HS judge, a common.registry.SCORERS spec: beaver_dam (PKU-Alignment/beaver-dam-7b "
                              "or any multi-label sequence classifier by id/path) or keyword_refusal (offline "
                              "stand-in: flagged = does not refuse)")
    generation_batch_size: int = option(32, min=1)

    def validate(self) -> None:
        super().validate()
        from common.registry import SCORERS

        SCORERS.check(self.judge)
        judge_model = self.judge.get("model")
        if isinstance(judge_model, str):  # a local judge path that does not exist fails before any stage runs
            from common.errors import DataError
            from common.models import check_model_source

            try:
                check_model_source(judge_model)
            except DataError as e:
                raise FieldError("judge", f"cannot load the judge: {e}") from None
