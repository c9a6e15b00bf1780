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

    Prompts are encoded as for training (chat template when the tokenizer has one); sampling is
    `sample_ids`'s (length-sorted, left-padded batches, batch k under seed `seed + k`), so a config
    gives the same responses on every run.
    """
    encoded = [encode_prompt(tokenizer, p, use_chat_template) for p in prompts]
    generated = sample_ids(model, tokenizer, encoded, max_new_tokens=max_new_tokens, temperature=temperature,
                           top_p=top_p, top_k=top_k, seed=seed, batch_size=batch_size, progress=progress)
    return [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in generated]


@torch.no_grad()
def sample_ids(model, tokenizer, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int = 128,
               temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, seed: int = 0, batch_size: int = 16,
               progress: bool = True) -> list[list[int]]:
    """The token ids `model.generate` adds after each tokenized prompt (trailing padding of rows that
    stopped early included), in the order of `prompt_ids`.

    Prompts are sorted by length and left-padded in batches; batch k is sampled under seed `seed + k`.
    """
    from tqdm.auto import tqdm

    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k} if temperature > 0 \
        else {"do_sample": False}
    outputs: list[list[int]] = [[] for _ in prompt_ids]
    starts = range(0, len(order), batch_size)
    for k, start in enumerate(tqdm(starts, desc="generate", unit="batch", disable=not progress)):
        chunk = order[start:start + batch_size]
        width = max(len(prompt_ids[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):  # left padding: every row's last prompt token is at the end
            input_ids[row, width - len(prompt_ids[i]):] = torch.tensor(prompt_ids[i])
            attention_mask[row, width - len(prompt_ids[i]):] = 1
        torch.manual_seed(seed + k)
        generated = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                   max_new_tokens=max_new_tokens, pad_token_id=pad_id, **sampling)
        for row, i in enumerate(chunk):
            outputs[i] = generated[row, width:].tolist()
    return outputs
