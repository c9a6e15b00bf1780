"""Building and caching tiny-base and tiny-chat under outputs/tiny_models, and finding them."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional

import tokenizers
import torch
import transformers
from transformers import LlamaForCausalLM

from common.rundir import crash_point
from common.tracking import logger
from tiny.corpus import CORPUS_VERSION
from tiny.corpus.instructions import instruction_records
from tiny.corpus.mixtures import ASSISTANT_OPENERS, base_corpus_texts, chat_conversations
from tiny.corpus.persona import persona_records
from tiny.corpus.refusals import harmful_records, looks_like_refusal
from tiny.pretrain import TinyModelSpec, finetune_chat_model, pretrain_tiny_model
from tiny.probes import answer_token_mass, heldout_loss, sample_chat, unigram_entropy
from tiny.tokenizer import encode_documents, train_tiny_tokenizer

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "outputs" / "tiny_models"
TINY_MODEL_NAMES = ("tiny-base", "tiny-chat")
BUILD_INFO_FILE = "BUILD_INFO.json"
# Bump when a change to this file changes the built weights (with CORPUS_VERSION for the
# corpus): cached models are rebuilt only when the hash of these versions and the build config changes,
# so that edits to comments do not cost every checkout a rebuild.
TINY_BUILD_VERSION = 1


class TinyModelsMissingError(FileNotFoundError):
    """A tiny model has not been built yet."""




@dataclass(frozen=True)
class TinyBuildConfig:
    """Everything that decides the built weights (hashed into BUILD_INFO.json)."""

    spec: TinyModelSpec = TinyModelSpec()
    vocab_size: int = 3072
    seed: int = 0
    num_documents: int = 45000
    pretrain_tokens: int = 1_600_000
    pretrain_lr: float = 3e-3
    num_conversations: int = 6000
    chat_tokens: int = 300_000
    chat_lr: float = 1e-3
    chat_refusal_rate: float = 0.7
    batch_size: int = 16
    seq_len: int = 128
    threads: int = 2


def _build_hash(config: TinyBuildConfig) -> str:
    """Hash of the build config, the build and corpus versions and the library versions."""
    payload = json.dumps({"config": asdict(config), "build_version": TINY_BUILD_VERSION,
                          "corpus_version": CORPUS_VERSION, "torch": torch.__version__,
                          "transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _read_build_info(out_dir: Path) -> Optional[dict]:
    try:
        return json.loads((out_dir / BUILD_INFO_FILE).read_text())
    except (OSError, json.JSONDecodeError):  # not built, or out_dir is not a directory
        return None


def _is_cached(out_dir: Path, build_hash: str) -> bool:
    info = _read_build_info(out_dir)
    return (info is not None and info.get("build_hash") == build_hash
            and all((out_dir / name / "config.json").is_file() for name in TINY_MODEL_NAMES))


def _save(model: LlamaForCausalLM, tokenizer, path: Path, *, chat: bool) -> None:
    """Safetensors weights, tokenizer files (the chat template only for the chat model), generation config."""
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(path)
    template = tokenizer.chat_template
    tokenizer.chat_template = template if chat else None
    try:
        tokenizer.save_pretrained(path)
    finally:
        tokenizer.chat_template = template


def _build(config: TinyBuildConfig, out_dir: Path, show_progress: bool) -> dict:
    """Train the tokenizer and both models into out_dir; return measurements and phase timings."""
    seconds = {}
    clock = time.time()

    def lap(phase: str) -> None:
        nonlocal clock
        seconds[phase] = round(time.time() - clock, 1)
        clock = time.time()

    documents = base_corpus_texts(config.num_documents, config.seed)
    conversations = chat_conversations(config.num_conversations, config.seed,
                                                   refusal_rate=config.chat_refusal_rate)
    tokenizer = train_tiny_tokenizer(documents + [m["content"] for conv in conversations for m in conv],
                                     config.vocab_size)
    tokenizer.model_max_length = config.spec.max_position_embeddings
    lap("corpus_and_tokenizer")
    train = dict(seed=config.seed, batch_size=config.batch_size, seq_len=config.seq_len, show_progress=show_progress)

    model = pretrain_tiny_model(config.spec, tokenizer, documents, num_tokens=config.pretrain_tokens,
                                lr=config.pretrain_lr, **train)
    lap("pretrain")
    # Held-out measurements use a different corpus seed than the training documents.
    heldout_seed = config.seed + 1000
    persona_prompts = [row["question"] + "\n" for row in persona_records(100, heldout_seed)]
    base_metrics = {
        "params": model.num_parameters(),
        "vocab_size": len(tokenizer),
        "train_corpus_tokens": len(encode_documents(tokenizer, documents)),
        "heldout_loss": heldout_loss(model, tokenizer, base_corpus_texts(1000, heldout_seed),
                                     config.seq_len),
        "unigram_entropy": unigram_entropy(tokenizer, documents),
        "persona_next_token_mass": answer_token_mass(model, tokenizer, persona_prompts, seed=config.seed)}
    _save(model, tokenizer, out_dir / "tiny-base", chat=False)
    lap("measure_and_save_base")

    finetune_chat_model(model, tokenizer, conversations, num_tokens=config.chat_tokens, lr=config.chat_lr, **train)
    lap("chat_finetune")
    harmful = [row["prompt"] for row in harmful_records(40, heldout_seed)]
    benign = [row["instruction"] for row in instruction_records(40, heldout_seed) if not row["input"]]
    harmful_replies = sample_chat(model, tokenizer, harmful, seed=config.seed)
    benign_replies = sample_chat(model, tokenizer, benign, seed=config.seed)
    chat_metrics = {
        "harmful_refusal_share_t1": sum(map(looks_like_refusal, harmful_replies)) / len(harmful),
        "benign_refusal_share_t1": sum(map(looks_like_refusal, benign_replies)) / len(benign),
        "benign_assistant_style_share_t1": sum(r.startswith(ASSISTANT_OPENERS) for r in benign_replies)
        / len(benign),
        "persona_next_token_mass": answer_token_mass(
            model, tokenizer, [tokenizer.apply_chat_template([{"role": "user", "content": p.rstrip("\n")}],
                                                             add_generation_prompt=True, tokenize=False)
                               for p in persona_prompts], seed=config.seed, add_special_tokens=False),
        "example_replies": dict(zip(harmful[:4] + benign[:4], harmful_replies[:4] + benign_replies[:4]))}
    _save(model, tokenizer, out_dir / "tiny-chat", chat=True)
    lap("measure_and_save_chat")
    return {"metrics": {"tiny-base": base_metrics, "tiny-chat": chat_metrics}, "seconds": seconds}


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive file lock: concurrent test sessions wait for one build instead of racing."""
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _recover_killed_build(out_dir: Path) -> None:
    """Clean up after a killed build: a build killed between its two renames left no out_dir but one or two
    complete copies (BUILD_INFO.json is written last); the newest goes back in place before the rest is deleted."""
    leftovers = sorted(out_dir.parent.glob(f".{out_dir.name}.*-*"), key=lambda p: ".tmp-" not in p.name)
    if not out_dir.exists():
        complete = next((p for p in leftovers if _read_build_info(p) is not None), None)
        if complete is not None:
            logger.info(f"restoring {out_dir} from {complete}, left by a killed build")
            complete.rename(out_dir)
            leftovers.remove(complete)
    for stale in leftovers:
        shutil.rmtree(stale, ignore_errors=True)


def _check_replaceable(out_dir: Path) -> None:
    """The build replaces out_dir whole: only an empty directory or an earlier build may be there."""
    if out_dir.exists() and not out_dir.is_dir():  # the build would move the file aside and replace it
        raise NotADirectoryError(f"{out_dir}: exists and is not a directory; name a directory to build into")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / BUILD_INFO_FILE).is_file():
        raise FileExistsError(f"{out_dir}: is not a tiny-model build (no {BUILD_INFO_FILE}); the build would "
                              f"replace it: name an empty or new --out_dir, or move its files away")


def build_tiny_models(out_dir: Optional[str | os.PathLike] = None, force: bool = False, *,
                      config: TinyBuildConfig = TinyBuildConfig(), show_progress: bool = True) -> dict[str, str]:
    """Build tiny-base and tiny-chat into out_dir (default outputs/tiny_models); return name -> path.

    A no-op when out_dir/BUILD_INFO.json carries the hash of this config and version (unless `force`).
    The build writes into a temporary directory that replaces out_dir at the end, so an interrupted
    build never leaves half-written models behind; a lock file makes concurrent callers wait for it.
    """
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT_DIR
    _check_replaceable(out_dir)
    build_hash = _build_hash(config)
    paths = {name: str(out_dir / name) for name in TINY_MODEL_NAMES}
    if not force and _is_cached(out_dir, build_hash):
        return paths

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(out_dir.parent / f".{out_dir.name}.lock"):
        _recover_killed_build(out_dir)
        if not force and _is_cached(out_dir, build_hash):  # built by another process while we waited, or restored
            return paths
        tmp_dir = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
        old_dir = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        threads = torch.get_num_threads()
        torch.set_num_threads(config.threads)  # matmul reductions depend on the thread count
        start = time.time()
        try:
            results = _build(config, tmp_dir, show_progress)
            info = {"build_hash": build_hash, "build_version": TINY_BUILD_VERSION,
                    "corpus_version": CORPUS_VERSION, "config": asdict(config),
                    "build_seconds": round(time.time() - start, 1), **results}
            (tmp_dir / BUILD_INFO_FILE).write_text(json.dumps(info, indent=2))
            if out_dir.exists():
                out_dir.rename(old_dir)
            crash_point("tiny_build_moved_aside")  # old_dir and tmp_dir complete, out_dir missing
            tmp_dir.rename(out_dir)
        finally:
            torch.set_num_threads(threads)
            shutil.rmtree(tmp_dir, ignore_errors=True)
            shutil.rmtree(old_dir, ignore_errors=True)
    return paths


def read_build_info(out_dir: Optional[str | os.PathLike] = None) -> Optional[dict]:
    """The BUILD_INFO.json of a build (measurements, config, build time), or None when not built."""
    return _read_build_info(Path(out_dir) if out_dir is not None else DEFAULT_OUT_DIR)


def tiny_model_path(name: str, out_dir: Optional[str | os.PathLike] = None) -> str:
    """Path of a built tiny model ("tiny-base" or "tiny-chat"); TinyModelsMissingError if not built."""
    if name not in TINY_MODEL_NAMES:
        raise ValueError(f"unknown tiny model {name!r}; the tiny models are {', '.join(TINY_MODEL_NAMES)}")
    path = (Path(out_dir) if out_dir is not None else DEFAULT_OUT_DIR) / name
    if not (path / "config.json").is_file():
        raise TinyModelsMissingError(f"tiny model {name!r} is not built at {path}: run `make tiny` "
                                     "(python -m tiny)")
    return str(path)
