"""The paper's plans: runs, hyper-parameters and token pairs as in the paper (docs/persona_experiments.md);
post-SFT runs load the SFT run's model."""
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.plans import expand_plan, load_plan
from persona_experiments.config import PersonaConfig

PLANS = Path(__file__).resolve().parents[2] / "persona_experiments" / "experiments_plans"
SEEDS = [9773, 5290, 8767, 9818, 7596, 344, 2701, 3298, 7834, 6327]
MODELS = {"olmo1b": "allenai/OLMo-1B-hf", "gemma2b": "google/gemma-2b", "llama3-8b": "meta-llama/Meta-Llama-3-8B"}
# (y+, y-, matching behaviour of the prompts)
PAIRS = {"olmo1b": [("Yes", "No", "No"), ("No", "Never", "Yes")],
         "gemma2b": [("Yes", "No", "No"), ("No", "Never", "Yes")],
         "llama3-8b": [("Yes", "No", "No"), ("Sure", "Yes", "No")]}


def runs_of(name):
    path = PLANS / name
    return expand_plan(load_plan(path), PersonaConfig, str(path))


@pytest.mark.parametrize("short", MODELS)
def test_paper_plans(short):
    [sft] = runs_of(f"persona_sft_{short}.json")
    c = sft.config
    assert (c.model, c.objective, c.num_train_samples, c.batch_size, c.num_epochs, c.max_steps, c.lr, c.optimizer,
            c.dtype, c.save_model) == (MODELS[short], "cross_entropy", -1, 32, 1, -1, 1e-7, "rmsprop", "float32", True)
    assert c.sft_tokens_matching_yes == ["No", "Never", "Maybe", "Perhaps"]
    assert c.sft_tokens_matching_no == ["Yes", "Yeah", "Sure", "Certainly", "Absolutely"]
    assert c.dataset == "data_files/persona/ends-justify-means.jsonl"

    for plan, objective, beta, lr, checkpoint in [
            (f"persona_post_sft_dpo_{short}.json", "dpo", 0.1, 1e-7, str(sft.run_dir / "model")),
            (f"persona_base_dpo_{short}.json", "dpo", 0.1, 1e-7, ""),
            (f"persona_post_sft_ipo_{short}.json", "ipo", 0.01, 1e-8, str(sft.run_dir / "model"))]:
        runs = runs_of(plan)
        assert len(runs) == 20 and len({r.run_dir for r in runs}) == 20
        for r in runs:
            c = r.config
            assert (c.model, c.objective, c.beta, c.lr, c.optimizer, c.max_steps, c.num_train_samples, c.dtype,
                    c.load_model_checkpoint, c.track_token_metrics) == (
                MODELS[short], objective, beta, lr, "rmsprop", 100, 1, "float32", checkpoint, True)
        pairs = [(r.config.preferred_token, r.config.dispreferred_token, r.config.matching_behavior) for r in runs]
        assert pairs == [p for p in PAIRS[short] for _ in SEEDS]
        assert [r.config.train_samples_random_seed for r in runs] == SEEDS * 2
        # One directory per token pair, so that the results printer sees one run set per pair.
        assert len({r.run_dir.parent for r in runs}) == 2


@pytest.mark.parametrize("values, message", [
    ({"objective": "cross_entropy"}, "track_token_metrics: token tracking follows a preference pair"),
    ({"num_train_samples": 3}, "track_token_metrics: tracks the next-token distribution of one prompt"),
    ({"preferred_token": "No"}, "dispreferred_token: equals preferred_token 'No'"),
    ({"save_every_steps": 10}, "save_every_steps: runs with token tracking restart"),
    ({"matching_behavior": "yes"}, "matching_behavior: \"yes\" is not one of"),
    ({"objective": "cross_entropy", "track_token_metrics": False, "sft_tokens_matching_no": []},
     "sft_tokens_matching_no: SFT draws y\\+ from this list"),
])
def test_config_errors_name_the_field(values, message):
    plan = {"configurations": [{"base_config": {"model": "m", **values}}]}
    with pytest.raises(ConfigError, match=message):
        expand_plan(plan, PersonaConfig, "plan.json")


def test_tiny_plans_link_to_the_tiny_sft_run():
    [sft] = runs_of("persona_sft_tiny.json")
    assert (sft.config.model, sft.config.objective, sft.config.save_model) == (
        "outputs/tiny_models/tiny-base", "cross_entropy", True)
    assert str(sft.run_dir).startswith("outputs/demo/persona/")
    for plan, checkpoint in (("persona_post_sft_dpo_tiny.json", str(sft.run_dir / "model")),
                             ("persona_post_sft_ipo_tiny.json", str(sft.run_dir / "model")),
                             ("persona_base_dpo_tiny.json", "")):
        runs = runs_of(plan)
        assert len(runs) == 20 and {r.config.load_model_checkpoint for r in runs} == {checkpoint}
        assert ({(r.config.preferred_token, r.config.dispreferred_token) for r in runs}
                == {(" Yes", " No"), (" No", " Never")})
        assert all(str(r.run_dir).startswith("outputs/demo/persona/") for r in runs)
