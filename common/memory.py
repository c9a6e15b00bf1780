"""Memory planner: GPU memory per process of a training run on 1 GPU, DDP or FSDP over N, from config.json.

    python -m common.memory --model meta-llama/Meta-Llama-3-8B [--plan PLAN.json] [--gpus 8]

Reads only the model's config.json (a local directory or file works offline; a hub id fetches that one file)
and, with --plan, the first configuration's training fields (dtype, precision, optimizer, batch sizes,
max_length, lora, gradient_checkpointing). Estimates, in bytes:

- parameters: every weight in `dtype`; gradients and optimizer state for the trainable ones, in fp32 (the
  master weights' dtype; optimizer states: sgd 0, rmsprop 1, adam/adamw 2 tensors per parameter);
- cached reference: the trainer keeps reference log-probs (2 floats per example), never a reference model;
- activations of one micro-batch (2 * micro_batch_size rows of max_length tokens for preference losses):
  per token and decoder layer the tensors autograd saves in a Llama-style block (norm inputs and outputs,
  q k v, attention output, residuals: ~10 H + 3 H_kv; SwiGLU gate, up, act, product: 4 I), in 4 bytes (fp32)
  or 2 (bf16 autocast), plus the log-prob head: fp32 logits of the completion tokens (completion_fraction of
  the tokens, default 0.5) saved twice (logits and their logsumexp backward). With gradient checkpointing
  only each layer's input (H per token, fp32 residual) is kept, plus one layer's activations recomputed in
  the backward. An estimate: attention kernels, allocator slack and the CUDA context (~1 GB) come on top.
- DDP adds one gradient-sized bucket buffer; FSDP over N divides parameters, gradients and optimizer state
  by N and adds the unsharded working set: two decoder layers (one computing, one prefetched) and the root
  unit (embeddings, final norm, LM head), in the compute dtype, with their gradients.
- zeroth order (mezo, tezo, tezo_adam; common/zeroth_order.py): no gradients and no DDP (each process holds
  the weights, the update is replayed from a shared seed), FSDP refused. Optimizer: the state (tezo_adam only:
  2 r fp32 moments per weight matrix, 2 per entry of the vectors; mezo and tezo store nothing, TeZO's U, V are
  regenerated from their seed) plus the update's workspace, one parameter at a time: its z and the restore
  check's copy (tezo_adam's update: the two rebuilt fp32 moments) of the largest trainable tensor; U, V of
  one matrix ((m + n) r numbers) are left out. Activations: a forward under no_grad keeps nothing for a
  backward, so one decoder layer's tensors at a time, the final hidden states and the log-prob head.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from common.cli import command_main
from common.config import ZEROTH_ORDER_OPTIMIZERS, option
from common.errors import DataError

GB = 1e9
OPTIMIZER_STATES = {"sgd": 0, "rmsprop": 1, "adam": 2, "adamw": 2}
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
PLAN_FIELDS = ("dtype", "precision", "optimizer", "batch_size", "micro_batch_size", "max_length", "lora",
               "gradient_checkpointing", "objective", "tezo_rank")


@dataclass
class MemoryOptions:
    model: str = option(help="hub id, model directory or config.json path")
    plan: Optional[str] = option(None, help="experiment plan whose first configuration gives the training fields")
    dtype: str = option("float32", choices=list(BYTES), help="weights' dtype (a plan overrides)")
    precision: str = option("fp32", choices=["fp32", "bf16"])
    optimizer: str = option("rmsprop", choices=[*OPTIMIZER_STATES, *ZEROTH_ORDER_OPTIMIZERS])
    tezo_rank: int = option(1, min=1, help="tezo_adam: rank r of its moments per weight matrix")
    batch_size: int = option(32, min=1)
    micro_batch_size: int = option(0, min=0, help="0 = the whole per-process share in one forward")
    max_length: int = option(512, min=2)
    objective: str = option("dpo", help="sft / cross_entropy score one row per example, the others two")
    lora: Optional[dict] = option(None, help="peft LoraConfig kwargs ({\"r\": 8, \"target_modules\": [...]})")
    gradient_checkpointing: bool = option(False)
    completion_fraction: float = option(0.5, min=0.0, max=1.0, help="share of the tokens that are completions")
    gpu_gb: float = option(80.0, min=1.0, help="memory of one GPU")
    gpus: int = option(8, min=1, help="N for the DDP / FSDP columns")


def read_model_config(source: str) -> dict:
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if not path.exists():
        if source.startswith((".", "/", "~")):
            raise DataError(f"{source}: no config.json there")
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(source, "config.json"))
        except Exception as e:  # offline, unknown id, gated: each raises its own type
            raise DataError(f"model {source!r}: could not fetch config.json ({type(e).__name__})") from None
    config = json.loads(path.read_text())
    return config.get("text_config", config)  # multimodal wrappers keep the LM's numbers there


def apply_plan(options: MemoryOptions) -> MemoryOptions:
    if not options.plan:
        return options
    plan = json.loads(Path(options.plan).read_text())
    base = plan["configurations"][0]["base_config"]
    for name in PLAN_FIELDS:
        if name in base:
            setattr(options, name, base[name])
    return options


def layer_shapes(c: dict) -> dict:
    hidden, heads = c["hidden_size"], c["num_attention_heads"]
    head_dim = c.get("head_dim") or hidden // heads
    return {"hidden": hidden, "q": heads * head_dim, "kv": c.get("num_key_value_heads", heads) * head_dim,
            "intermediate": c["intermediate_size"], "layers": c["num_hidden_layers"], "vocab": c["vocab_size"]}


def parameter_counts(c: dict, lora: Optional[dict]) -> dict:
    s = layer_shapes(c)
    h, q, kv, i = s["hidden"], s["q"], s["kv"], s["intermediate"]
    modules = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
               "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    layer = sum(a * b for a, b in modules.values()) + 2 * h
    embed = s["vocab"] * h
    heads = 1 if c.get("tie_word_embeddings", False) else 2  # embedding and LM head matrices
    root = embed * heads + h
    total = s["layers"] * layer + root
    # trainable tensors, for the zeroth-order state: matrices, entries of vectors (norms), the largest tensor
    trainable, matrices, vector_entries = total, s["layers"] * len(modules) + heads, (2 * s["layers"] + 1) * h
    largest = max(embed, *(a * b for a, b in modules.values()))
    if lora:
        targets = lora.get("target_modules") or ["q_proj", "v_proj"]  # peft's default for Llama
        targets = [targets] if isinstance(targets, str) else targets
        r = lora.get("r", 8)
        adapted = [(a, b) for name, (a, b) in modules.items() if name in targets]
        trainable = s["layers"] * sum(r * (a + b) for a, b in adapted)
        matrices, vector_entries = 2 * s["layers"] * len(adapted), 0  # A (r x in) and B (out x r) each
        largest = max(r * max(a, b) for a, b in adapted)
    return {"total": total, "trainable": trainable, "layer": layer, "root": root, "matrices": matrices,
            "vector_entries": vector_entries, "largest": largest}


def activation_bytes(c: dict, o: MemoryOptions, world: int) -> int:
    s = layer_shapes(c)
    rows_per_example = 1 if o.objective in ("sft", "cross_entropy") else 2
    per_process = math.ceil(o.batch_size / world)
    micro = min(o.micro_batch_size or per_process, per_process)
    tokens = rows_per_example * micro * o.max_length
    act = 4 if o.precision == "fp32" else 2
    per_layer_token = (10 * s["hidden"] + 3 * s["kv"] + 4 * s["intermediate"]) * act
    if o.optimizer in ZEROTH_ORDER_OPTIMIZERS:  # no_grad forwards: one layer's tensors alive at a time
        layers = tokens * per_layer_token
    elif o.gradient_checkpointing:
        layers = tokens * (s["layers"] * s["hidden"] * 4 + per_layer_token)
    else:
        layers = tokens * s["layers"] * per_layer_token
    head = 2 * tokens * o.completion_fraction * s["vocab"] * 4
    return int(layers + head + tokens * s["hidden"] * 4)  # + the final hidden states


def zeroth_order_state(counts: dict, o: MemoryOptions) -> int:
    """Bytes of the optimizer state of a zeroth-order run: tezo_adam's moments (fp32), else nothing."""
    if o.optimizer != "tezo_adam":
        return 0
    return 2 * 4 * (o.tezo_rank * counts["matrices"] + counts["vector_entries"])


def zeroth_order_figures(c: dict, o: MemoryOptions, n: int) -> dict:
    counts = parameter_counts(c, o.lora)
    workspace = 2 * counts["largest"] * (4 if o.optimizer == "tezo_adam" else BYTES[o.dtype])
    return {"parameters": counts["total"] * BYTES[o.dtype], "gradients": 0,
            "optimizer": zeroth_order_state(counts, o) + workspace, "activations": activation_bytes(c, o, n)}


def figures(c: dict, o: MemoryOptions, layout: str, n: int = 1) -> dict:
    """Bytes per process of `layout` ("single", "ddp" or "fsdp") over n processes; see the module docstring."""
    if o.optimizer in ZEROTH_ORDER_OPTIMIZERS:
        if layout == "fsdp":
            raise ValueError(f"optimizer {o.optimizer} does not run under fsdp")
        out = zeroth_order_figures(c, o, n)  # "ddp": the same replica per process, no gradient buckets
        out["total"] = sum(out.values())
        return out
    counts = parameter_counts(c, o.lora)
    weights = counts["total"] * BYTES[o.dtype]
    grads = counts["trainable"] * 4
    states = OPTIMIZER_STATES[o.optimizer] * counts["trainable"] * 4
    out = {"parameters": weights, "gradients": grads * (2 if layout == "ddp" else 1), "optimizer": states,
           "activations": activation_bytes(c, o, n)}
    if layout == "fsdp":
        compute = 2 if o.precision == "bf16" else BYTES[o.dtype]
        working = (2 * counts["layer"] + counts["root"]) * compute * (1 + counts["trainable"] / counts["total"])
        out.update(parameters=weights / n + working, gradients=grads / n, optimizer=states / n)
    out["total"] = sum(out.values())
    return out


def plan_memory(c: dict, o: MemoryOptions) -> dict:
    if o.optimizer in ZEROTH_ORDER_OPTIMIZERS:  # forwards on a full replica per process; fsdp is refused
        layouts = {"1 GPU": figures(c, o, "single"), f"replicas x{o.gpus}": figures(c, o, "ddp", o.gpus)}
        return {"parameters": parameter_counts(c, o.lora), "cached_reference": 2 * 4 * o.batch_size,
                "layouts": layouts, "fsdp_gpus_needed": None}
    layouts = {"1 GPU": figures(c, o, "single"), f"DDP x{o.gpus}": figures(c, o, "ddp", o.gpus),
               f"FSDP x{o.gpus}": figures(c, o, "fsdp", o.gpus)}
    needed = next((n for n in range(1, 1025) if figures(c, o, "fsdp", n)["total"] + GB <= o.gpu_gb * GB), None)
    return {"parameters": parameter_counts(c, o.lora), "cached_reference": 2 * 4 * o.batch_size,
            "layouts": layouts, "fsdp_gpus_needed": needed}  # needed: 1 GB kept for the CUDA context


def report(o: MemoryOptions) -> dict:
    o = apply_plan(o)
    c = read_model_config(o.model)
    result = plan_memory(c, o)
    counts = result["parameters"]
    print(f"{o.model}: {counts['total'] / 1e9:.2f} B parameters, {counts['trainable'] / 1e9:.3f} B trainable; "
          f"{o.dtype} weights, precision {o.precision}, {o.optimizer}, batch {o.batch_size} "
          f"(micro {o.micro_batch_size or 'all'}), max_length {o.max_length}, "
          f"checkpointing {'on' if o.gradient_checkpointing else 'off'}")
    print(f"{'GB per GPU':<12}" + "".join(f"{k:>13}" for k in ("parameters", "gradients", "optimizer",
                                                                "activations", "total")))
    for name, figures in result["layouts"].items():
        print(f"{name:<12}" + "".join(f"{figures[k] / GB:>13.1f}" for k in figures))
    needed = result["fsdp_gpus_needed"]
    if o.optimizer in ZEROTH_ORDER_OPTIMIZERS:
        fit = "zeroth order: no FSDP; a model too big for one GPU splits its layers with device_map auto"
    else:
        fit = f"FSDP fits on {o.gpu_gb:g} GB GPUs from {needed} GPU(s)" if needed else "FSDP does not fit on 1024 GPUs"
    print(f"cached reference: {result['cached_reference']} bytes; {fit}")
    return result


def main(argv=None) -> dict:
    return command_main("python -m common.memory", "GPU memory of a training run per layout", MemoryOptions,
                        report, argv)


if __name__ == "__main__":
    main()
