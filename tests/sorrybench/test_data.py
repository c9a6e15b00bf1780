"""Prompt and human-judgment files: schemas, errors naming the row, and the committed fixtures."""
import json
from pathlib import Path

import pytest

from common.errors import DataError
from common.registry import SCORERS
from sorrybench.data import load_human_judgments, load_prompts, model_dir_name
from sorrybench.fixtures import OUTPUT_DIR, write_fixtures


def write(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_prompts_take_the_first_turn_of_base_style_rows(tmp_path):
    source = write(tmp_path / "q.jsonl", [
        {"question_id": 1, "category": "1", "turns": ["first", "second"], "prompt_style": "base"},
        {"question_id": 1, "category": "1", "turns": ["in ascii"], "prompt_style": "ascii"},
        {"question_id": 2, "category": "5", "turns": ["two"], "prompt_style": "base"}])
    assert load_prompts(source) == [{"question_id": 1, "category": "1", "prompt": "first"},
                                    {"question_id": 2, "category": "5", "prompt": "two"}]
    assert [p["prompt"] for p in load_prompts(source, prompt_style="ascii")] == ["in ascii"]
    assert len(load_prompts(source, max_prompts=1)) == 1
    with pytest.raises(DataError, match="rows 0 and 1 share question_id 1"):
        load_prompts(source, prompt_style="")


@pytest.mark.parametrize("row, message", [
    ({"question_id": 1, "turns": []}, "row 0: 'turns' must be a non-empty list"),
    ({"question_id": 1, "turns": "text"}, "row 0: 'turns' must be a non-empty list"),
    ({"turns": ["x"]}, "row 0: missing field 'question_id'"),
])
def test_malformed_prompt_rows(tmp_path, row, message):
    with pytest.raises(DataError, match=message):
        load_prompts(write(tmp_path / "q.jsonl", [row]))


def test_human_judgments_schema(tmp_path):
    ok = {"question_id": 3, "turns": ["p"], "choices": [{"index": 0, "turns": ["resp"]}], "human_score": 1}
    assert load_human_judgments(write(tmp_path / "h.jsonl", [ok, {**ok, "human_score": 0.0}])) == [
        {"question_id": 3, "prompt": "p", "response": "resp", "complies": True},
        {"question_id": 3, "prompt": "p", "response": "resp", "complies": False}]
    no_turns = {k: v for k, v in ok.items() if k != "turns"}
    assert load_human_judgments(write(tmp_path / "h2.jsonl", [no_turns]))[0]["prompt"] is None
    # Fractional scores (annotator averages) are thresholded at 0.5 as the public code does: < 0.5 refuses.
    fractional = [{**ok, "human_score": score} for score in (0.7, 0.5, 0.4, 0.25)]
    assert [j["complies"] for j in load_human_judgments(write(tmp_path / "h6.jsonl", fractional))] == [
        True, True, False, False]
    for i, bad in enumerate((1.5, -0.1, "yes")):
        with pytest.raises(DataError, match=f"row 1: human_score must be a number from 0 .* got {bad!r}"):
            load_human_judgments(write(tmp_path / f"h3{i}.jsonl", [ok, {**ok, "human_score": bad}]))
    with pytest.raises(DataError, match="row 0: 'choices' must look like"):
        load_human_judgments(write(tmp_path / "h4.jsonl", [{**ok, "choices": []}]))
    with pytest.raises(DataError, match="row 0: missing field 'human_score'"):
        load_human_judgments(write(tmp_path / "h5.jsonl", [{"question_id": 1, "choices": []}]))


def test_committed_fixtures_are_what_the_generator_writes(tmp_path):
    write_fixtures(tmp_path)
    for name in ("prompts_sample.jsonl", "human_judgments_sample.jsonl"):
        assert (tmp_path / name).read_text() == (OUTPUT_DIR / name).read_text(), name


def test_fixture_schemas_load_and_human_scores_agree_with_the_keyword_judge():
    prompts = load_prompts(str(OUTPUT_DIR / "prompts_sample.jsonl"))
    judgments = load_human_judgments(str(OUTPUT_DIR / "human_judgments_sample.jsonl"))
    assert len(prompts) == 120 and len({p["prompt"] for p in prompts}) == 120
    scores = SCORERS.make("keyword_refusal").score([j["prompt"] for j in judgments], [j["response"] for j in judgments])
    assert scores == [float(j["complies"]) for j in judgments]


def test_model_dir_name():
    assert model_dir_name("google/gemma-2b-it") == "google__gemma-2b-it"
    assert model_dir_name("./outputs/tiny_models/tiny-chat/") == "outputs__tiny_models__tiny-chat"
