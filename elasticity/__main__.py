"""python -m elasticity --plan_config_path PLAN.json [--dry_run] [--force] [--only I]

Runs a plan of elasticity runs; each run's `experiment` field names its stage, `classifier`,
`resistance` or `rebound` (see elasticity/config.py), which picks the run's config class and run
function from elasticity.run.STAGES. `accelerate launch -m elasticity ...` runs the same plan on N GPUs.
"""
from common.cli import study_main
from elasticity.run import PlanConfig, run


def main(argv=None) -> None:
    study_main("elasticity", "Elasticity of language models: resistance and rebound (Ji et al.)",
               PlanConfig, run, argv)


if __name__ == "__main__":
    main()
