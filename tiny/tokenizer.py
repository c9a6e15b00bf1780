"""The tiny models' byte-level BPE tokenizer, its special tokens and chat template, and the token streams
the models are trained on."""
from __future__ import annotations

from typing import Sequence

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from tiny.corpus.persona import ANSWER_TOKENS

PAD, BOS, EOS, UNK = "<|pad|>", "<|bos|>", "<|end|>", "<|unk|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK) + ROLE_TOKENS
# One token, <|end|>, ends both a document and a chat turn, so generation stops at the end of the
# assistant's turn with the tokenizer's own eos_token_id. Like Llama's, the tokenizer adds BOS to
# plain text and the template writes BOS itself: tokenize rendered chats with add_special_tokens=False.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('Unknown role ' + message['role'] + ': use system, user or assistant') }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)




def train_tiny_tokenizer(texts: Sequence[str], vocab_size: int = 3072) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `texts`, with special tokens and the chat template.

    `vocab_size` is an upper bound: on the templated corpus BPE runs out of merges at about 2,300.
    Raises ValueError if an answer token of the persona study is not a single token.
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, backend.token_to_id(BOS))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                        unk_token=UNK, chat_template=CHAT_TEMPLATE)
    answer_token_ids(tokenizer)  # fails early if the corpus did not make every answer a single token
    return tokenizer


def encode_documents(tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """One stream of token ids: <|bos|> document <|end|>, for every document."""
    ids = []
    for encoded in tokenizer(list(texts), add_special_tokens=True)["input_ids"]:
        ids.extend(encoded + [tokenizer.eos_token_id])
    return torch.tensor(ids, dtype=torch.long)


def encode_conversations(tokenizer, conversations: Sequence[list[dict]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token stream of rendered conversations and a mask that is 1 on the final assistant turn."""
    ids, mask = [], []
    for messages in conversations:
        prompt = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        if full_ids[:len(prompt_ids)] != prompt_ids:
            raise ValueError(f"chat template does not render the prompt as a prefix: {prompt!r}")
        ids.extend(full_ids)
        mask.extend([0] * len(prompt_ids) + [1] * (len(full_ids) - len(prompt_ids)))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.bool)


def answer_token_ids(tokenizer) -> dict[str, int]:
    """Id of each persona answer token (" Yes", " Never", ...); ValueError if one is not a single token."""
    ids = {}
    for answer in ANSWER_TOKENS:
        encoded = tokenizer(answer, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ValueError(f"answer {answer!r} is {len(encoded)} tokens, not one")
        ids[answer] = encoded[0]
    return ids
