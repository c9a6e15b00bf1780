"""The harmful fine-tuning study's run configs: one dataclass per stage, picked by a run's `stage` field.

- `align` (`AlignConfig`): SFT (LoRA or full) of a base model on safety data (BeaverTails `is_safe`
  answers, Vaccine; or the RepNoise refusals, Booster); the LoRA merged (alpha/r respected) and saved.
- `finetune` (`FinetuneConfig`): the user's fine-tuning of the aligned model on D_user = round(p*n)
  harmful + n - round(p*n) benign samples of `task`; a new LoRA (merged and saved) or full.
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

from common.config import FieldError, TrainConfig, did_you_mean, option

TASKS = ("sst2", "agnews", "gsm8k", "alpaca")
SAFETY_DATA = ("beavertails_safe", "repnoise_refusal")
# Evaluation protocols: (harmful prompts, task test items, max new tokens); decoding is greedy.
PROTOCOLS = {"vaccine": (500, 500, 128), "booster": (1000, 1000, 512)}


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
    optimizer: str = option("adamw", choices=["rmsprop", "adam", "adamw", "sgd", "mezo", "tezo"],
                            help="mezo / tezo in the finetune stage: the forward-only (zeroth-order) attacker")
    defense: str = option("sft", help="alignment-stage defense (harmful_ft.defenses.DEFENSES): sft, vaccine, "
                                      "random_vaccine or booster; later stages name it for the model path")

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
class FinetuneConfig(AttackConfig, DataConfig):
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
        import harmful_ft.judges  # noqa: F401  registers beaver_dam
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
