"""Collection: choice log-probs against a direct full-logits computation, the set's checks, run dirs."""
import json

import numpy as np
import pytest
import torch

from common.errors import DataError
from common.models import load_for_inference
from ensembles.collect import MultipleChoiceSet, choice_logprobs, perturb, read_multiple_choice, resolve_model
from ensembles.fixtures import OUTPUT_DIR, facts_mc

SET = OUTPUT_DIR / "facts_mc.jsonl"


def test_the_fixture_file_is_what_the_writer_writes():
    rows = [json.loads(line) for line in SET.read_text().splitlines()]
    assert rows == facts_mc()
    assert all(len(r["choices"]) == 3 and 0 <= r["answer"] < 3 for r in rows)
    assert len({r["answer"] for r in rows}) == 3  # the right choice is not always in one place


def direct_scores(model, tokenizer, question, choices, mean):
    scores = []
    for choice in choices:
        prompt = tokenizer(question)["input_ids"]
        completion = tokenizer(" " + choice, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + completion])
        logps = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
        token_logps = [logps[len(prompt) - 1 + t, c].item() for t, c in enumerate(completion)]
        scores.append(np.mean(token_logps) if mean else np.sum(token_logps))
    scores = np.array(scores)
    return scores - np.log(np.exp(scores).sum())


@pytest.mark.parametrize("score", ["sum", "mean"])
def test_choice_logprobs_match_a_direct_computation(tiny_models, score):
    model, tokenizer = load_for_inference(tiny_models["base"], device="cpu")
    data = read_multiple_choice(str(SET), max_samples=5)
    got = choice_logprobs(model, tokenizer, data, batch_size=4, option_score=score, use_chat_template=False)
    expected = [direct_scores(model, tokenizer, q, c, score == "mean") for q, c in zip(data.questions, data.choices)]
    np.testing.assert_allclose(got, np.array(expected), atol=1e-4)
    assert (got.argmax(-1) == data.labels).mean() >= 0.8  # the base model knows most of these facts


def test_perturbation_is_seeded_and_scaled(tiny_models):
    a, _ = load_for_inference(tiny_models["base"], device="cpu")
    b, _ = load_for_inference(tiny_models["base"], device="cpu")
    before = a.lm_head.weight.detach().clone()
    perturb(a, 0.5, seed=3)
    perturb(b, 0.5, seed=3)
    assert torch.equal(a.lm_head.weight, b.lm_head.weight)
    ratio = ((a.lm_head.weight.detach() - before).std() / before.std()).item()
    assert ratio == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize("row, message", [
    ({"question": "q", "choices": ["a", "b", "c", "d"], "answer": 0}, "4 choices where row 1 has 3"),
    ({"question": "q", "choices": ["a", "b", "c"], "answer": 3}, "must be the index"),
    ({"question": "q", "answer": 0}, "needs \"question\""),
])
def test_bad_multiple_choice_rows_name_the_line(tmp_path, row, message):
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps({"question": "q", "choices": ["a", "b", "c"], "answer": 1}) + "\n" + json.dumps(row))
    with pytest.raises(DataError, match=f"set.jsonl:2: .*{message}"):
        read_multiple_choice(str(path))


def test_a_run_directory_stands_for_its_saved_model(tmp_path):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "summary.json").write_text("{}")
    assert resolve_model(str(run)) == str(run / "model")
    (run / "model").rmdir()
    with pytest.raises(DataError, match="without a saved model/"):
        resolve_model(str(run))
    assert resolve_model("org/hub-model") == "org/hub-model"


def test_multiple_choice_set_width():
    assert MultipleChoiceSet(["q"], [["a", "b", "c"]], np.array([0])).num_classes == 3


def test_a_missing_member_fails_before_any_is_scored(tmp_path, tiny_models):
    from ensembles.collect import collect_pool
    from ensembles.config import EnsembleConfig

    config = EnsembleConfig(pool=[tiny_models["base"], str(tmp_path / "no" / "such" / "model")],
                            dataset_path=str(SET))
    with pytest.raises(DataError, match="no such directory"):
        collect_pool(config, tmp_path / "run", read_multiple_choice(str(SET), max_samples=3))
    assert not list((tmp_path / "run" / "members").glob("*.npy"))
