"""The shipped plans expand, validate, and carry the paper's hyper-parameters."""
from pathlib import Path

import pytest

from common.plans import expand_plan, load_plan
from sorrybench.config import SorryBenchConfig
from sorrybench.run import setting_name

PLANS = Path(__file__).resolve().parents[2] / "sorrybench" / "experiments_plans"


@pytest.mark.parametrize("name", ["sorrybench_gemma2b_it", "sorrybench_llama3_8b_instruct"])
def test_paper_plans(name):
    runs = expand_plan(load_plan(PLANS / f"{name}.json"), SorryBenchConfig, name)
    by_setting = {setting_name(r.config): r.config for r in runs}
    assert sorted(by_setting) == ["dpo", "dpo+sft", "gold", "ln_ches_lowest_19"]
    for setting, c in by_setting.items():
        assert (c.objective, c.beta, c.batch_size, c.num_epochs, c.optimizer) == ("dpo", 0.1, 32, 1, "rmsprop")
        assert c.lr == (1e-6 if setting == "gold" else 5e-6)
        assert c.judge == {"type": "sorrybench_judge"} and c.refusal_temperature == 0.7
        assert c.refusal_max_new_tokens == 512 and c.dtype == "float32"
    assert by_setting["dpo+sft"].sft_coeff > 0


def test_tiny_plan():
    runs = expand_plan(load_plan(PLANS / "sorrybench_tiny.json"), SorryBenchConfig, "tiny")
    assert len(runs) == 12 and {r.config.judge for r in runs} == {"keyword_refusal"}
    assert all(Path(r.config.model).parts[:2] == ("outputs", "tiny_models") for r in runs)
