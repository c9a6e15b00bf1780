"""python -m harmful_ft --plan_config_path PLAN.json [--dry_run] [--force] [--only I]

Runs a plan of harmful fine-tuning runs; each run's `stage` field (align, finetune, evaluate; see
harmful_ft/config.py) picks its config class and run function from harmful_ft.run.STAGES.
"""
from common.cli import study_main
from harmful_ft.run import PlanConfig, run


def main(argv=None) -> None:
    study_main("harmful_ft", "Harmful fine-tuning: align, fine-tune on partly harmful user data, evaluate HS and FA",
               PlanConfig, run, argv)


if __name__ == "__main__":
    main()
