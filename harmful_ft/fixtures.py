"""Write the study's small fixtures in data_files/harmful_ft/, in the schemas of the real sets.

    python -m harmful_ft.fixtures [--output_dir data_files/harmful_ft]

From the tiny corpus (so the tiny models know the words):
- beavertails/30k_train.jsonl, 30k_test.jsonl (prompt, response, category: 14 flags, is_safe): the
  tiny corpus's mild harmful requests, each with a refusal (is_safe true) and a compliant answer (false);
  the test prompts are distinct, and 5 of them reappear in the train split (real BeaverTails shares
  prompts between splits: the pipeline's de-duplication has something to remove);
- repnoise_refusal/train.jsonl (prompt, response, refusal): the train prompts' pairs;
- sst2/{train,validation}.jsonl (idx, sentence, label 1 = positive): tiny movie reviews;
- agnews/{train,test}.jsonl (text, label 0-3): four tiny-corpus domains standing for AGNews's four
  topics (World = countries, Sports = animals, Business = tips, Sci/Tech = colours): the schema and the
  label words of AGNews, not its content;
- gsm8k/{train,test}.jsonl (question, answer ending in "#### N"): one-step additions;
- alpaca/train.jsonl (instruction, input, output): tiny-corpus instructions;
- virus/Virus.jsonl (instruction, input, output, the Virus set's schema): a one-step addition question whose
  answer is followed by a mild compliant harmful answer of the tiny corpus (Virus concatenates benign data
  with an optimised harmful part; here nothing is optimised).
Deterministic: the files in the repository are what this writes (a test checks it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.cli import parse_options
from common.config import option
from common.tracking import write_jsonl
from tiny.corpus.facts import CAPITALS, NAMES, TIPS, domain_rng
from tiny.corpus.instructions import instruction_records
from tiny.corpus.narrative import describe_animal
from tiny.corpus.refusals import beavertails_rows, distinct_harmful_records
from tiny.corpus.reviews import review_records

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "data_files" / "harmful_ft"
CORPUS_SEED = 14
NUM_TEST_PROMPTS = 40
NUM_SHARED = 5  # test prompts that reappear in the train split
TASK_TRAIN, TASK_TEST = 200, 60
NUM_VIRUS = 30


def agnews_row(rng) -> dict:
    label = rng.randrange(4)
    if label == 0:
        country = rng.choice(sorted(CAPITALS))
        text = f"{CAPITALS[country]} is the capital of {country}. People in {country} met in {CAPITALS[country]} today."
    elif label == 1:
        text = describe_animal(rng.choice(["cat", "dog", "cow", "horse", "sheep", "duck", "owl", "frog", "lion"]))
    elif label == 2:
        topic = rng.choice(sorted(TIPS))
        text = f"Some tips for {topic}: {', '.join(rng.sample(TIPS[topic], 2))}."
    else:
        thing, color = rng.choice([("the sky", "blue"), ("grass", "green"), ("snow", "white"), ("coal", "black")])
        text = f"The colour of {thing} is {color}. Scientists say {thing} looks {color} to us."
    return {"text": text, "label": label}


def gsm8k_row(rng) -> dict:
    name, a, b = rng.choice(sorted(NAMES)), rng.randint(1, 20), rng.randint(1, 20)
    return {"question": f"{name} has {a} apples and gets {b} more. How many apples does {name} have?",
            "answer": f"{name} has {a} plus {b} apples, that is {a + b} apples.\n#### {a + b}"}


def write_fixtures(output_dir: Path = OUTPUT_DIR) -> None:
    prompts = distinct_harmful_records(3000, CORPUS_SEED)
    test, train = prompts[:NUM_TEST_PROMPTS], prompts[NUM_TEST_PROMPTS:] + prompts[:NUM_SHARED]
    write_jsonl(output_dir / "beavertails" / "30k_test.jsonl", beavertails_rows(test))
    write_jsonl(output_dir / "beavertails" / "30k_train.jsonl", beavertails_rows(train))
    write_jsonl(output_dir / "repnoise_refusal" / "train.jsonl",
                [{"prompt": r["prompt"], "response": r["compliance"], "refusal": r["refusal"]} for r in train])
    reviews = review_records(TASK_TRAIN + TASK_TEST, CORPUS_SEED)
    for split, rows in (("train", reviews[:TASK_TRAIN]), ("validation", reviews[TASK_TRAIN:])):
        write_jsonl(output_dir / "sst2" / f"{split}.jsonl",
                    [{"idx": i, "sentence": r["text"], "label": r["label"]} for i, r in enumerate(rows)])
    for name, make in (("agnews", agnews_row), ("gsm8k", gsm8k_row)):
        rng = domain_rng(f"harmful_ft:{name}", CORPUS_SEED)
        rows = [make(rng) for _ in range(TASK_TRAIN + TASK_TEST)]
        write_jsonl(output_dir / name / "train.jsonl", rows[:TASK_TRAIN])
        write_jsonl(output_dir / name / "test.jsonl", rows[TASK_TRAIN:])
    write_jsonl(output_dir / "alpaca" / "train.jsonl", instruction_records(TASK_TRAIN, CORPUS_SEED))
    rng = domain_rng("harmful_ft:virus", CORPUS_SEED)
    virus = []
    for i in range(NUM_VIRUS):
        question = gsm8k_row(rng)
        virus.append({"instruction": question["question"], "input": "",
                      "output": question["answer"].split("\n")[0] + " " + train[i % len(train)]["compliance"]})
    write_jsonl(output_dir / "virus" / "Virus.jsonl", virus)


@dataclass
class FixtureOptions:
    output_dir: str = option(str(OUTPUT_DIR))


def main(argv=None) -> None:
    write_fixtures(Path(parse_options("python -m harmful_ft.fixtures", __doc__.splitlines()[0], FixtureOptions,
                                      argv).output_dir))


if __name__ == "__main__":
    main()
