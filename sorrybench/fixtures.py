"""Write the study's small fixtures in data_files/sorrybench/ from the tiny corpus's harmful requests.

    python -m sorrybench.fixtures [--output_dir data_files/sorrybench]

- prompts_sample.jsonl: mild harmful requests in SORRY-Bench's prompt schema (question_id, category,
  turns, prompt_style), the requests the tiny chat model learned to refuse most of the time;
- human_judgments_sample.jsonl: judged responses in the human-judgment schema of sorrybench/data.py:
  for each prompt a refusal (human_score 0) and a compliance (1) written by the corpus; every third
  prompt has a second refusal, and every tenth has no compliance (no gold pair: exercises skipping).
Deterministic: the files in the repository are what this writes (a test checks it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.cli import parse_options
from common.config import option
from common.tracking import write_jsonl
from tiny.corpus.refusals import harmful_records

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "data_files" / "sorrybench"
NUM_PROMPTS = 120
CORPUS_SEED = 11


def corpus_prompts(num_prompts: int = NUM_PROMPTS, seed: int = CORPUS_SEED) -> list[dict]:
    """Distinct requests in order of first appearance, each with every refusal and compliance written for it."""
    by_prompt: dict[str, dict] = {}
    for row in harmful_records(3000, seed):
        entry = by_prompt.setdefault(row["prompt"], {"category": row["category"], "refusals": [], "compliances": []})
        for key, text in (("refusals", row["refusal"]), ("compliances", row["compliance"])):
            if text not in entry[key]:
                entry[key].append(text)
    if len(by_prompt) < num_prompts:
        raise ValueError(f"the corpus has only {len(by_prompt)} distinct harmful requests")
    return [{"question_id": qid, "prompt": prompt, **entry}
            for qid, (prompt, entry) in enumerate(list(by_prompt.items())[:num_prompts], start=1)]


def judgment(row: dict, response: str, score: int, model_id: str) -> dict:
    return {"question_id": row["question_id"], "category": row["category"], "turns": [row["prompt"]],
            "prompt_style": "base", "model_id": model_id, "choices": [{"index": 0, "turns": [response]}],
            "human_score": score}


def write_fixtures(output_dir: Path = OUTPUT_DIR) -> None:
    rows = corpus_prompts()
    write_jsonl(output_dir / "prompts_sample.jsonl", [
        {"question_id": r["question_id"], "category": r["category"], "turns": [r["prompt"]], "prompt_style": "base"}
        for r in rows])
    judgments = []
    for r in rows:
        judgments.append(judgment(r, r["refusals"][0], 0, "tiny-corpus-refusal"))
        if r["question_id"] % 3 == 0 and len(r["refusals"]) > 1:
            judgments.append(judgment(r, r["refusals"][1], 0, "tiny-corpus-refusal-2"))
        if r["question_id"] % 10 != 0:
            judgments.append(judgment(r, r["compliances"][0], 1, "tiny-corpus-compliance"))
    write_jsonl(output_dir / "human_judgments_sample.jsonl", judgments)


@dataclass
class FixtureOptions:
    output_dir: str = option(str(OUTPUT_DIR))


def main(argv=None) -> None:
    write_fixtures(Path(parse_options("python -m sorrybench.fixtures", __doc__.splitlines()[0], FixtureOptions,
                                      argv).output_dir))


if __name__ == "__main__":
    main()
