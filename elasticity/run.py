"""One elasticity run: its `experiment` field names its stage, which picks the run's config class and
run function from STAGES (see elasticity/config.py for each stage's fields)."""
from pathlib import Path

from elasticity.classifier import run_classifier
from elasticity.config import ClassifierConfig, ElasticityConfig, ReboundConfig, ResistanceConfig
from elasticity.rebound import run_rebound
from elasticity.resistance import run_resistance

STAGES = {  # stage name (the `experiment` field) -> (config class, run function)
    "classifier": (ClassifierConfig, run_classifier),
    "resistance": (ResistanceConfig, run_resistance),
    "rebound": (ReboundConfig, run_rebound),
}


class PlanConfig(ElasticityConfig):
    """What plans are expanded with: each run is built as its stage's config class (see
    common.config.run_config_class), so a field that the stage does not use is an error."""

    @classmethod
    def run_classes(cls) -> tuple[str, dict[str, type]]:
        return "experiment", {stage: config_cls for stage, (config_cls, _) in STAGES.items()}


def run(config: ElasticityConfig, run_dir: Path) -> dict:
    return STAGES[config.experiment][1](config, run_dir)
