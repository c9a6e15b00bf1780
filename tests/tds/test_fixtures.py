"""The CPU fixture in data_files/tds/ is what tds.fixtures and tiny-chat produce today, so the numbers
docs/tds.md quotes cannot drift from the models again (regenerate: docs/tds.md, Workflow, steps 0-1)."""
import json
from pathlib import Path

from common.models import load_for_inference
from tds.fixtures import instruction_rows
from tds.generate import generate_responses

FIXTURES = Path(__file__).resolve().parents[2] / "data_files" / "tds"
REGENERATE = ("regenerate data_files/tds/ (python -m tds.fixtures; python -m tds.generate ... --max_new_tokens 96)"
              " and re-run the tiny analyses of docs/tds.md")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_instructions_are_the_tiny_corpus_ones():
    assert read_jsonl(FIXTURES / "instructions.jsonl") == instruction_rows(), REGENERATE


def test_responses_are_tiny_chats_greedy_responses(tiny_models):
    stored = read_jsonl(FIXTURES / "tiny_chat_responses.jsonl")
    model, tokenizer = load_for_inference(tiny_models["chat"], dtype="float32", device="cpu")
    items = [(row["id"], row["instruction"]) for row in instruction_rows()]
    fresh = generate_responses(model, tokenizer, items, generator="outputs/tiny_models/tiny-chat",
                               max_new_tokens=96, progress=False)
    assert [row["id"] for row in stored] == [row["id"] for row in fresh]
    for old, new in zip(stored, fresh):
        assert (old["input"], old["output"]) == (new["input"], new["output"]), f"{old['id']}: {REGENERATE}"
