"""Input formats, prompt templates, BOS handling and the tokenizer check, on the tiny tokenizers."""
import pytest

from common.errors import ConfigError, DataError
from common.models import load_tokenizer
from tds.inputs import (
    ALIGNTDS_TEMPLATE,
    aligned_prompt_text,
    check_same_tokenizer,
    encode_records,
    encode_response,
    encode_text,
    parse_records,
    resolve_base_template,
)


@pytest.fixture(scope="module")
def tokenizers(tiny_models):
    return load_tokenizer(tiny_models["base"]), load_tokenizer(tiny_models["chat"])


def test_reads_our_urial_and_alpacaeval_formats():
    rows = [{"instruction": "Name a fruit.", "output": "Sure! An apple."},
            {"id": 7, "pure_input": "Hi {there}", "input": "<|bos|><|user|>\nHi {there}<|end|>\n<|assistant|>\n",
             "output": ["Hello!<|end|>", "ignored second sample"]},
            {"id": "x", "instruction": "Add 2 and 2.", "output": "4", "generator": "gpt-4", "dataset": "helpful"}]
    records = parse_records(rows, "f.jsonl")
    assert [r.id for r in records] == ["0", "7", "x"]
    assert records[1].instruction == "Hi {there}" and records[1].response == "Hello!<|end|>"
    assert records[1].aligned_prompt.startswith("<|bos|><|user|>") and records[0].aligned_prompt is None


@pytest.mark.parametrize("row, message", [
    ({"instruction": "a"}, "row 0: missing field 'output'"),
    ({"prompt": "a", "output": "b"}, "row 0: needs 'instruction'"),
    ({"instruction": "a", "output": []}, "row 0: field 'output' is an empty list"),
    ({"instruction": "a", "output": 3}, "row 0: field 'output' must be text"),
])
def test_malformed_rows_name_the_row(row, message):
    with pytest.raises(DataError, match=message):
        parse_records([row], "f.jsonl")


def test_prompts_have_exactly_one_bos(tokenizers):
    base_tok, chat_tok = tokenizers
    bos = chat_tok.bos_token_id
    rendered = aligned_prompt_text(chat_tok, "Name a fruit.")
    assert rendered.startswith("<|bos|>")  # the chat template writes BOS itself
    ids = encode_text(chat_tok, rendered)
    assert ids[0] == bos and ids[1] != bos
    assert ids == chat_tok.apply_chat_template([{"role": "user", "content": "Name a fruit."}],
                                               add_generation_prompt=True, tokenize=True, return_dict=False)
    base_ids = encode_text(base_tok, "Question: Name a fruit.\nAnswer:\n")
    assert base_ids[0] == bos and base_ids[1] != bos


def test_base_templates(tokenizers, tmp_path):
    assert resolve_base_template("aligntds") == "# Query: \n ```{{ instruction }}``` \n\n \n# Answer: \n ```"
    assert ALIGNTDS_TEMPLATE in resolve_base_template("aligntds")
    prefix = tmp_path / "prefix.txt"
    prefix.write_text("Question: q\nAnswer:\nSure! a\n\n")
    template = resolve_base_template("{{ urial_prefix }}Question: {{ instruction }}\nAnswer:\n", str(prefix))
    assert template == "Question: q\nAnswer:\nSure! a\n\nQuestion: {{ instruction }}\nAnswer:\n"
    assert "# Query:" in resolve_base_template("urial")  # the built-in short prefix
    with pytest.raises(ConfigError, match="holds no"):
        resolve_base_template("Question: {instruction}")
    with pytest.raises(ConfigError, match="file not found"):
        resolve_base_template("urial", str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="has no chat template"):
        aligned_prompt_text(tokenizers[0], "x")  # tiny-base, like real base models, has none


def test_encode_records_uses_the_rendered_prompt_and_one_response_tokenization(tokenizers):
    base_tok, chat_tok = tokenizers
    records = parse_records([{"id": 1, "pure_input": "Say hi.", "input": "<|bos|>USER: Say hi. BOT:",
                              "output": ["Sure! Hi.<|end|>"]}], "f")
    encoded = encode_records(records, base_tok, chat_tok, base_template=resolve_base_template("plain"))
    assert chat_tok.decode(encoded.aligned_prompt_ids[0]) == "<|bos|>USER: Say hi. BOT:"
    assert chat_tok.decode(encoded.base_prompt_ids[0]) == "<|bos|>Say hi."
    assert encoded.response_ids[0] == chat_tok("Sure! Hi.", add_special_tokens=False)["input_ids"]
    with_eos = encode_records(records, base_tok, chat_tok, base_template="{{ instruction }}", include_eos=True,
                              use_record_prompt=False)
    assert with_eos.response_ids[0] == encoded.response_ids[0] + [chat_tok.eos_token_id]
    assert with_eos.aligned_prompt_ids[0] == encode_text(chat_tok, aligned_prompt_text(chat_tok, "Say hi."))
    assert encode_response(chat_tok, "Sure! Hi.", include_eos=False) == encoded.response_ids[0]


def test_tokenizer_mismatch_is_a_clear_error(tokenizers):
    base_tok, chat_tok = tokenizers
    check_same_tokenizer(base_tok, chat_tok)  # same vocabulary, one has a chat template: fine
    other = load_tokenizer(chat_tok.name_or_path)
    other.add_tokens(["<|new_token|>"])
    with pytest.raises(DataError, match=r"tokenizers of 'b' and 'a' differ \(1 tokens only in a .*'<\|new_token\|>'"):
        check_same_tokenizer(base_tok, other, "b", "a")
