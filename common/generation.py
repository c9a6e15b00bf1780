"""Batched sampling with the chat template (scorers and judges of the responses: common.scorers)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from common.data import Prompt, encode_prompt


@torch.no_grad()
def generate(model, tokenizer, prompts: Sequence[Prompt], *, max_new_tokens: int = 128, temperature: float = 1.0,
             top_p: float = 1.0, top_k: int = 0, seed: int = 0, batch_size: int = 16,
             use_chat_template: Optional[bool] = None, progress: bool = True) -> list[str]:
    """One sampled response per prompt (greedy when temperature == 0), in the order of `prompts`.

    Prompts are encoded as for training (chat template when the tokenizer has one), sorted by length
    and left-padded in batches; batch k is sampled under seed `seed + k`, so a config gives the same
    responses on every run.
    """
    from tqdm.auto import tqdm

    encoded = [encode_prompt(tokenizer, p, use_chat_template) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k} if temperature > 0 \
        else {"do_sample": False}
    outputs: list[str] = [""] * len(prompts)
    starts = range(0, len(order), batch_size)
    for k, start in enumerate(tqdm(starts, desc="generate", unit="batch", disable=not progress)):
        chunk = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):  # left padding: every row's last prompt token is at the end
            input_ids[row, width - len(encoded[i]):] = torch.tensor(encoded[i])
            attention_mask[row, width - len(encoded[i]):] = 1
        torch.manual_seed(seed + k)
        generated = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                   max_new_tokens=max_new_tokens, pad_token_id=pad_id, **sampling)
        for row, i in enumerate(chunk):
            outputs[i] = tokenizer.decode(generated[row, width:], skip_special_tokens=True).strip()
    return outputs
