"""Process state for 1 CPU, 1 GPU or N processes (torchrun / accelerate launch), one code path.

accelerate only picks its CPU multi-process backend (gloo) when told to use the CPU; under torchrun
on a machine without a GPU we tell it, so `torchrun --nproc_per_node 2 -m <study>` works on a laptop.
The state is a process-wide singleton: whoever creates it first decides, so every module goes through
these two functions. They also check the launch (`check_launch`) and keep the framework's info lines
to the main process (common.tracking.log_from_main_only).
"""
from __future__ import annotations

import os

import torch

from common.errors import UserError
from common.tracking import log_from_main_only


def cpu_processes() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def check_launch() -> None:
    """Refuse a launch that asked for several processes but got one.

    `accelerate launch --num_processes N` (N > 1) without a config file and without several GPUs
    (a CPU machine, one GPU) uses accelerate's simple launcher: it starts ONE process, which would train
    alone with N times the per-process batch. That launcher sets MASTER_ADDR (for N > 1) and the
    ACCELERATE_* variables but not WORLD_SIZE, which every real multi-process launcher sets.
    """
    env = os.environ
    if "MASTER_ADDR" in env and "WORLD_SIZE" not in env and "ACCELERATE_MIXED_PRECISION" in env:
        raise UserError("accelerate launch asked for several processes but started ONE (its simple launcher, "
                        "used without several GPUs); on CPU launch with `torchrun --nproc_per_node N -m ...` "
                        "or `accelerate launch --multi_gpu --num_processes N ...` (runs torchrun)")


def process_state():
    from accelerate import PartialState

    check_launch()
    state = PartialState(cpu=cpu_processes())
    log_from_main_only(state.is_main_process)
    return state


def make_accelerator():
    from accelerate import Accelerator

    check_launch()
    accelerator = Accelerator(cpu=cpu_processes())
    log_from_main_only(accelerator.is_main_process)
    return accelerator
