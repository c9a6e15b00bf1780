"""Greedy responses of the aligned model, written in the URIAL "i2i" format the analysis reads.

    python -m tds.generate --model M --data INSTRUCTIONS.jsonl --output RESPONSES.jsonl \\
        [--max_new_tokens 512] [--batch_size 16] [--aligned_template chat] [--system_prompt TEXT]

Input rows need `instruction` (or `pure_input`) and optionally `id`. Output rows:
    {"id", "pure_input": instruction, "input": the rendered aligned prompt, "output": [response],
     "generator": M}
so that `python -m tds` teacher-forces the response under exactly the prompt that produced it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from common.cli import command_main
from common.config import option
from common.generation import generate
from common.tracking import setup_console_logging, write_jsonl
from tds.inputs import aligned_prompt_text


def generate_responses(model, tokenizer, items: Sequence[tuple[str, str]], *, generator: str,
                       aligned_template: str = "chat", system_prompt: str = "", max_new_tokens: int = 512,
                       batch_size: int = 16, progress: bool = True) -> list[dict]:
    """Greedy response rows for (id, instruction) items, batched through `common.generation.generate`."""
    chat = aligned_template == "chat"
    texts = [aligned_prompt_text(tokenizer, instruction, aligned_template, system_prompt) for _, instruction in items]
    if chat:  # the chat template renders the messages itself (with its own BOS)
        prompts = [([{"role": "system", "content": system_prompt}] if system_prompt else [])
                   + [{"role": "user", "content": instruction}] for _, instruction in items]
    else:
        prompts = texts
    outputs = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=0.0,
                       batch_size=batch_size, use_chat_template=chat, progress=progress)
    return [{"id": item_id, "pure_input": instruction, "input": text, "output": [output], "generator": generator}
            for (item_id, instruction), text, output in zip(items, texts, outputs)]


@dataclass(kw_only=True)
class GenerateOptions:
    model: str = option(help="the aligned model (hub id or local path)")
    data: str = option(help="jsonl/json of instructions, or a hub dataset id")
    split: str = option("train")
    output: str = option(help="the jsonl file to write")
    num_examples: int = option(-1, help="first N instructions; -1 = all")
    max_new_tokens: int = option(512, min=1)
    batch_size: int = option(16, min=1)
    aligned_template: str = option("chat", help="'chat', 'vicuna' or a text with {{ instruction }}")
    system_prompt: str = option("")
    dtype: str = option("float32", choices=["float32", "bfloat16", "float16"])
    trust_remote_code: bool = option(False)


def generate_file(args: GenerateOptions) -> None:
    from common.data import load_records
    from common.distributed import process_state
    from common.models import load_for_inference
    from tds.inputs import read_instructions

    setup_console_logging()
    items = read_instructions(load_records(args.data, split=args.split), args.data)
    items = items[:args.num_examples] if args.num_examples >= 0 else items
    model, tokenizer = load_for_inference(args.model, dtype=args.dtype, device=process_state().device,
                                          trust_remote_code=args.trust_remote_code)
    rows = generate_responses(model, tokenizer, items, generator=args.model, aligned_template=args.aligned_template,
                              system_prompt=args.system_prompt, max_new_tokens=args.max_new_tokens,
                              batch_size=args.batch_size)
    write_jsonl(args.output, rows)
    print(f"wrote {len(rows)} responses to {args.output}")


def main(argv=None) -> None:
    command_main("python -m tds.generate", __doc__.splitlines()[0], GenerateOptions, generate_file, argv)


if __name__ == "__main__":
    main()
