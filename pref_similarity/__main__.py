"""python -m pref_similarity --plan_config_path PLAN.json: DPO (or any core loss) on similarity quantiles."""
from common.cli import study_main
from pref_similarity.config import QuantileRunConfig
from pref_similarity.run import run


def main(argv=None) -> None:
    study_main("pref_similarity", "Train on the examples around a quantile of a preference-similarity measure "
               "(Section 5, Figure 2)", QuantileRunConfig, run, argv)


if __name__ == "__main__":
    main()
