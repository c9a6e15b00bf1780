"""Write the small persona fixture, data_files/persona/ends-justify-means-sample.jsonl.

    python -m persona_experiments.sample_data [--num_rows 200] [--seed 0] [--output PATH]

The rows come from `common.persona_records`: the same statements and question format the
tiny models were pre-trained on, in the schema of Anthropic's model-written-evals persona files. The
real "ends-justify-means" file goes next to it as data_files/persona/ends-justify-means.jsonl (the
paper plans' default `dataset`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common.tracking import write_jsonl
from tiny.corpus.persona import persona_records

SAMPLE_PATH = Path(__file__).resolve().parent.parent / "data_files" / "persona" / "ends-justify-means-sample.jsonl"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_rows", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(SAMPLE_PATH))
    args = parser.parse_args(argv)
    write_jsonl(args.output, persona_records(args.num_rows, args.seed))
    print(f"wrote {args.num_rows} rows to {args.output}")


if __name__ == "__main__":
    main()
