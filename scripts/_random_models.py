"""Random-weight Llama models for the benchmarks and the GPU check: built from a config, no hub access.

The tokenizer is a tiny model's (2,293 tokens; tiny-chat's adds its chat template): its ids fit any
larger vocabulary, so a model with a realistic vocabulary (32k, 128k) pays the LM head's real cost on
the fixtures' text.
"""
from __future__ import annotations

from pathlib import Path


def random_llama(out_dir: Path, *, vocab_size: int, hidden_size: int, intermediate_size: int,
                 num_hidden_layers: int, num_attention_heads: int, num_key_value_heads: int | None = None,
                 seed: int = 0, tokenizer_from: str = "tiny-base") -> str:
    """Save a seeded random LlamaForCausalLM (untied LM head) and a tiny model's tokenizer in `out_dir`, once."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tiny.build import tiny_model_path

    out_dir = Path(out_dir)
    if not (out_dir / "model.safetensors").exists():
        tokenizer = AutoTokenizer.from_pretrained(tiny_model_path(tokenizer_from))
        torch.manual_seed(seed)
        config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                             num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
                             num_key_value_heads=num_key_value_heads or num_attention_heads,
                             max_position_embeddings=1024, tie_word_embeddings=False,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
        LlamaForCausalLM(config).save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    return str(out_dir)
