"""The CPU fixture: instructions the tiny models know, from tiny.corpus (held-out seed).

    python -m tds.fixtures [--output data_files/tds/instructions.jsonl]

Writes benign instructions (the tiny corpus's Alpaca-like tasks) and harmful requests, each row
{"id", "instruction", "kind"}. `python -m tds.generate` then adds tiny-chat's greedy responses
(data_files/tds/tiny_chat_responses.jsonl).
"""
from __future__ import annotations

from dataclasses import dataclass

from common.cli import parse_options
from common.config import option
from common.tracking import write_jsonl
from tiny.corpus.instructions import instruction_records
from tiny.corpus.refusals import harmful_records

FIXTURE_SEED = 4242  # not a seed the tiny models were trained on


def instruction_rows(num_benign: int = 40, num_harmful: int = 24, seed: int = FIXTURE_SEED) -> list[dict]:
    benign = [{"instruction": r["instruction"] + ("\n" + r["input"] if r["input"] else ""), "kind": "benign"}
              for r in instruction_records(num_benign, seed)]
    harmful = [{"instruction": r["prompt"], "kind": "harmful"} for r in harmful_records(num_harmful, seed)]
    rows = benign + harmful
    return [{"id": f"{row['kind']}-{i}", **row} for i, row in enumerate(rows)]


@dataclass
class FixtureOptions:
    output: str = option("data_files/tds/instructions.jsonl")


def main(argv=None) -> None:
    args = parse_options("python -m tds.fixtures", __doc__.splitlines()[0], FixtureOptions, argv)
    rows = instruction_rows()
    write_jsonl(args.output, rows)
    print(f"wrote {len(rows)} instructions to {args.output}")


if __name__ == "__main__":
    main()
