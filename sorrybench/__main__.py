"""python -m sorrybench --plan_config_path PLAN.json [--dry_run] [--force] [--only I] [--help_config]"""
from common.cli import study_main
from sorrybench.config import SorryBenchConfig
from sorrybench.run import run

if __name__ == "__main__":
    study_main("sorrybench", "SORRY-Bench unintentional unalignment: DPO runs with refusal rates before and after",
               SorryBenchConfig, run)
