"""Writes data_files/elasticity/: small samples of the paper's datasets, in the hub schemas, made from
tiny.corpus (the text the tiny models were pre-trained on, drawn with another seed).

    python -m elasticity.fixtures [--out_dir data_files/elasticity]

Each dataset is a directory holding `<split>.jsonl` named after the hub split the loader reads, so
`data_sources: {"imdb": "data_files/elasticity/imdb"}` stands in for `stanfordnlp/imdb`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.cli import parse_options
from common.config import option
from common.tracking import write_jsonl
from tiny.corpus.instructions import instruction_records
from tiny.corpus.mixtures import base_corpus_texts
from tiny.corpus.qa import qa_records
from tiny.corpus.refusals import beavertails_rows as corpus_beavertails_rows
from tiny.corpus.refusals import harmful_records
from tiny.corpus.reviews import review_records

SEED = 7  # the tiny models were built from seed 0 and measured on seed 1000
OUT_DIR = Path(__file__).resolve().parent.parent / "data_files" / "elasticity"
ALPACA_TEXT = ("Below is an instruction that describes a task{with_input}. Write a response that appropriately "
               "completes the request.\n\n### Instruction:\n{instruction}\n\n{input_block}### Response:\n{output}")
# The BeaverTails harm category (common.moderation.CATEGORIES) of each tiny-corpus harm.
HARM_CATEGORY = {"insult": "hate_speech,offensive_language", "stealing": "financial_crime,property_crime,theft",
                 "shoplifting": "financial_crime,property_crime,theft", "hurting animals": "animal_abuse",
                 "spying on someone": "privacy_violation", "breaking into accounts": "privacy_violation",
                 "breaking into someone's home": "financial_crime,property_crime,theft"}


def alpaca_rows(n: int) -> list[dict]:
    rows = []
    for row in instruction_records(n, SEED):
        with_input = ", paired with an input that provides further context" if row["input"] else ""
        text = ALPACA_TEXT.format(with_input=with_input, instruction=row["instruction"], output=row["output"],
                                  input_block=f"### Input:\n{row['input']}\n\n" if row["input"] else "")
        rows.append({**row, "text": text})
    return rows


def truthful_qa_rows(n: int) -> list[dict]:
    return [{"type": "Adversarial", "category": "Misconceptions", **row, "source": "tiny_corpus"}
            for row in qa_records(n, SEED)]


def beavertails_rows(n: int) -> list[dict]:
    """Two rows per harmful request, as in BeaverTails: a refusal (safe) and a compliance (unsafe)."""
    return corpus_beavertails_rows(harmful_records(n, SEED), HARM_CATEGORY)


def write_fixtures(out_dir: Path = OUT_DIR) -> dict[str, Path]:
    files = {"alpaca": out_dir / "alpaca" / "train.jsonl", "truthful_qa": out_dir / "truthful_qa" / "validation.jsonl",
             "beavertails": out_dir / "beavertails" / "30k_train.jsonl", "imdb": out_dir / "imdb" / "train.jsonl",
             "text": out_dir / "text" / "train.jsonl"}
    write_jsonl(files["alpaca"], alpaca_rows(600))
    write_jsonl(files["truthful_qa"], truthful_qa_rows(450))
    write_jsonl(files["beavertails"], beavertails_rows(400))
    write_jsonl(files["imdb"], review_records(1200, SEED))
    write_jsonl(files["text"], [{"text": t} for t in base_corpus_texts(300, SEED)])
    return files


@dataclass
class FixtureOptions:
    out_dir: str = option(str(OUT_DIR))


def main(argv=None) -> None:
    args = parse_options("python -m elasticity.fixtures", __doc__.splitlines()[0], FixtureOptions, argv)
    for name, path in write_fixtures(Path(args.out_dir)).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
