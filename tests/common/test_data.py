"""Loading records, required fields, prompt/completion boundaries (chat template or not), batch masks."""
import json

import pytest

from common.data import (
    PreferenceExample,
    collate_pairs,
    collate_sequences,
    encode_prompt,
    load_records,
    require_fields,
    tokenize_preference,
)
from common.errors import DataError


def test_jsonl_and_json_records(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"x": 1}\n\n{"x": 2}\n')
    (tmp_path / "b.json").write_text(json.dumps([{"x": 3}]))
    (tmp_path / "train.jsonl").write_text('{"x": 4}\n')
    assert load_records(str(tmp_path / "a.jsonl")) == [{"x": 1}, {"x": 2}]
    assert load_records(str(tmp_path / "b.json")) == [{"x": 3}]
    assert load_records(str(tmp_path), split="train") == [{"x": 4}]


@pytest.mark.parametrize("content,message", [
    ('{"x": 1}\n{"x": \n', "bad.jsonl: line 2: invalid JSON"),
    ('{"x": 1}\n[1, 2]\n', "bad.jsonl: row 1: expected a JSON object, got list"),
])
def test_malformed_files_name_the_line(tmp_path, content, message):
    (tmp_path / "bad.jsonl").write_text(content)
    with pytest.raises(DataError, match=message):
        load_records(str(tmp_path / "bad.jsonl"))


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="missing.jsonl: file not found"):
        load_records(str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match="file or directory not found"):
        load_records("./no/such/dir")


def test_require_fields_names_the_row():
    rows = [{"prompt": "a", "chosen": "b"}, {"prompt": "a", "chosen": ""}]
    with pytest.raises(DataError,
                       match=r"prefs.jsonl: row 1: field 'chosen' is (\"\"|null); give it a value"):
        require_fields(rows, ["prompt", "chosen"], "prefs.jsonl")
    with pytest.raises(DataError, match=r"row 0: missing field 'rejected' \(fields present: chosen, prompt\)"):
        require_fields(rows, ["rejected"], "prefs.jsonl")


@pytest.mark.parametrize("side", ["right", "left"])
def test_collate_masks(side):
    batch = collate_sequences([[5, 6], [7]], [[8], [9, 10, 11]], pad_id=0, padding_side=side)
    if side == "right":
        assert batch.input_ids.tolist() == [[5, 6, 8, 0], [7, 9, 10, 11]]
        assert batch.completion_mask.tolist() == [[0, 0, 1, 0], [0, 1, 1, 1]]
    else:
        assert batch.input_ids.tolist() == [[0, 5, 6, 8], [7, 9, 10, 11]]
        assert batch.completion_mask.tolist() == [[0, 0, 0, 1], [0, 1, 1, 1]]
    assert batch.attention_mask.sum(-1).tolist() == [3, 4]
    assert batch.completion_lengths.tolist() == [1, 3]


def test_collate_pairs_puts_chosen_then_rejected():
    batch = collate_pairs([PreferenceExample([1], [2], [3, 4]), PreferenceExample([5], [6], [7])], pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 0], [5, 6, 0], [1, 3, 4], [5, 7, 0]]


def test_chat_template_boundary(tiny_models):
    from common.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_models["chat"])
    example = tokenize_preference(tokenizer, "Name a fruit.", "An apple.", "A chair.")
    full = tokenizer.apply_chat_template([{"role": "user", "content": "Name a fruit."},
                                          {"role": "assistant", "content": "An apple."}], tokenize=True,
                                         return_dict=False)
    # The prompt is the generation-prompt rendering; the completion is the rest of the conversation.
    assert example.prompt_ids + example.chosen_ids == list(full)
    assert example.prompt_ids == encode_prompt(tokenizer, [{"role": "user", "content": "Name a fruit."}])
    assert tokenizer.decode(example.chosen_ids, skip_special_tokens=True).strip() == "An apple."
    assert example.prompt_ids + example.rejected_ids != list(full)


def test_plain_prompt_boundary(tiny_models):
    from common.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_models["base"])
    example = tokenize_preference(tokenizer, "Question: Name a fruit.\nAnswer:\n", "An apple.", "A chair.",
                                  use_chat_template=False)
    assert example.prompt_ids == tokenizer("Question: Name a fruit.\nAnswer:\n")["input_ids"]
    assert example.chosen_ids[-1] == tokenizer.eos_token_id
    assert example.chosen_ids[:-1] == tokenizer("An apple.", add_special_tokens=False)["input_ids"]
    single = tokenize_preference(tokenizer, "Q", " Yes", " No", use_chat_template=False, add_eos=False)
    assert len(single.chosen_ids) == 1 and len(single.rejected_ids) == 1
