"""python -m ensembles --plan_config_path PLAN.json [--dry_run] [--force] [--only I] [--help_config]

A run's `stage` field picks its kind (ensembles/run.py: STAGES): an ensemble run (no stage), or H3Fusion's
expert / fusion stage.
"""
from common.cli import study_main
from ensembles.run import PlanConfig, run


def main(argv=None) -> None:
    study_main("ensembles", "Ensembles of aligned models: focal diversity, pruning, TOPLA-Weighted fusion; H3Fusion",
               PlanConfig, run, argv)


if __name__ == "__main__":
    main()
