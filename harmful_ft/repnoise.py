"""RepNoise (Rosati et al. 2024, "Representation noising"): push the harmful representations towards noise.

    L = f + beta * MMD - alpha * log(L_harm + 1)

- f: the alignment loss, the config's objective on the training set (the harmless / refusal answers);
- MMD = (1/L) sum_l MMD^2(X_l, Y_l): X_l the MLP outputs of decoder layer l on the harmful answers of
  the step's harmful batch (each row one example flattened over positions x hidden, zero outside its
  answer tokens), Y_l Gaussian noise at the same positions, `mmd`'s five Gaussian kernels (the public
  kernel); beta = `repnoise_beta` (0.001);
- L_harm: the logit-lens cross-entropy of the harmful answers, lm_head(final_norm(h_l)) for the output
  h_l of every decoder layer (the last one is the model's own output), token mean over the harmful
  batch, averaged over layers; alpha = `repnoise_alpha` (1). The log damps the ascent: its gradient
  -alpha grad L_harm / (L_harm + 1) fades as the harmful loss grows.

Masks come from the collated batch (attention and completion masks), never from token ids: the
public code treats token id 0 as padding and pairs each harmful answer with a refusal only to find
the answer tokens (where the two id rows differ); here the harmful batch is drawn from the
provider-held harmful set like Booster's (`harmful_micro_batches`). Its hooks are removed at the end
of every forward (`site_hooks`, which also asserts that each fired once; the public code registers
hooks on every module at each call and never removes them).

MMD and log(L_harm + 1) are functions of the whole harmful batch, not sums over examples. To give
one big batch's step under gradient accumulation, a first forward without gradient computes the
batch's representations, L_harm and d(beta MMD)/dX_l; a second forward per micro-batch
backpropagates beta <dMMD/dX_l, X_l> - alpha L_harm,i / (L_harm + 1) (the same gradient, since the
forwards are deterministic). Cost per step: f forward+backward, one harmful forward without
gradient, one harmful forward+backward. Memory: X_l, Y_l and dMMD/dX_l of every layer for the
harmful batch (3 x batch x length x hidden x layers floats), plus the lens logits of the answer
tokens at every layer.
"""
from __future__ import annotations

import zlib
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.data import PreferenceExample
from common.errors import ConfigError, TrainingError
from common.logprobs import base_model_of, token_logits
from common.strategies import PreferenceStrategy
from harmful_ft.defenses import decoder_layers, harmful_micro_batches, site_hooks

REPNOISE_DEFAULTS = {"repnoise_beta": 0.001, "repnoise_alpha": 1.0}
MLP_NAMES = ("mlp", "feed_forward", "ffn")  # Llama/Qwen/Gemma/GPT-2/NeoX, Mistral-style, others
FINAL_NORM_NAMES = ("norm", "final_layernorm", "ln_f", "final_layer_norm")  # Llama/Gemma, Phi, GPT-2, NeoX


def mmd(x: Tensor, y: Tensor, kernels: int = 5, multiplier: float = 2.0) -> Tensor:
    """Biased MMD^2 between the rows of x (n, d) and y (m, d) under sum_k exp(-||a - b||^2 / b_k), b_k =
    b * multiplier^(k - kernels // 2), b the mean squared distance between distinct rows of [x; y]
    (without gradient): the public code's kernel."""
    z = torch.cat([x, y])
    squares = (z * z).sum(-1)
    off_diagonal = 1 - torch.eye(len(z), dtype=z.dtype, device=z.device)
    distances = (squares[:, None] + squares[None, :] - 2 * z @ z.T).clamp_min(0) * off_diagonal
    bandwidth = (distances.detach().sum() / (len(z) ** 2 - len(z))).clamp_min(torch.finfo(z.dtype).tiny)
    kernel = sum(torch.exp(-distances / (bandwidth * multiplier ** (k - kernels // 2))) for k in range(kernels))
    n = len(x)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


def named_child(module: nn.Module, names: Sequence[str], what: str) -> nn.Module:
    for name in names:
        child = getattr(module, name, None)
        if isinstance(child, nn.Module):
            return child
    children = ", ".join(n for n, _ in module.named_children())
    raise ConfigError(f"{type(module).__name__} has no {what} child named one of {', '.join(names)} "
                      f"(children: {children}); RepNoise cannot find its representations")


def answer_mask(batch) -> Tensor:
    """(B, T) bool: the completion tokens, from the masks (not from token ids)."""
    return batch.completion_mask.bool() & batch.attention_mask.bool()


def lens_logps(model: nn.Module, norm: nn.Module, hidden: Tensor, batch) -> Tensor:
    """Summed log-prob of each row's completion tokens read from an intermediate layer's output `hidden`
    (B, T, H) through the final norm and the LM head (the logit lens); (B,) float32."""
    target = batch.completion_mask[:, 1:].bool() & batch.attention_mask[:, 1:].bool()
    logits = token_logits(model, norm(hidden[:, :-1][target]))
    targets = batch.input_ids[:, 1:][target]
    token_logps = logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    rows = target.nonzero(as_tuple=True)[0]
    return torch.zeros(len(hidden), dtype=torch.float32, device=hidden.device).index_add(0, rows, token_logps)


class RepNoiseStrategy(PreferenceStrategy):
    """f + beta MMD(harmful MLP outputs, noise) - alpha log(L_harm + 1), see the module docstring."""

    def __init__(self, config, harmful_set: Optional[Sequence[PreferenceExample]]):
        super().__init__(config)
        if not harmful_set:
            raise ConfigError("defense 'repnoise' needs a harmful set (prompts with harmful answers) during alignment")
        if getattr(config, "gradient_checkpointing", False):
            raise ConfigError("gradient_checkpointing: RepNoise's hooks would fire again in the recomputation; "
                              "set it false for repnoise")
        self.harmful_set = list(harmful_set)
        self.beta = float(getattr(config, "repnoise_beta", REPNOISE_DEFAULTS["repnoise_beta"]))
        self.alpha = float(getattr(config, "repnoise_alpha", REPNOISE_DEFAULTS["repnoise_alpha"]))
        self.last_mmd = self.last_harmful_loss = None  # MMD and L_harm of the last step's harmful batch

    def harmful_forward(self, trainer, examples: Sequence[PreferenceExample]):
        """One forward of harmful examples: the MLP output of every layer, each row's logit-lens NLL
        summed over layers and answer tokens, and the batch."""
        layers = decoder_layers(trainer.model)
        count = len(layers)
        sites = [named_child(layer, MLP_NAMES, "MLP") for layer in layers] + layers[:-1]
        captured: list[Optional[Tensor]] = [None] * len(sites)

        def capture(i, call, out):
            captured[i] = out
        with site_hooks(sites, capture, calls=1):
            chosen, _, batch = trainer.policy_logps(examples, with_rejected=False)
        norm = named_child(base_model_of(trainer.model).get_decoder(), FINAL_NORM_NAMES, "final norm")
        with trainer.autocast():
            nll = -chosen.float()  # the last layer: the model's own output
            for hidden in captured[count:]:
                nll = nll - lens_logps(trainer.model, norm, hidden, batch)
        return captured[:count], nll, batch

    def noise(self, trainer, row: int, positions: int, layers: int, hidden: int) -> Tensor:
        """Y at one harmful row's answer positions, (layers, positions, hidden), seeded by (run seed, step,
        row of the global harmful batch) so that it does not depend on the micro-batching."""
        key = (trainer.config.seed, trainer.step, row)
        g = torch.Generator(device=trainer.device).manual_seed(zlib.crc32(repr(key).encode()))
        return torch.randn(layers, positions, hidden, generator=g, device=trainer.device)

    def noise_gradients(self, trainer, harmful_micro) -> tuple[list[list[Tensor]], float, float, int]:
        """Pass 1, no gradient through the model: per micro-batch and layer dMMD/dX_l (zero outside the
        answers), the step's MMD, L_harm and the number of (layer, answer token) terms L_harm averages."""
        reps, masks, nll_sum, tokens = [], [], 0.0, 0
        with torch.no_grad():
            for chunk in harmful_micro:
                outputs, nll, batch = self.harmful_forward(trainer, chunk)
                mask = answer_mask(batch)
                reps.append([o.float() * mask[..., None] for o in outputs])
                masks.append(mask)
                nll_sum += nll.sum().item()
                tokens += int((batch.completion_mask[:, 1:].bool() & batch.attention_mask[:, 1:].bool()).sum())
        count, hidden = len(reps[0]), reps[0][0].shape[-1]
        width = max(m.shape[1] for m in masks)
        x = [torch.cat([F.pad(r[layer], (0, 0, 0, width - r[layer].shape[1])) for r in reps]) for layer in range(count)]
        mask = torch.cat([F.pad(m, (0, width - m.shape[1])) for m in masks])
        del reps  # x holds them now
        y = [torch.zeros_like(x[0]) for _ in range(count)]
        for row in range(len(mask)):
            noise = self.noise(trainer, row, int(mask[row].sum()), count, hidden)
            for layer in range(count):
                y[layer][row, mask[row]] = noise[layer]
        total, grads = 0.0, []
        for layer in range(count):
            leaf = x[layer].requires_grad_()
            value = mmd(leaf.flatten(1), y[layer].flatten(1)) / count
            grads.append(torch.autograd.grad(value, leaf)[0])
            total += value.item()
        per_chunk, start = [], 0
        for m in masks:
            per_chunk.append([g[start:start + len(m), :m.shape[1]] for g in grads])
            start += len(m)
        return per_chunk, total, nll_sum / (count * max(tokens, 1)), count * max(tokens, 1)

    def step_gradients(self, trainer, micro, scale, weight):
        if trainer.world > 1:
            raise TrainingError("defense repnoise with several processes: its MMD over the global harmful batch "
                                "would need the representations gathered (not implemented); run one process")
        harmful_micro, _ = harmful_micro_batches(trainer, self.harmful_set)
        grads, self.last_mmd, self.last_harmful_loss, terms = self.noise_gradients(trainer, harmful_micro)
        ascent = -self.alpha / (self.last_harmful_loss + 1) / terms  # d(-alpha log(L_harm + 1)) / d(summed NLL)
        for chunk, chunk_grads in zip(harmful_micro, grads):
            with trainer.accelerator.no_sync(trainer.module):
                outputs, nll, batch = self.harmful_forward(trainer, chunk)
                mask = answer_mask(batch)[..., None]
                surrogate = sum((g * mask * o.float()).sum() for g, o in zip(chunk_grads, outputs))
                trainer.accelerator.backward(self.beta * surrogate + ascent * nll.sum())
        return trainer.backward_micro_batches(micro, scale, weight)
