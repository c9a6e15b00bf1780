"""Summed log-probabilities of completion tokens: one forward, memory-lean, any padding side.

The usual recipe (logits -> log_softmax -> gather) materialises two (B, T, V) tensors: the logits
and their log-softmax copy. Here the decoder returns hidden states, the unembedding is applied only
at the positions that predict a completion token, and log p(token) = logit[token] - logsumexp(logits)
is taken in float32 on those N_tok rows. With prompts longer than responses (the common case) that
is a small fraction of B*T*V. With `pack=True` (the config's `pack_sequences`) a batch of short rows of
unequal length is run as one padding-free packed row where that is cheaper (`packing_is_cheaper`), so
padding costs no decoder work. With the config's `share_prompt`, a preference pair is one row (prompt,
chosen, rejected) whose prompt is computed once (`shared_prompt_logprobs`).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def position_ids_from_mask(attention_mask: Tensor) -> Tensor:
    """Positions counted over real tokens only, so left-padded rows see positions 0, 1, ... too."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def base_model_of(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (LoRA layers stay injected and active)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_hidden_states(model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Final (normed) hidden states (B, T, H) of a causal LM, without computing any logits."""
    base = base_model_of(model)
    out = base.get_decoder()(input_ids=input_ids, attention_mask=attention_mask,
                             position_ids=position_ids_from_mask(attention_mask), use_cache=False)
    return out.last_hidden_state


def token_logits(model: nn.Module, hidden: Tensor) -> Tensor:
    """Unembed selected hidden states (N, H) -> float32 logits (N, V), with the model's final scaling."""
    base = base_model_of(model)
    logits = base.get_output_embeddings()(hidden).float()
    # Model-specific output transforms that live in the LM head's forward (Gemma-2, Cohere).
    softcap = getattr(base.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    scale = getattr(base, "logit_scale", None)
    if isinstance(scale, (int, float)):
        logits = logits * scale
    return logits


# transformers derives a block-diagonal causal mask from position ids that restart (masking_utils) for these
# decoders; tests/common/test_logprobs.py checks each against per-row forwards.
PACKABLE = ("llama", "gemma2", "qwen2", "mistral")


def has_forward_hooks(model: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def packing_is_cheaper(model: nn.Module, attention_mask: Tensor) -> bool:
    """Whether one packed row of the N real tokens costs fewer decoder FLOPs than the padded (B, T) batch.

    Packing drops the padding's dense work (~2 x layer parameters per token) but the packed row's
    attention runs over all N tokens with a block-diagonal mask (4 x N x hidden per token), so it wins
    for short sequences (the common preference batch) and loses for few long ones.
    Never for a model with forward hooks: hooks that read or perturb (B, T, H) hidden states (Vaccine,
    RepNoise, FSDP's unsharding) expect the padded batch's shape, and only the model types in PACKABLE,
    whose attention masks are built from the packed position ids (tested against unpacked rows)."""
    base = base_model_of(model)
    if getattr(base.config, "model_type", None) not in PACKABLE or has_forward_hooks(model):
        return False
    config = base.config
    hidden = config.hidden_size
    dense = 2 * (4 * hidden * hidden + 3 * hidden * getattr(config, "intermediate_size", 4 * hidden))
    rows, length = attention_mask.shape
    n = int(attention_mask.sum())
    return rows > 1 and n * (dense + 4 * n * hidden) < rows * length * (dense + 4 * length * hidden)


def packed_hidden_states(model: nn.Module, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """Final hidden states (N, H) of the real tokens of a padded batch, computed as ONE row of the N
    tokens: positions restart at each sequence, and transformers turns the restarts into a block-diagonal
    causal mask (no padding computed)."""
    real = attention_mask.bool()
    positions = position_ids_from_mask(attention_mask)[real][None]
    out = base_model_of(model).get_decoder()(input_ids=input_ids[real][None], position_ids=positions,
                                             attention_mask=None, use_cache=False)
    return out.last_hidden_state[0]


def sequence_logprobs(model: nn.Module, input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor,
                      pack: bool = False) -> Tensor:
    """Summed log-prob of the completion tokens of each row: (B, T) inputs -> (B,) float32.

    `completion_mask[b, t]` is 1 where token t of row b belongs to the completion (it is predicted
    by position t - 1). Padding may be on either side: positions are derived from `attention_mask`.
    With `pack`, short rows are packed into one padding-free row where that is cheaper (packing_is_cheaper):
    the same numbers up to float rounding, which then depends on the batch's composition.
    """
    target_mask = completion_mask[:, 1:].bool() & attention_mask[:, 1:].bool()  # (B, T-1): t predicts t+1
    if pack and packing_is_cheaper(model, attention_mask):
        hidden = packed_hidden_states(model, input_ids, attention_mask)
        predicts = torch.zeros_like(attention_mask, dtype=torch.bool)
        predicts[:, :-1] = target_mask
        selected = hidden[predicts[attention_mask.bool()].to(hidden.device)]  # row-major, as below
    else:
        hidden = decoder_hidden_states(model, input_ids, attention_mask)
        # With layers split over GPUs (device_map) the last hidden states and the LM head may sit on
        # another device than the inputs: index where the tensors are, return on the inputs' device.
        selected = hidden[:, :-1][target_mask.to(hidden.device)]  # (N_tok, H): positions predicting completions
    rows = target_mask.nonzero(as_tuple=True)[0]
    targets = input_ids[:, 1:][target_mask]
    return summed_token_logprobs(model, selected, targets, rows, input_ids.shape[0]).to(input_ids.device)


def summed_token_logprobs(model: nn.Module, hidden: Tensor, targets: Tensor, rows: Tensor, num_rows: int) -> Tensor:
    """sum over i with rows[i] = r of log p(targets[i] | hidden[i]), for r < num_rows: (num_rows,) float32 on
    the LM head's device. Only these N rows are unembedded; log p = logit[token] - logsumexp(logits)."""
    logits = token_logits(model, hidden)
    targets, rows = targets.to(logits.device), rows.to(logits.device)
    token_logps = logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    return torch.zeros(num_rows, dtype=torch.float32, device=logits.device).index_add(0, rows, token_logps)


# Decoders that take a custom 4D attention mask as given (tests/common/test_logprobs.py checks each).
PROMPT_SHAREABLE = ("llama", "qwen2", "mistral", "gemma2")


def prompt_sharing_applies(model: nn.Module, length: int) -> bool:
    """Whether rows of `length` tokens can be scored with `shared_prompt_logprobs`: a decoder in
    PROMPT_SHAREABLE, no forward hooks (as for packing: hooks on hidden states expect a row per
    sequence), and no active sliding window shorter than the row (a custom mask replaces the window)."""
    config = base_model_of(model).config
    if getattr(config, "model_type", None) not in PROMPT_SHAREABLE or has_forward_hooks(model):
        return False
    window = getattr(config, "sliding_window", None)
    windowed = config.model_type == "gemma2" or getattr(config, "use_sliding_window", config.model_type == "mistral")
    return not (window and windowed and length > window)


def shared_prompt_logprobs(model: nn.Module, input_ids: Tensor, attention_mask: Tensor,
                           completion_mask: Tensor) -> Tensor:
    """Summed log-probs of chosen and rejected from rows (prompt, chosen, rejected, padding) that hold
    the prompt ONCE (`common.data.collate_shared_prompt`): (B, T) -> (2B,), chosen rows then rejected, as
    `sequence_logprobs` of the two rows (prompt, chosen) and (prompt, rejected) gives them.

    `completion_mask` is 1 on chosen and 2 on rejected tokens. The rejected tokens take positions
    P, P+1, ... (P: prompt length) and a 4D mask hides the chosen tokens from them, so each completion
    sees exactly its prompt and itself; the first rejected token is predicted from the prompt's last
    position. The prompt's decoder work is done once per pair instead of twice, which wins when prompts
    are long against the completions (docs/BENCHMARKS.md)."""
    rows, length = input_ids.shape
    real, chosen, rejected = attention_mask.bool(), completion_mask == 1, completion_mask == 2
    n_chosen = chosen.sum(-1, keepdim=True)
    positions = position_ids_from_mask(attention_mask) - rejected * n_chosen
    causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
    allowed = causal & real[:, None, :] & ~(rejected[:, :, None] & chosen[:, None, :])  # (B, T query, T key)
    allowed |= torch.eye(length, dtype=torch.bool, device=input_ids.device)  # padding queries: no empty row
    decoder = base_model_of(model).get_decoder()
    dtype = decoder.get_input_embeddings().weight.dtype  # additive, as eager attention (Gemma-2) adds the mask
    mask = torch.zeros(allowed.shape, dtype=dtype, device=input_ids.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    out = decoder(input_ids=input_ids, attention_mask=mask[:, None], position_ids=positions, use_cache=False)
    hidden = out.last_hidden_state
    # The hidden state that predicts each completion token: the previous position, except for the first
    # rejected token, which follows the prompt's last token.
    predictor = torch.arange(-1, length - 1, device=input_ids.device).expand(rows, length).clone()
    prompt_length = real.sum(-1) - n_chosen[:, 0] - rejected.sum(-1)
    first_rejected = prompt_length + n_chosen[:, 0]
    has_rejected = rejected.any(-1)
    row_index = torch.arange(rows, device=input_ids.device)
    predictor[row_index[has_rejected], first_rejected[has_rejected]] = prompt_length[has_rejected] - 1
    row, column = (chosen | rejected).nonzero(as_tuple=True)
    selected = hidden[row.to(hidden.device), predictor[row, column].to(hidden.device)]  # (N_tok, H), row-major
    sums = summed_token_logprobs(model, selected, input_ids[row, column], row + rows * rejected[row, column], 2 * rows)
    return sums.to(input_ids.device)


class SequenceLogProbs(nn.Module):
    """`sequence_logprobs` (or, with `shared=True`, `shared_prompt_logprobs`) as a module, so that DDP
    (accelerate) wraps the call that runs the forward."""

    def __init__(self, model: nn.Module, pack: bool = False):
        super().__init__()
        self.model = model
        self.pack = pack

    def forward(self, input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor,
                shared: bool = False) -> Tensor:
        if shared:
            return shared_prompt_logprobs(self.model, input_ids, attention_mask, completion_mask)
        return sequence_logprobs(self.model, input_ids, attention_mask, completion_mask, pack=self.pack)
