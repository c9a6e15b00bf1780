"""Numbers the README and docs/*.md quote from tiny runs, checked against the command that prints them.

Where the command is cheap the test runs it and compares at the printed precision (docs/tds.md's
`zero_shot_qa` row). Where it is not (`make demo`, the persona and other study sweeps take minutes) the
doc says that its numbers vary with the tiny build, the library versions and the machine, and the test
checks what does not vary: that the README's demo excerpt is the results printer's own wording.
"""
import re
from pathlib import Path

import pytest

from common.tracking import read_json
from tds.__main__ import main as tds_main
from tests.persona_experiments.conftest import write_run

REPO = Path(__file__).resolve().parents[1]


def doc(name: str) -> str:
    return (REPO / name).read_text()


def test_tds_tiny_table_row_is_what_the_analysis_prints(tiny_models, tmp_path):
    # docs/tds.md, "Tiny-scale results": the zero_shot_qa run of tds/experiments_plans/tiny.json.
    row = next(line for line in doc("docs/tds.md").splitlines() if line.startswith("| `zero_shot_qa` "))
    quoted = [cell.strip() for cell in row.strip("|").split("|")][-7:]
    tds_main(["--base", tiny_models["base"], "--aligned", tiny_models["chat"],
              "--data", str(REPO / "data_files/tds/tiny_chat_responses.jsonl"), "--output_dir", str(tmp_path / "run"),
              "--base_template", "Question: {{ instruction }}\nAnswer:\n", "--viewer_examples", "1"])
    s = read_json(tmp_path / "run" / "summary.json")
    assert quoted == [f"{s['unshifted_ratio']:.1%}", f"{s['marginal_ratio']:.1%}", f"{s['shifted_ratio']:.1%}",
                      f"{s['mean_example_shifted_ratio']:.1%}", f"{s['mean_kl_aligned_base']:.3f}",
                      f"{s['mean_kl_base_aligned']:.3f}", f"{s['aligned_top1_ratio']:.0%}"], \
        "docs/tds.md's zero_shot_qa row no longer matches the analysis: re-run the tiny plan and update the doc"
    text = " ".join(doc("docs/tds.md").split())
    assert f"{s['num_positions']} response tokens in all" in text
    assert (f"Jaccard@10 {s['mean_jaccard']:.3f} /" in text and f"nDCG@10 {s['mean_ndcg']:.3f} /" in text
            and f"weighted overlap@10 {s['mean_weighted_overlap']:.3f} /" in text)  # zero_shot_qa comes first


def readme_demo_excerpt() -> list[str]:
    text = doc("README.md")
    block = text[text.index("### What `make demo` prints"):]
    return block[block.index("```\n") + 4:block.index("\n```", block.index("```\n") + 4)].splitlines()


def wording(line: str) -> str:
    """A printed line without its numbers, token strings and column padding: what the printer's code fixes."""
    line = re.sub(r"'[^']*'", "'T'", re.sub(r"[-+]?\d+(\.\d+)?(e[-+]\d+)?", "N", line))
    return " ".join(line.split())


def printed_by(line: str, printed: set[str]) -> bool:
    """`line` of the excerpt is one of `printed`; "..." in it stands for the rest of the line, and a top-k
    line lists as many tokens as the run set has."""
    shape = wording(line)
    if "..." in shape or " top-N: " in shape:
        head = shape.split("...")[0] if "..." in shape else shape.split(": ")[0]
        return any(p.startswith(head) for p in printed)
    return shape in printed


def test_readme_demo_excerpt_is_the_persona_printers_output(tmp_path, capsys):
    # make demo takes minutes; its numbers vary (the README says so). The excerpt's lines must still be
    # lines the printer writes: run it on a hand-written run set of the same kind and compare the wording.
    from persona_experiments.results import main

    runs = tmp_path / "post_sft_dpo_yes_vs_no"
    for seed in (2701, 2702):
        write_run(runs / f"seed_{seed}", [0.2, 0.3, 0.1], [0.69, 0.6, 0.5], [[1, 3, 5], [3, 1, 5]],
                  [[0.1, 0.01, 0.001], [0.2, 0.05, 0.01]], pos=1, neg=2,
                  config={"preferred_token": " Yes", "dispreferred_token": " No", "lr": 1e-5})
    main(["--experiments_dir", str(tmp_path), "--no_plots"])
    printed = {wording(line) for line in capsys.readouterr().out.splitlines()}
    excerpt = [line for line in readme_demo_excerpt() if line.strip() != "..."]
    assert len(excerpt) >= 10
    missing = [line for line in excerpt if not printed_by(line, printed)]
    assert missing == [], "README's demo excerpt has lines the persona printer no longer writes: re-run make demo"
    demo = doc("README.md")[doc("README.md").index("### What `make demo` prints"):]
    assert "the numbers vary with" in " ".join(demo[:demo.index("```")].split())


@pytest.mark.parametrize("page", ["docs/persona_experiments.md", "docs/sorrybench.md", "docs/elasticity.md",
                                  "docs/harmful_ft.md", "docs/BENCHMARKS.md"])
def test_pages_quoting_tiny_runs_say_their_numbers_vary(page):
    # These figures come from sweeps of minutes to hours: the page says they vary instead of a test.
    assert "vary with" in " ".join(doc(page).split()), f"{page}: say that its tiny-run numbers vary (or test them)"
