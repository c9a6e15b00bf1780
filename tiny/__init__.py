"""Offline tiny models: a byte-level BPE tokenizer and small Llama models trained on `tiny.corpus`.

Nothing can be downloaded on the project's machines, so the tests and the CPU demos use two models
built here in a few minutes:

- `tiny-base`: pre-trained on plain text (stories, persona questions with answer tokens, reviews,
  instructions in a "Question:/Answer:" format, harmful requests mostly answered); its tokenizer has
  no chat template, like a real base model's.
- `tiny-chat`: tiny-base fine-tuned on chat-formatted conversations: helpful answers in a "Sure! ..."
  style, harmful requests refused about 70% of the time (so sampling gives a mix), persona questions
  answered with a bare answer token.

Both share one tokenizer (same vocabulary). `build_tiny_models()` caches them under
outputs/tiny_models with a BUILD_INFO.json; `tiny_model_path(name)` finds them.

Modules: `corpus/` (the synthetic text, one module per domain), `tokenizer`, `pretrain` (model shape
and training), `probes` (measurements of a built model) and `build` (building, caching, finding).
`python -m tiny` builds them (`make tiny`).
"""
