"""H3Fusion mechanics: a mixture of aligned experts built from one base model and three LoRAs (helpful,
harmless, honest), with a trained top-k router per decoder layer.

- Expert e of a layer is the base MLP with each projection W replaced by W + (alpha/r) B_e A_e, the
  delta of LoRA e (the public code merged B A without alpha/r, so experts were off by that factor).
- The layer's MLP becomes `MoEMLP`: a router (linear, hidden -> experts) scores the experts per token;
  the top k are mixed with their softmax probabilities renormalized over the k. With identical experts
  the mixture is that expert, whatever the router says.
- Fusion fine-tuning trains the routers only (base and experts frozen) on the language-model loss plus
  `gate_coeff` x the gate loss, the Switch-Transformer balance term E sum_e f_e P_e per layer (f_e: the
  share of the tokens' top-k slots that went to e; P_e: e's mean router probability), which keeps the
  router from sending every token to one expert. The public code never trained its routers.
Experts are dense copies of the MLP (memory: experts x the MLP weights per layer); every expert runs on
every token, which is exact and simple at the tiny model's size.
"""
from __future__ import annotations

import copy
from typing import Iterable, Sequence

import torch
from torch import nn

from common.logprobs import base_model_of

PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


def adapter_deltas(peft_model, adapter: str = "default") -> dict[str, torch.Tensor]:
    """{"<layer index>.<projection>": (alpha/r) B A} of a peft LoRA model's MLP projections."""
    config = peft_model.peft_config[adapter]
    deltas = {}
    for name, module in peft_model.named_modules():
        if not hasattr(module, "lora_A") or adapter not in module.lora_A:
            continue
        parts = name.split(".")
        if parts[-1] in PROJECTIONS and "layers" in parts:
            r = module.r[adapter]
            alpha = config.alpha_pattern.get(parts[-1], config.lora_alpha)
            scaling = alpha / r
            delta = scaling * module.lora_B[adapter].weight @ module.lora_A[adapter].weight
            deltas[f"{parts[parts.index('layers') + 1]}.{parts[-1]}"] = delta.detach()
    if not deltas:
        raise ValueError("the adapter has no LoRA on the MLP projections (target gate_proj, up_proj, down_proj)")
    return deltas


def expert_mlp(mlp: nn.Module, layer: int, deltas: dict[str, torch.Tensor]) -> nn.Module:
    expert = copy.deepcopy(mlp)
    with torch.no_grad():
        for projection in PROJECTIONS:
            delta = deltas.get(f"{layer}.{projection}")
            if delta is not None:
                getattr(expert, projection).weight.add_(delta.to(getattr(expert, projection).weight))
    return expert.requires_grad_(False)


class MoEMLP(nn.Module):
    def __init__(self, experts: Sequence[nn.Module], hidden_size: int, top_k: int):
        super().__init__()
        if not 1 <= top_k <= len(experts):
            raise ValueError(f"top_k {top_k} must be between 1 and the number of experts ({len(experts)})")
        self.experts = nn.ModuleList(experts)
        self.router = nn.Linear(hidden_size, len(experts), bias=False)
        nn.init.normal_(self.router.weight, std=0.02)
        self.top_k = top_k
        self.router_probs = self.top_indices = None  # of the last forward, for the gate loss

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(self.router(x).to(torch.promote_types(x.dtype, torch.float32)), dim=-1)  # (..., E)
        top_probs, top_indices = probs.topk(self.top_k, dim=-1)
        weights = (top_probs / top_probs.sum(-1, keepdim=True)).to(x.dtype)
        outputs = torch.stack([expert(x) for expert in self.experts], dim=-2)  # (..., E, H)
        chosen = outputs.gather(-2, top_indices[..., None].expand(*top_indices.shape, x.shape[-1]))
        self.router_probs, self.top_indices = probs, top_indices
        return (weights[..., None] * chosen).sum(-2)

    def gate_loss(self) -> torch.Tensor:
        num_experts = self.router_probs.shape[-1]
        probs = self.router_probs.reshape(-1, num_experts)
        slots = nn.functional.one_hot(self.top_indices.reshape(-1, self.top_k), num_experts).float().sum(1)
        dispatch = slots.mean(0) / self.top_k
        return num_experts * (dispatch * probs.mean(0)).sum()


def build_h3fusion(model, deltas: Sequence[dict[str, torch.Tensor]], top_k: int = 2, seed: int = 0):
    """Replace every decoder layer's MLP of `model` (in place) by a MoEMLP of the experts made from each
    LoRA's deltas; only the routers are trainable afterwards. Returns the model."""
    model.requires_grad_(False)
    decoder = base_model_of(model).get_decoder()
    hidden_size = base_model_of(model).config.hidden_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for index, layer in enumerate(decoder.layers):
            experts = [expert_mlp(layer.mlp, index, d) for d in deltas]
            weight = next(layer.mlp.parameters())
            layer.mlp = MoEMLP(experts, hidden_size, top_k).to(device=weight.device, dtype=weight.dtype)
    return model


def moe_layers(model) -> list[MoEMLP]:
    return [m for m in model.modules() if isinstance(m, MoEMLP)]


def fusion_loss(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, gate_coeff: float) -> torch.Tensor:
    """Next-token cross-entropy of the MoE model plus gate_coeff x the mean gate loss of its layers."""
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    lm_loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    gate = torch.stack([layer.gate_loss() for layer in moe_layers(model)]).mean()
    return lm_loss + gate_coeff * gate


def train_routers(model, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *, lr: float = 1e-3,
                  gate_coeff: float = 0.01) -> list[float]:
    """One Adam step per (input_ids, attention_mask) batch on the routers; the losses, in order."""
    routers = [p for layer in moe_layers(model) for p in layer.router.parameters()]
    optimizer = torch.optim.Adam(routers, lr=lr)
    model.train()
    losses = []
    for input_ids, attention_mask in batches:
        optimizer.zero_grad()
        loss = fusion_loss(model, input_ids, attention_mask, gate_coeff)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
