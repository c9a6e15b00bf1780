"""A deterministic synthetic English corpus for the offline tiny models (`tiny/`).

No model or data set can be downloaded here, so the tiny models learn from text made from templates
and word lists. Every domain is shaped after the real data set a study uses, so the studies can also
take their CPU fixtures from here:

- persona yes/no questions (Anthropic model-written-evals, "ends-justify-means"),
- instructions and responses (Alpaca), short factual Q&A with wrong answers (TruthfulQA),
- mild, abstract harmful requests with refusals and compliant answers (BeaverTails, SORRY-Bench),
- positive and negative movie reviews (IMDb),
- plain narrative and descriptive text, so the base model is a general language model.

Every generator takes `n` and `seed` and returns the same list for the same arguments: each domain
draws from its own `random.Random` seeded with a string, which does not depend on PYTHONHASHSEED.
Bump CORPUS_VERSION whenever the generated text changes, so cached tiny models are rebuilt.

One module per domain (`persona`, `narrative`, `reviews`, `qa`, `instructions`, `refusals`,
`preferences`), the word lists they share (`facts`) and the two training mixtures (`mixtures`).
"""

CORPUS_VERSION = 1
