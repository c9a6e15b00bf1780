"""One elasticity run: its `experiment` field says which (see elasticity/config.py)."""
from pathlib import Path

from elasticity.config import ElasticityConfig


def run(config: ElasticityConfig, run_dir: Path) -> dict:
    if config.experiment == "classifier":
        from elasticity.classifier import run_classifier

        return run_classifier(config, run_dir)
    if config.experiment == "resistance":
        from elasticity.resistance import run_resistance

        return run_resistance(config, run_dir)
    from elasticity.rebound import run_rebound

    return run_rebound(config, run_dir)
