"""Measurements of a built tiny model (stored in BUILD_INFO.json and printed by `python -m tiny`)."""
from __future__ import annotations

from typing import Sequence

import torch
from transformers import LlamaForCausalLM

from tiny.pretrain import chunks
from tiny.tokenizer import answer_token_ids, encode_documents


@torch.no_grad()
def heldout_loss(model: LlamaForCausalLM, tokenizer, texts: Sequence[str], seq_len: int = 128) -> float:
    """Mean next-token cross-entropy (nats) on packed held-out documents."""
    rows = chunks(encode_documents(tokenizer, texts), seq_len)
    total = sum(model(input_ids=rows[i:i + 32], labels=rows[i:i + 32]).loss.item() * len(rows[i:i + 32])
                for i in range(0, len(rows), 32))
    return total / len(rows)


def unigram_entropy(tokenizer, texts: Sequence[str]) -> float:
    """Entropy (nats) of the token frequencies of `texts`: the loss of a model that ignores context."""
    counts = torch.bincount(encode_documents(tokenizer, texts), minlength=len(tokenizer)).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


@torch.no_grad()
def answer_token_mass(model: LlamaForCausalLM, tokenizer, prompts: Sequence[str], *, seed: int = 0,
                      add_special_tokens: bool = True) -> dict:
    """Mean next-token probability after the prompts: of each answer token, of all nine, of nine random tokens."""
    answer_ids = answer_token_ids(tokenizer)
    others = torch.tensor(sorted(set(range(len(tokenizer))) - set(answer_ids.values())))
    random_ids = others[torch.randperm(len(others), generator=torch.Generator().manual_seed(seed))[:len(answer_ids)]]
    probs = torch.stack([
        model(input_ids=torch.tensor([tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"]]))
        .logits[0, -1].softmax(-1) for p in prompts]).mean(0)
    return {"answer_tokens": probs[list(answer_ids.values())].sum().item(),
            "random_tokens": probs[random_ids].sum().item(),
            "per_answer_token": {a: round(probs[i].item(), 4) for a, i in answer_ids.items()}}


@torch.no_grad()
def sample_chat(model: LlamaForCausalLM, tokenizer, user_messages: Sequence[str], *, seed: int = 0,
                temperature: float = 1.0, max_new_tokens: int = 48) -> list[str]:
    """One sampled reply per user message, in one left-padded batch (full-vocabulary sampling)."""
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": m}], add_generation_prompt=True,
                                             tokenize=False) for m in user_messages]
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues every row from its last column
    try:
        batch = tokenizer(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = padding_side
    torch.manual_seed(seed)
    out = model.generate(**batch, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                         max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
