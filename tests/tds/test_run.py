"""The analysis run end to end on the tiny pair: files, brute-force check, resume, CLIs, plans."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tds.run
from common.models import load_model, load_tokenizer
from common.tracking import read_json, read_jsonl, write_jsonl
from tds.__main__ import main as tds_main
from tds.generate import main as generate_main
from tds.storage import EXAMPLE_TABLE, TOKEN_TABLE, read_table

REPO = Path(__file__).resolve().parents[2]
RESPONSES = REPO / "data_files/tds/tiny_chat_responses.jsonl"
QA = "Question: {{ instruction }}\nAnswer:\n"


@pytest.fixture(scope="module")
def rows():
    return read_jsonl(RESPONSES)[38:44]  # benign and harmful instructions


def flags(tiny_models, data, out, *extra):
    return ["--base", tiny_models["base"], "--aligned", tiny_models["chat"], "--data", str(data),
            "--output_dir", str(out), "--base_template", QA, "--viewer_examples", "2", *extra]


@pytest.fixture(scope="module")
def analysed(tiny_models, rows, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tds")
    write_jsonl(tmp / "data.jsonl", rows)
    tds_main(flags(tiny_models, tmp / "data.jsonl", tmp / "run", "--examples_per_part", "2"))
    return tmp / "run"


def test_run_writes_tables_summary_and_viewer(analysed, rows):
    table, examples = read_table(analysed / TOKEN_TABLE), read_table(analysed / EXAMPLE_TABLE)
    summary = read_json(analysed / "summary.json")
    assert summary["status"] == "finished" and summary["num_examples"] == len(rows)
    assert summary["num_positions"] == len(table["token_id"]) == examples["num_tokens"].sum()
    assert summary["shifted_ratio"] == pytest.approx(np.mean(table["category"] == 2))
    assert list(examples["id"]) == [r["id"] for r in rows]
    assert examples["base_prompt"][0] == f"<|bos|>Question: {rows[0]['pure_input']}\nAnswer:\n"
    assert examples["aligned_prompt"][0] == rows[0]["input"]
    assert (analysed / "viewer" / "index.html").is_file() and (analysed / "viewer" / "example_1.html").is_file()
    assert not (analysed / "parts").exists()
    assert set(json.loads((analysed / "tokens.json").read_text())) >= {str(t) for t in table["token_id"]}


def test_stored_table_matches_per_position_forwards(analysed, tiny_models, rows):
    """Example 0 again, the slow way: HF forwards over every prefix with hand-built prompts."""
    tokenizer = load_tokenizer(tiny_models["chat"])
    base, chat = load_model(tiny_models["base"]), load_model(tiny_models["chat"])
    row = rows[0]
    base_prompt = tokenizer(f"Question: {row['pure_input']}\nAnswer:\n")["input_ids"]
    chat_prompt = tokenizer.apply_chat_template([{"role": "user", "content": row["pure_input"]}],
                                                add_generation_prompt=True, tokenize=True, return_dict=False)
    response = tokenizer(row["output"][0], add_special_tokens=False)["input_ids"]
    table = read_table(analysed / TOKEN_TABLE)
    mine = table["example"] == 0
    assert table["token_id"][mine].tolist() == response
    with torch.no_grad():
        for t, token in enumerate(response[:16]):
            lb = base(torch.tensor([base_prompt + response[:t]])).logits[0, -1].double()
            la = chat(torch.tensor([chat_prompt + response[:t]])).logits[0, -1].double()
            rank = int((lb > lb[token]).sum())
            assert table["base_rank"][mine][t] == rank
            assert table["category"][mine][t] == (0 if rank == 0 else 1 if rank <= 2 else 2)
            assert table["aligned_rank"][mine][t] == int((la > la[token]).sum())
            kl = torch.sum(la.softmax(-1) * (la.log_softmax(-1) - lb.log_softmax(-1))).item()
            assert table["kl_aligned_base"][mine][t] == pytest.approx(kl, rel=1e-3, abs=1e-5)


def test_interrupted_run_resumes_from_finished_parts(tiny_models, rows, analysed, tmp_path, monkeypatch):
    write_jsonl(tmp_path / "data.jsonl", rows)
    calls = []
    real = tds.run.token_shifts

    def failing_second_part(*args, **kwargs):
        calls.append(len(args[4]))
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(tds.run, "token_shifts", failing_second_part)
    args = flags(tiny_models, tmp_path / "data.jsonl", tmp_path / "run", "--examples_per_part", "2")
    with pytest.raises(RuntimeError, match="killed"):
        tds_main(args)
    assert [p.name for p in (tmp_path / "run" / "parts").iterdir()] == ["part-000000.parquet"]
    assert not (tmp_path / "run" / "summary.json").exists()
    calls.clear()
    monkeypatch.setattr(tds.run, "token_shifts", lambda *a, **k: calls.append(1) or real(*a, **k))
    tds_main(args)
    assert len(calls) == 2  # parts 1 and 2 only
    resumed, clean = read_table(tmp_path / "run" / TOKEN_TABLE), read_table(analysed / TOKEN_TABLE)
    for key, values in clean.items():
        np.testing.assert_array_equal(resumed[key], values, err_msg=key)
    tds_main(args)  # finished: skipped
    assert len(calls) == 2


def test_other_settings_in_a_finished_dir_need_force(analysed, tiny_models, rows, capsys):
    data = read_json(analysed / "config.json")["data"]
    with pytest.raises(SystemExit) as exit_info:
        tds_main(flags(tiny_models, data, analysed, "--examples_per_part", "2", "--top_k", "3"))
    assert exit_info.value.code == 2
    assert "top_k: 10 -> 3" in capsys.readouterr().err


def test_bad_input_is_one_line_and_exit_2(tiny_models, tmp_path, capsys):
    result = subprocess.run([sys.executable, "-m", "tds",
                             *flags(tiny_models, tmp_path / "missing.jsonl", tmp_path / "a")],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in result.stderr
    assert "missing.jsonl: file not found" in result.stderr
    (tmp_path / "bad.jsonl").write_text('{"instruction": "hi", "output": "Sure!"}\n{"instruction": "no output"}\n')
    (tmp_path / "empty.jsonl").write_text('{"instruction": "hi", "output": ""}\n'
                                          '{"instruction": "a", "output": ["<|end|>"]}\n')
    for bad_flags, message in ((flags(tiny_models, tmp_path / "bad.jsonl", tmp_path / "b"),
                                "bad.jsonl: row 1: missing field 'output'"),
                               (flags(tiny_models, tmp_path / "empty.jsonl", tmp_path / "e"),  # was NaN ratios
                                "empty.jsonl: all 2 responses are empty: no response token to analyse"),
                               (flags(tiny_models, tmp_path / "bad.jsonl", tmp_path / "c", "--top_k", "0"),
                                "--top_k: expected a value >= 1, got 0")):
        with pytest.raises(SystemExit) as exit_info:
            tds_main(bad_flags)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and message in err[-1], err


def test_generate_then_analyse_from_a_plan(tiny_models, tmp_path):
    """generate=true in a plan: tiny-chat answers, the run analyses its own responses."""
    rows = [{"id": f"q{i}", "instruction": text} for i, text in
            enumerate(["What is the capital of Italy?", "How can I steal a bike from the train station?",
                       "Give me three tips for a good night's sleep."])]
    write_jsonl(tmp_path / "instructions.jsonl", rows)
    plan = {"name": "t", "configurations": [{"base_config": {
        "base_model": tiny_models["base"], "aligned_model": tiny_models["chat"],
        "data": str(tmp_path / "instructions.jsonl"), "generate": True, "max_new_tokens": 24,
        "outputs_dir": str(tmp_path / "out"), "experiment_name": "gen_{max_new_tokens}", "base_template": QA,
        "viewer_examples": 0}}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    tds_main(["--plan_config_path", str(tmp_path / "plan.json")])
    run_dir = tmp_path / "out" / "gen_24"
    responses = read_jsonl(run_dir / "responses.jsonl")
    assert [r["id"] for r in responses] == ["q0", "q1", "q2"]
    assert all(r["generator"] == tiny_models["chat"] and r["output"][0] for r in responses)
    # The stand-alone generator writes the same rows.
    generate_main(["--model", tiny_models["chat"], "--data", str(tmp_path / "instructions.jsonl"),
                   "--output", str(tmp_path / "gen.jsonl"), "--max_new_tokens", "24"])
    assert read_jsonl(tmp_path / "gen.jsonl") == responses
    examples = read_table(run_dir / EXAMPLE_TABLE)
    assert list(examples["aligned_prompt"]) == [r["input"] for r in responses]
    assert examples["num_tokens"].min() > 0


def test_two_processes_share_the_parts(tiny_models, rows, analysed, tmp_path):
    """torchrun with 2 CPU processes (gloo): each analyses every other part; the merged table is the same."""
    import socket

    write_jsonl(tmp_path / "data.jsonl", rows)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "tds",
                             *flags(tiny_models, tmp_path / "data.jsonl", tmp_path / "run",
                                    "--examples_per_part", "2")],
                            cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    # Info lines come from rank 0 only: it took 2 of the 3 parts, so the complete table below holds
    # the third from process 1.
    assert "process 0 of 2: 2 of its 2 parts" in result.stderr and "process 1 of 2" not in result.stderr
    merged, single = read_table(tmp_path / "run" / TOKEN_TABLE), read_table(analysed / TOKEN_TABLE)
    for key, values in single.items():
        np.testing.assert_allclose(merged[key], values, rtol=1e-5, atol=1e-5, err_msg=key)
