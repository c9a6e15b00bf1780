"""Write the small persona fixture, data_files/persona/ends-justify-means-sample.jsonl.

    python -m persona_experiments.sample_data [--num_rows 200] [--seed 0] [--output PATH]

The rows come from `common.persona_records`: the same statements and question format the
tiny models were pre-trained on, in the schema of Anthropic's model-written-evals persona files. The
real "ends-justify-means" file goes next to it as data_files/persona/ends-justify-means.jsonl (the
paper plans' default `dataset`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.cli import parse_options
from common.config import option
from common.tracking import write_jsonl
from tiny.corpus.persona import persona_records

SAMPLE_PATH = Path(__file__).resolve().parent.parent / "data_files" / "persona" / "ends-justify-means-sample.jsonl"


@dataclass
class SampleOptions:
    num_rows: int = option(200, min=1)
    seed: int = option(0)
    output: str = option(str(SAMPLE_PATH))


def main(argv=None) -> None:
    args = parse_options("python -m persona_experiments.sample_data", __doc__.splitlines()[0], SampleOptions, argv)
    write_jsonl(args.output, persona_records(args.num_rows, args.seed))
    print(f"wrote {args.num_rows} rows to {args.output}")


if __name__ == "__main__":
    main()
