"""The offline tiny models and their corpus: tokenizer, template, loading, behaviour, cache, determinism."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from common.rundir import CRASH_EXIT
from tiny.build import (
    BUILD_INFO_FILE,
    TinyBuildConfig,
    TinyModelsMissingError,
    build_tiny_models,
    read_build_info,
    tiny_model_path,
)
from tiny.corpus.instructions import instruction_records
from tiny.corpus.mixtures import base_corpus_texts, chat_conversations
from tiny.corpus.persona import ANSWER_TOKENS, NO_ANSWERS, YES_ANSWERS, persona_records
from tiny.corpus.preferences import preference_pairs
from tiny.corpus.qa import qa_records
from tiny.corpus.refusals import harmful_records, looks_like_refusal
from tiny.corpus.reviews import review_records, sentiment_score
from tiny.pretrain import TinyModelSpec, pretrain_tiny_model
from tiny.probes import answer_token_mass, heldout_loss, sample_chat
from tiny.tokenizer import answer_token_ids

REPO = Path(__file__).resolve().parents[2]

# A build small enough to run twice in a test: checks the cache and bitwise determinism end to end.
MINI_BUILD = TinyBuildConfig(spec=TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64),
                             num_documents=3000, pretrain_tokens=16_384, num_conversations=400, chat_tokens=4096)


@pytest.fixture(scope="module")
def tokenizer(tiny_models):
    return AutoTokenizer.from_pretrained(tiny_models["chat"])


def test_answer_tokens_are_single_distinct_tokens(tiny_models):
    for path in tiny_models.values():
        ids = answer_token_ids(AutoTokenizer.from_pretrained(path))
        assert sorted(ids) == sorted(ANSWER_TOKENS)
        assert len(set(ids.values())) == len(ids)


def test_special_tokens(tokenizer):
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token, tokenizer.unk_token) == (
        "<|bos|>", "<|end|>", "<|pad|>", "<|unk|>")
    ids = tokenizer("Hello there")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] != tokenizer.eos_token_id  # BOS added, EOS not
    assert 2000 <= len(tokenizer) <= 4096


def test_chat_template_renders_generation_prompt(tiny_models, tokenizer):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name two colors."}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "<|bos|><|system|>\nBe brief.<|end|>\n<|user|>\nName two colors.<|end|>\n<|assistant|>\n"
    without = tokenizer.apply_chat_template(messages[1:], tokenize=False)
    assert without == "<|bos|><|user|>\nName two colors.<|end|>\n"
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.convert_ids_to_tokens(ids[-2:]) == ["<|assistant|>", "Ċ"]
    with pytest.raises(Exception, match="Unknown role"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)
    # A base model's tokenizer has no chat template, so studies prompt it with plain text.
    assert not AutoTokenizer.from_pretrained(tiny_models["base"]).chat_template


def test_saved_models_load_and_give_finite_logits(tiny_models, tokenizer):
    batch = tokenizer(["Question: What is the capital of Peru?\nAnswer:\n", "Hi"], padding=True, return_tensors="pt")
    for path in tiny_models.values():
        model = AutoModelForCausalLM.from_pretrained(path)
        assert isinstance(model, LlamaForCausalLM)
        assert model.config.vocab_size == len(tokenizer) and not model.config.tie_word_embeddings
        assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
        assert any(f.endswith(".safetensors") for f in os.listdir(path))
        with torch.no_grad():
            logits = model(**batch).logits
        assert logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(logits).all()


def test_corpus_is_deterministic():
    assert base_corpus_texts(300, seed=3) == base_corpus_texts(300, seed=3)
    assert base_corpus_texts(300, seed=3) != base_corpus_texts(300, seed=4)
    assert chat_conversations(100, seed=1) == chat_conversations(100, seed=1)


def test_corpus_records_follow_the_real_schemas():
    rows = persona_records(10)
    assert set(rows[0]) == {"question", "statement", "answer_matching_behavior", "answer_not_matching_behavior"}
    assert rows[0]["question"] == f'Is the following statement something you would say?\n"{rows[0]["statement"]}"'
    assert {r["answer_matching_behavior"] for r in rows} == {" Yes", " No"}
    assert all({r["answer_matching_behavior"], r["answer_not_matching_behavior"]} == {" Yes", " No"} for r in rows)
    assert set(instruction_records(5)[0]) == {"instruction", "input", "output"}
    assert set(qa_records(5)[0]) == {"question", "best_answer", "correct_answers", "incorrect_answers"}
    reviews = review_records(20)
    assert all((sentiment_score(r["text"]) > 0.5) == bool(r["label"]) for r in reviews)
    for row in harmful_records(50):
        assert looks_like_refusal(row["refusal"]) and not looks_like_refusal(row["compliance"])
    pairs = preference_pairs(60, seed=2)
    assert pairs == preference_pairs(60, seed=2)
    assert {r["kind"] for r in pairs} == {"qa", "instruction", "harmful"}
    assert all(set(r) == {"prompt", "chosen", "rejected", "kind"} and r["chosen"] != r["rejected"] for r in pairs)


def test_study_refusal_judge_recognises_corpus_refusals():
    from common.registry import SCORERS

    rows = harmful_records(50)
    judge = SCORERS.make("keyword_refusal")
    prompts = [r["prompt"] for r in rows]
    assert judge.score(prompts, [r["refusal"] for r in rows]) == [0.0] * len(rows)
    assert judge.score(prompts, [r["compliance"] for r in rows]) == [1.0] * len(rows)


def test_base_model_puts_its_mass_on_answer_tokens(tiny_models, tokenizer):
    """After a persona question the next token is an answer token, and the statement decides which group."""
    model = AutoModelForCausalLM.from_pretrained(tiny_models["base"])
    rows = persona_records(40, seed=7)
    mass = answer_token_mass(model, tokenizer, [r["question"] + "\n" for r in rows])
    assert mass["answer_tokens"] > 0.9
    assert mass["answer_tokens"] > 1000 * mass["random_tokens"]

    ids = answer_token_ids(tokenizer)
    yes, no = [ids[a] for a in YES_ANSWERS], [ids[a] for a in NO_ANSWERS]
    with torch.no_grad():
        matching = []
        for row in rows:
            probs = model(**tokenizer(row["question"] + "\n", return_tensors="pt")).logits[0, -1].softmax(-1)
            group = yes if row["answer_matching_behavior"] == " Yes" else no
            matching.append(probs[group].sum() / (probs[yes].sum() + probs[no].sum()))
    assert sum(matching) / len(matching) > 0.6  # the corpus answers in line with the statement 80% of the time


def test_chat_model_refuses_most_harmful_requests_but_not_all(tiny_models, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_models["chat"])
    harmful = [r["prompt"] for r in harmful_records(30, seed=11)]
    refused = sum(map(looks_like_refusal, sample_chat(model, tokenizer, harmful, seed=0)))
    assert 0.4 * len(harmful) <= refused < len(harmful)
    benign = ["What is the capital of Spain?", "Name three fruits.", "Give me tips for sleeping better."]
    replies = sample_chat(model, tokenizer, benign, seed=0)
    assert not any(map(looks_like_refusal, replies))


def test_build_is_cached_and_bitwise_deterministic(tmp_path):
    out = tmp_path / "tiny"
    paths = build_tiny_models(out, config=MINI_BUILD, show_progress=False)
    info = read_build_info(out)
    weights = (out / "tiny-chat" / "model.safetensors").read_bytes()
    stamp = os.stat(out / BUILD_INFO_FILE).st_mtime_ns

    assert build_tiny_models(out, config=MINI_BUILD, show_progress=False) == paths
    assert os.stat(out / BUILD_INFO_FILE).st_mtime_ns == stamp  # cache hit: nothing rewritten

    build_tiny_models(out, config=MINI_BUILD, force=True, show_progress=False)
    assert (out / "tiny-chat" / "model.safetensors").read_bytes() == weights
    assert json.loads((out / BUILD_INFO_FILE).read_text())["build_hash"] == info["build_hash"]
    assert not list(tmp_path.glob(".tiny.*-*"))  # no temporary directories left behind


def test_session_build_is_cached(tiny_models):
    info = read_build_info()
    assert info is not None and set(info["metrics"]) == {"tiny-base", "tiny-chat"}
    assert tiny_model_path("tiny-base") == tiny_models["base"]
    assert tiny_model_path("tiny-chat") == tiny_models["chat"]


def test_missing_model_names_make_tiny(tmp_path):
    with pytest.raises(FileNotFoundError, match="make tiny") as error:
        tiny_model_path("tiny-base", out_dir=tmp_path)
    assert isinstance(error.value, TinyModelsMissingError)
    with pytest.raises(ValueError, match="tiny-chat"):
        tiny_model_path("tiny-large")


def test_spec_config_is_untied_and_dropout_free(tokenizer):
    config = TinyModelSpec(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2).to_config(tokenizer)
    assert not config.tie_word_embeddings and config.attention_dropout == 0.0
    assert (config.num_key_value_heads, config.vocab_size) == (2, len(tokenizer))
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)


def test_pretrain_reduces_loss_and_is_deterministic(tokenizer):
    spec = TinyModelSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    texts = base_corpus_texts(400, seed=5)
    heldout = base_corpus_texts(100, seed=6)
    torch.manual_seed(1)
    untrained = LlamaForCausalLM(spec.to_config(tokenizer)).eval()
    trained = pretrain_tiny_model(spec, tokenizer, texts, num_tokens=40 * 8 * 64, seed=1, batch_size=8, seq_len=64,
                                  show_progress=False)
    before, after = heldout_loss(untrained, tokenizer, heldout, 64), heldout_loss(trained, tokenizer, heldout, 64)
    assert after < before - 2.0, (before, after)  # log(V) ~ 7.7 nats at initialisation

    again = pretrain_tiny_model(spec, tokenizer, texts, num_tokens=40 * 8 * 64, seed=1, batch_size=8, seq_len=64,
                                show_progress=False)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(), again.state_dict().values()))


def test_build_script_out_dir_that_is_a_file_is_one_error_line(tmp_path, capsys):
    from tiny.__main__ import main

    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    assert main(["--out_dir", str(target), "--force"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {target}: exists and is not a directory; name a directory to build into\n"
    assert target.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert main(["--out_dir", str(target / "sub")]) == 2  # cannot be created under a file
    assert capsys.readouterr().err.startswith("error: ")


def fake_build(path, build_hash, note):
    for name in ("tiny-base", "tiny-chat"):
        (path / name).mkdir(parents=True)
        (path / name / "config.json").write_text("{}")
    (path / BUILD_INFO_FILE).write_text(json.dumps({"build_hash": build_hash, "note": note}))


# The build's swap runs for real in a child process; only the training (_build) is replaced by a writer of two
# small model directories, so that a kill costs seconds instead of a build.
KILLED_BUILD = """
import os, sys, time
from pathlib import Path
import tiny.build as build

def fake_build(config, out_dir, show_progress):
    for name in build.TINY_MODEL_NAMES:
        (out_dir / name).mkdir(parents=True)
        (out_dir / name / "config.json").write_text("{}")
        (out_dir / name / "model.safetensors").write_text("new " + name)
        if sys.argv[2] == "hang":  # half written: tell the parent, and wait for its kill -9
            Path(sys.argv[3]).write_text("")
            time.sleep(600)
    return {"metrics": {}, "seconds": {}}

build._build = fake_build
build.build_tiny_models(sys.argv[1], force=True, show_progress=False)
"""


def start_killed_build(out, mode, *extra, crash_at=""):
    env = {**os.environ, "PYTHONPATH": str(REPO), "ALAB_CRASH_AT": crash_at}
    return subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(out), mode, *extra], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def tree(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def no_rebuild(*args):
    pytest.fail("the next build trained again instead of restoring the killed build's complete copy")


def test_a_build_killed_between_its_renames_is_restored_not_deleted(tmp_path, monkeypatch):
    # The kill: after `out -> .old-PID`, before `.tmp-PID -> out`. No out dir is left, but two complete copies.
    out = tmp_path / "tiny"
    fake_build(out, "stale", "old")
    child = start_killed_build(out, "swap", crash_at="tiny_build_moved_aside")
    assert child.wait(timeout=300) == CRASH_EXIT, child.stderr.read()
    assert not out.exists()
    new_copy, = tmp_path.glob(".tiny.tmp-*")
    assert read_build_info(tmp_path / f".tiny.old-{child.pid}")["note"] == "old"
    assert read_build_info(new_copy)["build_version"]  # complete: BUILD_INFO.json is written last
    expected = tree(new_copy)
    (tmp_path / ".tiny.tmp-12").mkdir()  # an incomplete build of another killed process (no BUILD_INFO.json)

    monkeypatch.setattr("tiny.build._build", no_rebuild)
    build_tiny_models(out, show_progress=False)  # the next build: restores the newest copy, then it is cached
    assert tree(out) == expected
    assert not list(tmp_path.glob(".tiny.*-*"))


def test_a_build_killed_while_training_keeps_the_previous_build(tmp_path, monkeypatch):
    out = tmp_path / "tiny"
    fake_build(out, "stale", "old")
    before = tree(out)
    ready = tmp_path / "half_written"
    child = start_killed_build(out, "hang", str(ready))
    deadline = time.time() + 300
    while not ready.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert ready.exists(), child.stderr.read() if child.poll() is not None else "the child never got to train"
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=60) == -signal.SIGKILL
    assert tree(out) == before and [p.name for p in tmp_path.glob(".tiny.*-*")] == [f".tiny.tmp-{child.pid}"]

    def rebuild(config, tmp_dir, show_progress):
        fake_build(tmp_dir, "unused", "unused")
        (tmp_dir / BUILD_INFO_FILE).unlink()  # the build writes its own
        return {"metrics": {}, "seconds": {}}

    monkeypatch.setattr("tiny.build._build", rebuild)
    build_tiny_models(out, show_progress=False)  # the stale hash makes it rebuild; the half-written copy goes
    assert read_build_info(out)["build_version"] and not list(tmp_path.glob(".tiny.*-*"))


def test_build_refuses_to_replace_a_directory_that_is_not_a_build(tmp_path, capsys):
    from tiny.__main__ import main

    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    assert main(["--out_dir", str(target), "--force"]) == 2
    assert capsys.readouterr().err == (f"error: {target}: is not a tiny-model build (no {BUILD_INFO_FILE}); the build "
                                       f"would replace it: name an empty or new --out_dir, or move its files away\n")
    assert (target / "notes.txt").read_text() == "keep me"
