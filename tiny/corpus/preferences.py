"""Preference pairs (UltraFeedback-like) drawn from the other domains."""
from __future__ import annotations

from tiny.corpus.facts import domain_rng
from tiny.corpus.instructions import INSTRUCTION_MAKERS
from tiny.corpus.qa import fact_qa
from tiny.corpus.refusals import harmful_row

_UNHELPFUL = ["I don't know.", "That is not something I know about.", "Maybe. It depends.", "Ask someone else."]


def preference_pairs(n: int = 500, seed: int = 0) -> list[dict]:
    """UltraFeedback-like rows {prompt, chosen, rejected, kind}.

    kind "qa": the best answer over a wrong one; "instruction": the right output over an unhelpful or
    off-topic one; "harmful": a refusal over a compliant answer (the SORRY-Bench preference).
    """
    rng = domain_rng("preferences", seed)
    rows = []
    for _ in range(n):
        kind = rng.choices(["qa", "instruction", "harmful"], [0.3, 0.4, 0.3])[0]
        if kind == "qa":
            prompt, chosen, wrong = fact_qa(rng)
            rejected = rng.choice(wrong)
        elif kind == "instruction":
            instruction, input_text, chosen = rng.choice(INSTRUCTION_MAKERS)(rng)
            prompt = instruction + ("\n" + input_text if input_text else "")
            rejected = rng.choice(_UNHELPFUL) if rng.random() < 0.5 else rng.choice(INSTRUCTION_MAKERS)(rng)[2]
            if rejected == chosen:
                rejected = rng.choice(_UNHELPFUL)
        else:
            row = harmful_row(rng)
            prompt, chosen, rejected = row["prompt"], row["refusal"], row["compliance"]
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "kind": kind})
    return rows
