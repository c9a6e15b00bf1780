"""H3Fusion mechanics: a mixture of aligned experts built from one base model and three LoRAs (helpful,
harmless, honest), with a trained top-k router per decoder layer.

- Expert e of a layer is the base MLP with each projection W replaced by W + (alpha/r) B_e A_e, the
  delta of LoRA e (the public code merged B A without alpha/r, so experts were off by that factor).
- The layer's MLP becomes `MoEMLP`: a router (linear, hidden -> experts, at least float32) scores the experts per
  token; the top k are mixed with their softmax probabilities renormalized over the k. With identical
  experts the mixture is that expert, whatever the router says.
- Fusion fine-tuning trains the routers only (base and experts frozen) through the shared trainer
  (`RouterStrategy`): the language-model loss plus `gate_coeff` x a gate loss, one of
  - `source` (the paper's): each training example comes from one expert's data set; its router
    probabilities averaged over real tokens and layers should put that expert first:
    -log mean_p[source] (the public code applied cross-entropy to these probabilities as if they were
    logits, a second softmax);
  - `balance`: the Switch-Transformer balance term E sum_e f_e P_e per layer (f_e: the share of the
    real tokens' top-k slots that went to e; P_e: e's mean router probability; 1 when balanced), which
    only keeps the router from sending every token to one expert.
  The public code never trained its routers (no gradient reached them).
- The merge baseline: the base with the mean of the experts' deltas added (`add_deltas`).
Experts are dense copies of the MLP (memory: experts x the MLP weights per layer); every expert runs on
every token, which is exact and simple.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
from torch import nn

from common.logprobs import SequenceLogProbs, base_model_of
from common.losses import make_loss
from common.strategies import StepStrategy, StepTerms

PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
GATE_LOSSES = ("source", "balance")


class LowRank(NamedTuple):
    """A weight delta `up @ down` kept as its factors (float32 or wider, on the CPU): a 7B model's dense
    MLP deltas would take 17 GB per expert."""

    up: torch.Tensor  # (out, r)
    down: torch.Tensor  # (r, in)

    def dense(self, device=None) -> torch.Tensor:
        return self.up.to(device) @ self.down.to(device)


Deltas = dict[str, LowRank]  # "<layer index>.<projection>" -> delta


def wide(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` detached in float32 at least (float64 stays float64)."""
    return tensor.detach().to(torch.promote_types(tensor.dtype, torch.float32))


def adapter_deltas(peft_model, adapter: str = "default") -> Deltas:
    """{"<layer index>.<projection>": (alpha/r) B A} of a peft LoRA model's MLP projections, with peft's
    own scaling of each module (alpha/r, or its rank / alpha patterns)."""
    deltas = {}
    for name, module in peft_model.named_modules():
        if not hasattr(module, "lora_A") or adapter not in module.lora_A:
            continue
        parts = name.split(".")
        if parts[-1] in PROJECTIONS and "layers" in parts:
            up, down = (wide(m[adapter].weight).cpu() for m in (module.lora_B, module.lora_A))
            deltas[f"{parts[parts.index('layers') + 1]}.{parts[-1]}"] = LowRank(module.scaling[adapter] * up, down)
    if not deltas:
        raise ValueError("the adapter has no LoRA on the MLP projections (target gate_proj, up_proj, down_proj)")
    return deltas


def load_expert_deltas(base, adapter_dirs: Sequence[str | Path]) -> tuple[nn.Module, list[Deltas]]:
    """The deltas of each saved peft adapter (loaded onto `base` one after the other) and `base` back
    without any LoRA layer."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(base, str(adapter_dirs[0]), adapter_name="expert0")
    for i, path in enumerate(adapter_dirs[1:], start=1):
        model.load_adapter(str(path), adapter_name=f"expert{i}")
    deltas = [adapter_deltas(model, f"expert{i}") for i in range(len(adapter_dirs))]
    return model.unload(), deltas


def mean_deltas(deltas: Sequence[Deltas]) -> Deltas:
    """The merge baseline's delta: the mean of the experts' deltas (an expert without a key adds 0), as
    one factor pair of rank sum(r_e): [B_1 | ... | B_n] / n @ [A_1; ...; A_n] = mean_e B_e A_e."""
    keys = sorted({k for d in deltas for k in d})
    return {k: LowRank(torch.cat([d[k].up for d in deltas if k in d], 1) / len(deltas),
                       torch.cat([d[k].down for d in deltas if k in d], 0)) for k in keys}


@torch.no_grad()
def add_mlp_deltas(mlp: nn.Module, layer: int, deltas: Deltas) -> None:
    for projection in PROJECTIONS:
        delta = deltas.get(f"{layer}.{projection}")
        if delta is not None:
            weight = getattr(mlp, projection).weight
            weight.copy_((wide(weight) + delta.dense(weight.device)).to(weight.dtype))


def add_deltas(model, deltas: Deltas):
    """`model` (in place) with every decoder layer's MLP projections moved by the deltas; returns it."""
    for index, layer in enumerate(base_model_of(model).get_decoder().layers):
        add_mlp_deltas(layer.mlp, index, deltas)
    return model


def expert_mlp(mlp: nn.Module, layer: int, deltas: Deltas) -> nn.Module:
    expert = copy.deepcopy(mlp)
    add_mlp_deltas(expert, layer, deltas)
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
        logits = self.router(x.to(self.router.weight.dtype))
        probs = torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)  # (..., E)
        top_probs, top_indices = probs.topk(self.top_k, dim=-1)
        weights = (top_probs / top_probs.sum(-1, keepdim=True)).to(x.dtype)
        outputs = torch.stack([expert(x) for expert in self.experts], dim=-2)  # (..., E, H)
        chosen = outputs.gather(-2, top_indices[..., None].expand(*top_indices.shape, x.shape[-1]))
        self.router_probs, self.top_indices = probs, top_indices
        return (weights[..., None] * chosen).sum(-2)

    def gate_loss(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The balance term of the last forward over its tokens where `mask` (B, T) is true (all without)."""
        num_experts = self.router_probs.shape[-1]
        probs, top = self.router_probs, self.top_indices
        if mask is not None:
            probs, top = probs[mask], top[mask]
        probs, top = probs.reshape(-1, num_experts), top.reshape(-1, self.top_k)
        dispatch = nn.functional.one_hot(top, num_experts).float().sum(1).mean(0) / self.top_k
        return num_experts * (dispatch * probs.mean(0)).sum()

    def mean_probs(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, E) router probabilities of the last forward averaged over each sequence's real tokens."""
        weights = mask.float()[..., None]
        return (self.router_probs * weights).sum(1) / weights.sum(1).clamp(min=1)


def build_h3fusion(model, deltas: Sequence[Deltas], top_k: int = 2, seed: int = 0):
    """Replace every decoder layer's MLP of `model` (in place) by a MoEMLP of the experts made from each
    LoRA's deltas; only the routers (seeded; float32, or the model's dtype when wider) are trainable
    afterwards. Returns the model."""
    model.requires_grad_(False)
    decoder = base_model_of(model).get_decoder()
    hidden_size = base_model_of(model).config.hidden_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for index, layer in enumerate(decoder.layers):
            experts = [expert_mlp(layer.mlp, index, d) for d in deltas]
            weight = next(layer.mlp.parameters())
            layer.mlp = MoEMLP(experts, hidden_size, top_k).to(weight.device)
            layer.mlp.router.to(torch.promote_types(weight.dtype, torch.float32))
    return model


def moe_layers(model) -> list[MoEMLP]:
    return [m for m in model.modules() if isinstance(m, MoEMLP)]


def gate_terms(layers: Sequence[MoEMLP], mask: torch.Tensor, kind: str, sources: torch.Tensor) -> torch.Tensor:
    """(B,) gate loss of the last forward's examples: `source` per example, `balance` (a batch term) the
    same for every example; averaged over the layers."""
    if kind == "source":
        mean = torch.stack([layer.mean_probs(mask) for layer in layers]).mean(0)  # (B, E)
        return -torch.log(mean.gather(1, sources[:, None]).squeeze(1).clamp(min=1e-12))
    balance = torch.stack([layer.gate_loss(mask) for layer in layers]).mean()
    return balance.expand(mask.shape[0])


def router_state(model) -> dict[str, torch.Tensor]:
    """{"<layer>.router.weight": a copy of the weight} of the MoE layers, for safetensors."""
    return {f"{i}.router.weight": layer.router.weight.detach().cpu().clone()
            for i, layer in enumerate(moe_layers(model))}


@torch.no_grad()
def load_router_state(model, state: dict[str, torch.Tensor]) -> None:
    layers = moe_layers(model)
    if sorted(state) != sorted(f"{i}.router.weight" for i in range(len(layers))):
        raise ValueError(f"router weights for {len(state)} layers, the model has {len(layers)} MoE layers")
    for i, layer in enumerate(layers):
        layer.router.weight.copy_(state[f"{i}.router.weight"])


class RouterStrategy(StepStrategy):
    """Fusion fine-tuning over the shared trainer: the config's SFT loss of each example plus
    `gate_coeff` x its gate term (`gate_terms`); `sources[i]` is the expert whose data set training
    example i comes from (the `source` gate loss)."""

    metrics = ("lm_loss", "gate_loss")

    def __init__(self, config, sources: Sequence[int]):
        self.loss = make_loss(config)
        self.gate_coeff, self.kind = config.gate_coeff, config.gate_loss
        self.sources = torch.tensor(list(sources), dtype=torch.long)

    def wrap(self, model: nn.Module) -> nn.Module:
        return SequenceLogProbs(model)  # unpacked: the gate loss reads the (B, T) router probabilities

    def losses(self, trainer, indices: Sequence[int]) -> StepTerms:
        examples = [trainer.train_set[i] for i in indices]
        chosen, _, batch = trainer.policy_logps(examples, with_rejected=False)
        lm, _, _ = self.loss(chosen, chosen_lengths=batch.completion_lengths.float())
        gate = gate_terms(moe_layers(trainer.model), batch.attention_mask.bool(), self.kind,
                          self.sources[list(indices)].to(chosen.device))
        return StepTerms(lm + self.gate_coeff * gate, {"lm_loss": lm.detach(), "gate_loss": gate.detach()},
                         batch.attention_mask.sum())
