"""`python -m train_preferences --plan_config_path PLAN.json`: generic preference / SFT training."""
from common.cli import study_main
from train_preferences.config import PreferenceRunConfig
from train_preferences.run import run

if __name__ == "__main__":
    study_main("train_preferences", "Generic preference / SFT training on a preference set", PreferenceRunConfig, run)
