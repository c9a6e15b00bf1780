"""FSDP2 (`torch.distributed.fsdp.fully_shard`) for the shared trainer: `fsdp: true` in a TrainConfig.

We shard the model ourselves instead of through accelerate's FSDP plugin, which does not engage on
CPU: one code path then runs on 1 process, under `torchrun --nproc_per_node N` on CPU (gloo) and on
GPUs (NCCL), and the suite tests it. Each decoder layer is one FSDP unit (found by role: the model's
`_no_split_modules` classes, else the decoder's layer list); the root unit is the module the trainer
calls (the strategy's wrapper), which holds the rest (embeddings, final norm, LM head). With
precision bf16 the unsharded parameters are bf16 and gradients are reduced in fp32 onto fp32 master
shards (MixedPrecisionPolicy). Gradients are reduce-scattered after every micro-batch (no
accumulation of unsharded gradients: memory stays sharded), which sums to the same step.

Checkpoints are sharded (torch.distributed.checkpoint: each process writes its shards into the same
directory); the final model is gathered on rank 0 as one full state dict.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from common.logprobs import base_model_of

MODEL_STATE = "model"
OPTIMIZER_STATE = "optimizer"


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a (peft-wrapped) transformers model, by role not by class."""
    base = base_model_of(model)
    names = set(getattr(base, "_no_split_modules", None) or ())
    layers = [m for m in base.modules() if type(m).__name__ in names]
    if not layers and hasattr(base, "get_decoder"):
        layers = list(getattr(base.get_decoder(), "layers", []))
    return layers


def ensure_process_group(device: torch.device) -> None:
    """fully_shard needs a process group; a single process (python -m ...) gets a 1-rank one."""
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)


def shard(root: nn.Module, model: nn.Module, device: torch.device, *, bf16: bool) -> None:
    """fully_shard each decoder layer of `model`, then `root` (the module whose forward runs `model`)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    ensure_process_group(device)
    model.to(device)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
        else MixedPrecisionPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(root, mesh=mesh, mp_policy=policy)


@contextlib.contextmanager
def full_parameters(root: nn.Module):
    """Every FSDP unit under `root` unsharded, so code may call any submodule directly (study callbacks
    call `trainer.model`, its LM head, `generate`); resharded afterwards. Needs room for the full model."""
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in root.modules() if isinstance(m, FSDPModule)]
    for unit in units:
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()


def full_state_dict(model: nn.Module) -> dict:
    """The full (gathered) state dict on rank 0, on CPU; empty on the other ranks. Every rank calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(ignore_frozen_params=True)  # LoRA: the adapters; frozen weights come from the model


def save_sharded(model: nn.Module, optimizer, path: Path) -> None:
    """Trainable weights and optimizer state, each process its shards (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer, options=_options())
    dcp.save({MODEL_STATE: model_state, OPTIMIZER_STATE: optimizer_state}, checkpoint_id=str(path))


def load_sharded(model: nn.Module, optimizer, path: Path) -> None:
    """Load what `save_sharded` wrote, resharded onto this run's processes (a collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer, options=_options())
    state = {MODEL_STATE: model_state, OPTIMIZER_STATE: optimizer_state}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state[MODEL_STATE], optim_state_dict=state[OPTIMIZER_STATE],
                   options=_options())
