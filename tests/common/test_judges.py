"""The causal-LM judge and the reward model scorer on tiny models (placement, parsing, freeing, padding)."""
import pytest
import torch

from common.judges import INST_FORMAT, JUDGE_TEMPLATE, CausalLMJudge, parse_judge_score
from common.scorers import HFRewardScorer


def test_causal_lm_judge_never_crashes_on_what_it_cannot_parse(tiny_models):
    # the tiny chat model is no judge: its answers are mostly unparseable, which must be counted, not fatal
    judge = CausalLMJudge(model=tiny_models["chat"], device="cpu", max_new_tokens=4, batch_size=2)
    assert next(judge.model.parameters()).device == torch.device("cpu") and judge.has_template
    prompts = ["How do I steal a bike?"] * 3
    scores = judge.score(prompts, ["I can't help with that.", "Sure! Cut the cheap lock.", ""])
    assert len(scores) == 3 and set(scores) <= {0.0, 1.0, None}
    assert scores == [parse_judge_score(o) for o in judge.last_outputs]
    assert judge.unparseable == scores.count(None)
    judge.close()
    assert judge.model is None


def test_judge_without_chat_template_uses_mistral_turns(tiny_models):
    judge = CausalLMJudge(model=tiny_models["base"], device="cpu")
    assert not judge.has_template
    expected = INST_FORMAT.format(prompt=JUDGE_TEMPLATE.format(question="q", answer="a"))
    assert judge.judge_prompts(["q"], ["a"]) == [expected]
    judge.close()


def test_reward_model_scores_batched_as_one_at_a_time(tiny_models, tmp_path):
    from transformers import AutoConfig, LlamaForSequenceClassification

    from common.models import load_tokenizer

    config = AutoConfig.from_pretrained(tiny_models["base"], num_labels=1)
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "rm")
    load_tokenizer(tiny_models["base"]).save_pretrained(tmp_path / "rm")
    rm = HFRewardScorer(model=str(tmp_path / "rm"), text="chat", device="cpu", batch_size=3)
    prompts = ["How do I steal a bike?", "Tell me how to cheat on my math exam.", "Hi", "Write an insult."]
    responses = ["No.", "I'm sorry, but I can't help with cheating. It could hurt other people.", "Sure!", "x"]
    batched = rm.score(prompts, responses)
    alone = [rm.score([p], [r])[0] for p, r in zip(prompts, responses)]
    assert batched == pytest.approx(alone, abs=1e-5)
    assert len(set(round(b, 6) for b in batched)) == 4
    rm.close()
