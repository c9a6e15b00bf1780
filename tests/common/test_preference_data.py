"""Truncation by hand, the multi-turn prompt against the chat template, the plain prompt formats."""
import pytest

from common.data import PreferenceExample
from common.errors import DataError
from common.preference_data import Tokenization, normalize_rows, tokenize_pairs


def test_a_600_token_pair_is_kept_and_truncated():
    prompt, chosen, rejected = list(range(100)), list(range(1000, 1500)), list(range(2000, 2300))  # 600 tokens
    start = Tokenization(max_length=512)
    assert start.truncate(prompt, [chosen, rejected]) == (prompt, [chosen[:412], rejected])  # x+y cut to 512
    end = Tokenization(max_length=512, truncation_mode="keep_end")
    assert end.truncate(prompt, [chosen, rejected]) == (prompt[88:], [chosen, rejected])  # 12 + 500 tokens
    capped = Tokenization(max_length=512, max_prompt_length=40)  # prompt first cut to 40, then y to 512 - 40
    assert capped.truncate(prompt, [chosen, rejected]) == (prompt[:40], [chosen[:472], rejected])
    capped_end = Tokenization(max_length=512, max_prompt_length=40, truncation_mode="keep_end")
    assert capped_end.truncate(prompt, [chosen, rejected]) == (prompt[88:], [chosen, rejected])
    assert Tokenization(max_length=50).truncate(prompt, [chosen])[1] == [[]]  # prompt fills the budget


def test_only_an_empty_response_drops_the_example(tiny_models):
    from common.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_models["base"])
    rows = [{"prompt": "word " * 600, "chosen": "yes " * 300, "rejected": "no"},
            {"prompt": "short", "chosen": "yes " * 600, "rejected": "no " * 600}]
    examples, counts = tokenize_pairs(rows, tokenizer, Tokenization(max_length=512), source="t")
    assert counts.as_dict() == {"examples": 2, "truncated": 1, "dropped_empty_response": 1}
    (kept,) = examples
    assert kept.index == 1 and len(kept.prompt_ids) + len(kept.chosen_ids) == 512
    yes_ids = tokenizer("yes " * 600, add_special_tokens=False)["input_ids"]
    assert kept.chosen_ids == yes_ids[:512 - len(kept.prompt_ids)]


def test_multi_turn_prompt_keeps_every_earlier_turn(tiny_models):
    from common.models import load_tokenizer

    tokenizer = load_tokenizer(tiny_models["chat"])
    turns = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."},
             {"role": "user", "content": "Capital of Spain?"}]
    row = {"prompt": "Hi.", "chosen": turns + [{"role": "assistant", "content": "Madrid."}],
           "rejected": turns + [{"role": "assistant", "content": "Lima."}]}
    rows, resolved = normalize_rows([row], "t")
    (e,), _ = tokenize_pairs(rows, tokenizer, Tokenization(), source="t")
    expected_prompt = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=True, return_dict=False)
    full = tokenizer.apply_chat_template(row["chosen"], tokenize=True, return_dict=False)
    assert resolved == "conversational" and e.prompt_ids == list(expected_prompt)
    assert e.prompt_ids + e.chosen_ids == list(full)


def test_prompter_assistant_format(tiny_models):
    from common.data import ASSISTANT, PROMPTER, encode_prompt
    from common.models import add_prompt_format_tokens, load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(tiny_models["base"])
    with pytest.raises(DataError, match="the tokenizer has no <\\|prompter\\|> token"):
        encode_prompt(tokenizer, "Hi", prompt_format="prompter_assistant")
    rows_before = model.get_input_embeddings().num_embeddings
    add_prompt_format_tokens(model, tokenizer, "prompter_assistant")
    ids = encode_prompt(tokenizer, "Hi", prompt_format="prompter_assistant")
    prompter, assistant = tokenizer.convert_tokens_to_ids([PROMPTER, ASSISTANT])
    assert ids[-1] == assistant and prompter in ids
    assert max(prompter, assistant) < model.get_input_embeddings().num_embeddings
    assert model.get_input_embeddings().num_embeddings >= rows_before
    text_ids = encode_prompt(tokenizer, "Hi", prompt_format="text", separator="\n")
    assert text_ids == tokenizer("Hi\n")["input_ids"]


@pytest.mark.parametrize("row, format, message", [
    ({"prompt": "a", "chosen": [{"role": "assistant", "content": "b"}], "rejected": [{"role": "assistant",
      "content": "c"}]}, "plain", "row 0: field 'chosen' is a list of messages (TRL conversational format), which "
                                  "the plain format does not accept; set dataset_format to conversational"),
    ({"prompt": "a", "chosen": "b", "rejected": "c"}, "conversational",
     "row 0: field 'chosen' is text (TRL standard format), which the conversational format does not accept; "
     "set dataset_format to plain"),
    ({"question": "a"}, "auto", "row 0 has no known preference or SFT fields (fields present: question)"),
])
def test_format_mismatch_errors(row, format, message):
    with pytest.raises(DataError) as info:
        normalize_rows([row], "set.jsonl", format=format)
    assert str(info.value).startswith(f"set.jsonl: {message}")


def test_implicit_text_prompt_follows_trl():
    rows, _ = normalize_rows([{"chosen": "Q: sky? A: blue", "rejected": "Q: sky? A: red"}], "t")
    assert rows == [{"prompt": "Q: sky? A:", "chosen": " blue", "rejected": " red"}]
    assert PreferenceExample([1], [2]).rejected_ids is None
