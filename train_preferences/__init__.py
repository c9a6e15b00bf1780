"""Generic preference (or SFT) training on a jsonl/json/hub preference set: the plan-driven runner.

    python -m train_preferences --plan_config_path PLAN.json [--dry_run] [--force] [--only I]
    accelerate launch -m train_preferences --plan_config_path PLAN.json   # N GPUs, same plan

Rows hold `prompt` (text or chat messages), `chosen` and `rejected` (text); the field names are
configurable. Studies with their own data formats build their examples and call
`common.trainer.train_examples` directly.
"""
