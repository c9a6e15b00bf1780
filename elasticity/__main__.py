"""python -m elasticity --plan_config_path PLAN.json [--dry_run] [--force] [--only I]

Runs a plan of elasticity runs; each run's `experiment` field says what it does: `classifier`,
`resistance` or `rebound` (see elasticity/config.py). `accelerate launch -m elasticity ...` runs the
same plan on N GPUs.
"""
from common.cli import study_main
from elasticity.config import ElasticityConfig
from elasticity.run import run


def main(argv=None) -> None:
    study_main("elasticity", "Elasticity of language models: resistance and rebound (Ji et al.)",
               ElasticityConfig, run, argv)


if __name__ == "__main__":
    main()
