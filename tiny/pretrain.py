"""Tiny Llama models: their shape, and seeded, deterministic pre-training and chat fine-tuning on packed rows."""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM

from tiny.tokenizer import encode_conversations, encode_documents


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of a tiny Llama model; the vocabulary comes from the tokenizer."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: Optional[int] = None  # None: as many as num_heads (no grouped-query attention)
    intermediate_size: int = 384
    max_position_embeddings: int = 256
    rms_norm_eps: float = 1e-5

    def to_config(self, tokenizer) -> LlamaConfig:
        """Untied embeddings (the unembedding matrix is its own parameter) and no dropout."""
        return LlamaConfig(vocab_size=len(tokenizer), hidden_size=self.hidden_size,
                           intermediate_size=self.intermediate_size, num_hidden_layers=self.num_layers,
                           num_attention_heads=self.num_heads,
                           num_key_value_heads=self.num_kv_heads or self.num_heads,
                           max_position_embeddings=self.max_position_embeddings, rms_norm_eps=self.rms_norm_eps,
                           tie_word_embeddings=False, attention_dropout=0.0, bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


@contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Seed torch and turn on deterministic kernels, restoring the caller's setting afterwards."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def chunks(stream: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Cut a token stream into rows of seq_len (the remainder is dropped)."""
    n_rows = len(stream) // seq_len
    if n_rows == 0:
        raise ValueError(f"only {len(stream)} tokens: fewer than one sequence of {seq_len}")
    return stream[:n_rows * seq_len].view(n_rows, seq_len)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak learning rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def _train_packed(model: LlamaForCausalLM, ids: torch.Tensor, loss_mask: Optional[torch.Tensor], *,
                  num_tokens: int, seed: int, batch_size: int, seq_len: int, lr: float, weight_decay: float,
                  warmup_frac: float, desc: str, show_progress: bool) -> None:
    """AdamW on rows of packed sequences; only tokens where loss_mask is 1 count (all when None).

    Rows are visited in seeded random order, epoch after epoch, until num_tokens tokens have been fed.
    """
    rows = chunks(ids, seq_len)
    labels = rows.clone()
    if loss_mask is not None:
        labels[~chunks(loss_mask, seq_len)] = -100
    steps = max(1, math.ceil(num_tokens / (batch_size * seq_len)))
    generator = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(len(rows), generator=generator)
                       for _ in range(math.ceil(steps * batch_size / len(rows)))])
    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices only: not the norms' gains
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    warmup = max(1, int(warmup_frac * steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, steps, warmup))
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not show_progress, leave=False)
    for step in bar:
        batch = order[step * batch_size:(step + 1) * batch_size]
        loss = model(input_ids=rows[batch], labels=labels[batch]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()


def pretrain_tiny_model(spec: TinyModelSpec, tokenizer, texts: Sequence[str], *, num_tokens: int, seed: int = 0,
                        batch_size: int = 16, seq_len: int = 128, lr: float = 3e-3, weight_decay: float = 0.1,
                        warmup_frac: float = 0.05, show_progress: bool = True) -> LlamaForCausalLM:
    """A freshly initialised tiny Llama trained with causal-LM loss on `num_tokens` tokens of `texts`.

    Documents are packed into rows of seq_len tokens (<|bos|> text <|end|>, one after the other).
    Same arguments on the same machine and thread count -> bitwise-same weights.
    """
    with _deterministic(seed):
        model = LlamaForCausalLM(spec.to_config(tokenizer))
        _train_packed(model, encode_documents(tokenizer, texts), None, num_tokens=num_tokens, seed=seed,
                      batch_size=batch_size, seq_len=seq_len, lr=lr, weight_decay=weight_decay,
                      warmup_frac=warmup_frac, desc="pre-train", show_progress=show_progress)
    return model


def finetune_chat_model(model: LlamaForCausalLM, tokenizer, conversations: Sequence[list[dict]], *,
                        num_tokens: int, seed: int = 0, batch_size: int = 16, seq_len: int = 128,
                        lr: float = 1e-3, weight_decay: float = 0.0, warmup_frac: float = 0.05,
                        show_progress: bool = True) -> LlamaForCausalLM:
    """Supervised fine-tuning in place on chat-formatted conversations, loss on the last assistant turn."""
    ids, mask = encode_conversations(tokenizer, conversations)
    with _deterministic(seed):
        _train_packed(model, ids, mask, num_tokens=num_tokens, seed=seed, batch_size=batch_size,
                      seq_len=seq_len, lr=lr, weight_decay=weight_decay, warmup_frac=warmup_frac,
                      desc="chat fine-tune", show_progress=show_progress)
    return model
