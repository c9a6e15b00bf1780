"""The config of one TDS analysis run (a base/aligned pair on one set of responses)."""
from __future__ import annotations

from dataclasses import dataclass

from common.config import FieldError, RunConfig, option


@dataclass
class TDSConfig(RunConfig):
    base_model: str = option("", help="hub id or local path of the base model")
    aligned_model: str = option("", help="hub id or local path of the aligned model (same tokenizer)")
    data: str = option("", data_path=True, help="jsonl/json of instructions with the aligned model's responses (see "
                                "tds/inputs.py), a directory with <split>.jsonl, or a hub dataset id")
    split: str = option("train", help="split of a directory or hub dataset")
    num_examples: int = option(-1, help="analyse the first N examples; -1 = all")
    generate: bool = option(False, help="first generate greedy responses with the aligned model "
                                        "(run_dir/responses.jsonl); `output` fields of the data are ignored")
    max_new_tokens: int = option(512, min=1, help="generate: response length limit")
    generation_batch_size: int = option(16, min=1)
    base_template: str = option("aligntds", help="base prompt: 'aligntds' (AlignTDS zero-shot), 'plain' "
                                                 "(the instruction alone), 'urial' (in-context prefix) or a "
                                                 "text containing {{ instruction }}")
    urial_prefix_file: str = option("", help="text file of the URIAL in-context prefix (default: a short one)")
    aligned_template: str = option("chat", help="aligned prompt of rows without a rendered 'input': 'chat' "
                                                "(the tokenizer's chat template), 'vicuna' or a text "
                                                "containing {{ instruction }}")
    system_prompt: str = option("", help="system message of the 'chat' aligned template (empty: none)")
    use_record_prompt: bool = option(True, help="use a row's rendered aligned prompt ('input') when present")
    include_eos: bool = option(False, help="also analyse the EOS token after each response")
    max_response_tokens: int = option(0, min=0, help="analyse at most this many response tokens; 0 = all")
    top_k: int = option(10, min=1, help="top-k tokens of both distributions stored per position")
    unshifted_max_rank: int = option(0, min=0, help="base rank <= this: unshifted")
    marginal_max_rank: int = option(2, min=0, help="base rank <= this (and above unshifted): marginal")
    batch_size: int = option(8, min=1, help="examples per forward pass")
    positions_per_chunk: int = option(1024, min=1, help="positions unembedded at a time (memory bound)")
    examples_per_part: int = option(64, min=1, help="examples per resumable part file")
    dtype: str = option("float32", choices=["float32", "bfloat16", "float16"],
                        help="weights dtype (logits are always compared in float32)")
    trust_remote_code: bool = option(False)
    viewer_examples: int = option(200, min=0, help="write the HTML viewer for the first N examples; 0 = none")

    def validate(self) -> None:
        super().validate()
        for field in ("base_model", "aligned_model", "data"):
            if not getattr(self, field):
                raise FieldError(field, "required")
        from tds.inputs import ALIGNED_TEMPLATES, BASE_TEMPLATES, template_error

        for field, named in (("base_template", BASE_TEMPLATES), ("aligned_template", ALIGNED_TEMPLATES)):
            error = template_error(getattr(self, field), named)
            if error:
                raise FieldError(field, error)
        if self.marginal_max_rank < self.unshifted_max_rank:
            raise FieldError("marginal_max_rank", f"must be >= unshifted_max_rank ({self.unshifted_max_rank})")
