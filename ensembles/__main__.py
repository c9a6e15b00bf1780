"""python -m ensembles --plan_config_path PLAN.json [--dry_run] [--force] [--only I] [--help_config]"""
from common.cli import study_main
from ensembles.config import EnsembleConfig
from ensembles.run import run

if __name__ == "__main__":
    study_main("ensembles", "Ensembles of aligned models: answers, focal diversity, pruning and TOPLA-Weighted fusion",
               EnsembleConfig, run)
