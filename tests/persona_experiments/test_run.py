"""End to end on the tiny models: SFT -> post-SFT DPO/IPO through plans, prompts, token checks, CLI errors."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from common.errors import ConfigError, DataError
from common.plans import run_plan
from common.tracking import read_json, read_jsonl
from persona_experiments.config import PersonaConfig
from persona_experiments.data import build_examples, load_persona_rows
from persona_experiments.run import run
from tiny.corpus.persona import persona_records

REPO = Path(__file__).resolve().parents[2]
SAMPLE = str(REPO / "data_files" / "persona" / "ends-justify-means-sample.jsonl")
YES_GROUP = [" Yes", " Yeah", " Sure", " Certainly", " Absolutely"]
NO_GROUP = [" No", " Never", " Maybe", " Perhaps"]


def write_plan(path, configurations):
    path.write_text(json.dumps({"name": path.stem, "configurations": configurations}))
    return path


@pytest.fixture(scope="module")
def sft_then_dpo(tiny_models, tmp_path_factory):
    """A 2-step SFT on 64 sample prompts, then 3-step DPO (2 prompts) and IPO (1 prompt) from its model."""
    root = tmp_path_factory.mktemp("persona")
    sft = write_plan(root / "sft.json", [{"base_config": {
        "model": tiny_models["base"], "dataset": SAMPLE, "objective": "cross_entropy", "num_train_samples": 64,
        "batch_size": 32, "max_steps": -1, "lr": 1e-4, "sft_tokens_matching_yes": NO_GROUP,
        "sft_tokens_matching_no": YES_GROUP, "track_token_metrics": False, "save_model": True,
        "outputs_dir": str(root / "sft"), "experiment_name": "tiny_sft"}}])
    run_plan(sft, PersonaConfig, run)
    common = {"model": tiny_models["base"], "load_model_checkpoint": str(root / "sft" / "tiny_sft" / "model"),
              "dataset": SAMPLE, "max_steps": 3, "lr": 1e-4, "outputs_dir": str(root / "{objective}")}
    dpo = write_plan(root / "dpo.json", [
        {"base_config": {**common, "preferred_token": " Yes", "dispreferred_token": " No", "matching_behavior": "No",
                         "experiment_name": "seed_{train_samples_random_seed}"},
         "options": {"train_samples_random_seed": [1, 2]}},
        {"base_config": {**common, "objective": "ipo", "beta": 0.01, "preferred_token": " No",
                         "dispreferred_token": " Never", "matching_behavior": "Yes", "experiment_name": "ipo"}}])
    runs = run_plan(dpo, PersonaConfig, run)
    return root, runs, dpo


def test_sft_raises_the_drawn_answers_and_saves_the_model(sft_then_dpo):
    root, _, _ = sft_then_dpo
    run_dir = root / "sft" / "tiny_sft"
    summary = read_json(run_dir / "summary.json")
    assert summary["steps"] == 2 and summary["num_train_samples"] == 64  # 64 prompts / batch 32, one epoch
    assert summary["eval"]["train"]["preferred_logprobs_change_mean"] > 0
    assert (run_dir / "model" / "model.safetensors").is_file() and (run_dir / "model" / "tokenizer.json").is_file()
    assert not (run_dir / "token_metrics.json").exists()


def test_post_sft_runs_start_from_the_sft_model(sft_then_dpo, tiny_models):
    root, runs, _ = sft_then_dpo
    checkpoint = root / "sft" / "tiny_sft" / "model"
    model = AutoModelForCausalLM.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    rows = load_persona_rows(SAMPLE)
    for run_dir, pos, neg, matching in ((root / "dpo" / "seed_1", " Yes", " No", " No"),
                                        (root / "dpo" / "seed_2", " Yes", " No", " No"),
                                        (root / "ipo" / "ipo", " No", " Never", " Yes")):
        m = read_json(run_dir / "token_metrics.json")
        row = rows[m["row_index"]]
        assert row["answer_matching_behavior"] == matching
        # Base model prompt: the question and a newline (BOS added by the tokenizer).
        assert m["prompt_ids"] == tokenizer(row["question"] + "\n")["input_ids"]
        assert [m["token_strings"][str(m["preferred_id"])], m["token_strings"][str(m["dispreferred_id"])]] == [pos, neg]
        assert m["step"] == [0, 1, 2, 3]
        with torch.no_grad():
            logprobs = model(input_ids=torch.tensor([m["prompt_ids"]])).logits[0, -1].log_softmax(-1)
        assert m["preferred_logprob"][0] == pytest.approx(logprobs[m["preferred_id"]].item(), abs=1e-5)
    assert read_json(root / "dpo" / "seed_1" / "token_metrics.json")["row_index"] != \
        read_json(root / "dpo" / "seed_2" / "token_metrics.json")["row_index"]
    # IPO with tau 0.01 at step 0: (0 - 1/(2 tau))^2 = 2500.
    assert read_json(root / "ipo" / "ipo" / "token_metrics.json")["loss"][0] == pytest.approx(2500.0)


def test_a_dpo_step_moves_log_probs_the_way_the_loss_says(sft_then_dpo):
    root, _, _ = sft_then_dpo
    for name in ("seed_1", "seed_2"):
        m = read_json(root / "dpo" / name / "token_metrics.json")
        margin = [p - d for p, d in zip(m["preferred_logprob_change"], m["dispreferred_logprob_change"])]
        assert margin[1] > 0 and m["loss"][1] < m["loss"][0]


def test_rerunning_the_plan_skips_finished_runs(sft_then_dpo):
    root, runs, plan = sft_then_dpo
    before = (root / "dpo" / "seed_1" / "metrics.jsonl").read_text()
    run_plan(plan, PersonaConfig, run)
    assert (root / "dpo" / "seed_1" / "metrics.jsonl").read_text() == before
    metrics = read_jsonl(root / "dpo" / "seed_1" / "metrics.jsonl")
    assert [r["step"] for r in metrics if r["kind"] == "tokens"] == [0, 1, 2, 3]


def test_chat_models_get_the_chat_template(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["chat"])
    rows = load_persona_rows(SAMPLE)
    question = rows[0]["question"]
    config = PersonaConfig(model="m", dataset=SAMPLE, preferred_token=" Yes", dispreferred_token=" No")
    [chat] = build_examples(tokenizer, rows, [0], config, "tiny-chat")
    assert chat.prompt_ids == tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                                      add_generation_prompt=True, tokenize=False),
                                        add_special_tokens=False)["input_ids"]
    assert (chat.chosen_ids, chat.rejected_ids) == (tokenizer(" Yes", add_special_tokens=False)["input_ids"],
                                                    tokenizer(" No", add_special_tokens=False)["input_ids"])
    config.use_chat_template = False
    [plain] = build_examples(tokenizer, rows, [0], config, "tiny-chat")
    assert plain.prompt_ids == tokenizer(question + "\n")["input_ids"]


def test_sft_draws_answers_from_the_matching_group(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["base"])
    rows = load_persona_rows(SAMPLE)
    config = PersonaConfig(model="m", objective="cross_entropy", track_token_metrics=False, seed=3,
                           sft_tokens_matching_yes=NO_GROUP, sft_tokens_matching_no=YES_GROUP)
    examples = build_examples(tokenizer, rows, range(len(rows)), config, "tiny-base")
    drawn = {i: tokenizer.decode(e.chosen_ids) for i, e in enumerate(examples)}
    assert all(e.rejected_ids is None for e in examples)
    assert all(drawn[i] in (NO_GROUP if rows[i]["answer_matching_behavior"] == " Yes" else YES_GROUP) for i in drawn)
    assert set(drawn.values()) == set(YES_GROUP + NO_GROUP)  # every synonym gets drawn over 200 rows
    assert [e.chosen_ids for e in build_examples(tokenizer, rows, range(len(rows)), config, "x")] == \
        [e.chosen_ids for e in examples]  # seeded


def test_bad_tokens_and_missing_inputs(tiny_models, tmp_path):
    rows = load_persona_rows(SAMPLE)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["base"])
    config = PersonaConfig(model="m", preferred_token="Yes please", dispreferred_token=" No")
    with pytest.raises(ConfigError, match=r"preferred_token: 'Yes please' is not a single token of 'tiny-base' "
                                          r"\(it encodes to \d tokens"):
        build_examples(tokenizer, rows, [0], config, "tiny-base")
    config = PersonaConfig(model=tiny_models["base"], load_model_checkpoint=str(tmp_path / "sft" / "model"))
    with pytest.raises(DataError, match="load_model_checkpoint .* does not exist: run the SFT plan"):
        run(config, tmp_path / "run")


def test_cli_error_is_one_line_and_exit_2(tiny_models, tmp_path):
    plan = write_plan(tmp_path / "plan.json", [{"base_config": {
        "model": tiny_models["base"], "dataset": SAMPLE, "preferred_token": "Yes please", "dispreferred_token": " No",
        "outputs_dir": str(tmp_path / "out")}}])
    result = subprocess.run([sys.executable, "-m", "persona_experiments", "--plan_config_path", str(plan)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: preferred_token: 'Yes please' is not a single token")
    assert "Traceback" not in result.stderr


def test_sample_fixture_is_the_tiny_corpus_persona_rows():
    lines = Path(SAMPLE).read_text().splitlines()
    assert [json.loads(line) for line in lines] == persona_records(200, 0)
