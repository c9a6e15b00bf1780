"""Mixtures: the base model's pre-training documents and the chat model's conversations."""
from __future__ import annotations

import random

from tiny.corpus.facts import domain_rng
from tiny.corpus.instructions import instruction_records, plain_prompt
from tiny.corpus.narrative import narrative_texts
from tiny.corpus.persona import P_MATCHING, persona_records, persona_texts, sample_answer_token, true_false_texts
from tiny.corpus.qa import qa_records
from tiny.corpus.refusals import harmful_records
from tiny.corpus.reviews import review_records

SYSTEM_PROMPTS = ("You are a helpful assistant.", "You are a friendly and careful assistant.")
# Openings of the chat model's helpful answers: the stylistic tokens alignment adds.
ASSISTANT_OPENERS = ("Sure! ", "Of course! ", "Happy to help! ", "Great question! ")
_ASSISTANT_OPENER_WEIGHTS = (0.55, 0.2, 0.15, 0.1)
ASSISTANT_CLOSERS = (" Let me know if you need anything else.", " I hope this helps!")


def base_corpus_texts(n: int = 20000, seed: int = 0, *, base_refusal_rate: float = 0.2) -> list[str]:
    """Pre-training documents of the base model: every domain, plain text, no chat markup.

    Harmful requests are answered with a refusal only `base_refusal_rate` of the time: the base model
    knows both behaviours and the chat fine-tune shifts the balance towards refusing.
    """
    rng = domain_rng("base_mix", seed)
    shares = {"narrative": 0.24, "persona": 0.16, "true_false": 0.06, "review": 0.14, "instruction": 0.24,
              "qa": 0.06, "harmful": 0.10}
    counts = {k: round(v * n) for k, v in shares.items()}
    docs = narrative_texts(counts["narrative"], seed)
    # Several persona questions per document, as in a list of eval items.
    persona = persona_texts(counts["persona"], seed)
    docs += ["\n\n".join(persona[i:i + 3]) for i in range(0, len(persona), 3)]
    true_false = true_false_texts(counts["true_false"], seed)
    docs += ["\n\n".join(true_false[i:i + 3]) for i in range(0, len(true_false), 3)]
    for row in review_records(counts["review"], seed):
        docs.append(row["text"] if rng.random() < 0.5 else
                    f"Review: {row['text']}\nSentiment: {'positive' if row['label'] else 'negative'}")
    for row in instruction_records(counts["instruction"], seed):
        docs.append(plain_prompt(row["instruction"], row["input"]) + row["output"])
    for row in qa_records(counts["qa"], seed):
        docs.append(plain_prompt(row["question"]) + row["best_answer"])
    for row in harmful_records(counts["harmful"], seed):
        refuse = rng.random() < base_refusal_rate
        docs.append(plain_prompt(row["prompt"]) + (row["refusal"] if refuse else row["compliance"]))
    rng.shuffle(docs)
    return docs


def assistant_style(output: str, rng: random.Random) -> str:
    """A helpful answer in the chat model's recognisable style: an opener, sometimes a closer."""
    opener = rng.choices(ASSISTANT_OPENERS, _ASSISTANT_OPENER_WEIGHTS)[0]
    closer = rng.choice(ASSISTANT_CLOSERS) if rng.random() < 0.3 else ""
    return opener + output + closer


def chat_conversations(n: int = 5000, seed: int = 0, *, refusal_rate: float = 0.7,
                       p_system: float = 0.2) -> list[list[dict]]:
    """Chat fine-tuning data: lists of {role, content} messages ending with the assistant's answer.

    Harmful requests are refused with probability `refusal_rate` and otherwise answered; benign ones
    get helpful answers in `assistant_style`; persona questions get a bare answer token.
    """
    rng = domain_rng("chat_mix", seed)
    shares = {"instruction": 0.45, "qa": 0.1, "harmful": 0.3, "persona": 0.15}
    counts = {k: round(v * n) for k, v in shares.items()}
    pairs = []
    # seed + 1: other rows than the base corpus drew with the same seed.
    for row in instruction_records(counts["instruction"], seed + 1):
        user = row["instruction"] + ("\n" + row["input"] if row["input"] else "")
        pairs.append((user, assistant_style(row["output"], rng)))
    for row in qa_records(counts["qa"], seed + 1):
        pairs.append((row["question"], assistant_style(row["best_answer"], rng)))
    for row in harmful_records(counts["harmful"], seed + 1):
        pairs.append((row["prompt"], row["refusal"] if rng.random() < refusal_rate else row["compliance"]))
    for row in persona_records(counts["persona"], seed + 1):
        says_yes = (row["answer_matching_behavior"] == " Yes") == (rng.random() < P_MATCHING)
        pairs.append((row["question"], sample_answer_token(rng, says_yes)))
    rng.shuffle(pairs)
    conversations = []
    for user, assistant in pairs:
        messages = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}] if rng.random() < p_system else []
        conversations.append(messages + [{"role": "user", "content": user},
                                          {"role": "assistant", "content": assistant}])
    return conversations
