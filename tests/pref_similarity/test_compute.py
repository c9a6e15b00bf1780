"""python -m pref_similarity.compute: output layout, the public draw and drop-then-subsample, resume, errors."""
import json
import random
import subprocess
import sys

import pytest
import torch

import pref_similarity.compute as compute
from ches.measures import similarity_rows
from ches.similarity_file import FILE_NAME, read_similarities
from common.preference_data import Tokenization, tokenize_pairs
from common.tracking import read_json
from pref_similarity.preference_sets import load_preference_set
from tests.pref_similarity.conftest import PLAIN, REPO, ULTRAFEEDBACK


def args(model, out, dataset=PLAIN, *extra):
    return ["--model", model, "--dataset", str(dataset), "--output_dir", str(out), "--batch_size", "4", *extra]


def test_the_default_draw_is_the_public_randperm_over_the_whole_split(tiny_models, tmp_path):
    out_dir = compute.main(args(tiny_models["chat"], tmp_path, ULTRAFEEDBACK, "--max_input_length", "-1",
                                "--num_train_samples", "50", "--train_samples_random_seed", "548"))
    # The public script: torch.randperm(len(split), generator=torch.Generator().manual_seed(548))[:5000].
    public = torch.randperm(400, generator=torch.Generator().manual_seed(548))[:50]
    assert sorted(read_similarities(out_dir)) == sorted(public.tolist())


def test_after_drop_draws_from_the_examples_kept(tiny_models, tiny_chat, tmp_path):
    """Ours: the examples left after truncation (none dropped here) are drawn with random.Random(seed)."""
    _, tokenizer = tiny_chat
    kept, _ = tokenize_pairs(load_preference_set(str(ULTRAFEEDBACK)).rows, tokenizer, Tokenization(max_length=-1),
                             source="fixture")
    out_dir = compute.main(args(tiny_models["chat"], tmp_path, ULTRAFEEDBACK, "--max_input_length", "-1",
                                "--num_train_samples", "50", "--train_samples_random_seed", "548",
                                "--sample_draw", "after_drop"))
    assert sorted(read_similarities(out_dir)) == sorted(e.index for e in random.Random(548).sample(kept, 50))


def test_truncates_long_examples_and_keeps_them(tiny_models, tiny_chat, tmp_path):
    """The public protocol: prompt + response cut to max_input_length tokens, the example kept."""
    _, tokenizer = tiny_chat
    all_examples, _ = tokenize_pairs(load_preference_set(str(ULTRAFEEDBACK)).rows, tokenizer, Tokenization(),
                                     source="fixture")
    limit = max(len(e.prompt_ids) for e in all_examples) + 3  # every prompt fits: no response ends up empty
    full = {e.index: e for e in all_examples}
    too_long = sum(e.length > limit for e in all_examples)
    assert too_long > 10
    out_dir = compute.main(args(tiny_models["chat"], tmp_path, ULTRAFEEDBACK, "--max_input_length", str(limit),
                                "--batch_size", "32"))
    assert out_dir == tmp_path / f"{tiny_models['chat'].rstrip('/').split('/')[-1]}_ultrafeedback_tiny"
    rows = read_similarities(out_dir)
    assert len(rows) == 400
    for i, row in rows.items():  # each response keeps its first limit - |x| tokens
        e = full[i]
        assert (row["prompt_len"], row["preferred_len"], row["dispreferred_len"]) == (
            len(e.prompt_ids), min(len(e.chosen_ids), limit - len(e.prompt_ids)),
            min(len(e.rejected_ids), limit - len(e.prompt_ids)))
    info = read_json(out_dir / "info.json")
    assert (info["complete"], info["num_examples"], info["truncation"], info["dataset_rows"]) == (
        True, 400, {"examples": 400, "truncated": too_long, "dropped_empty_response": 0}, 400)


def test_interrupted_run_resumes_without_recomputing(tiny_models, tiny_chat, tmp_path, monkeypatch):
    model_path = tiny_models["chat"]
    computed = []

    def interrupted_after_two_chunks(model, examples, **kw):
        if len(computed) == 8:
            raise KeyboardInterrupt
        computed.extend(e.index for e in examples)
        return similarity_rows(model, examples, **kw)

    monkeypatch.setattr(compute, "similarity_rows", interrupted_after_two_chunks)
    with pytest.raises(SystemExit) as exit_info:
        compute.main(args(model_path, tmp_path / "resumed"))
    assert exit_info.value.code == 130
    out_dir = compute.similarity_dir(tmp_path / "resumed", model_path, str(PLAIN))
    first = list(computed)
    assert set(read_similarities(out_dir)) == set(first) and len(first) == 8
    assert read_json(out_dir / "info.json")["complete"] is False
    with open(out_dir / FILE_NAME, "a") as f:
        f.write('{"index": 39, "ches": 1.')  # a process killed in the middle of a line

    computed.clear()
    monkeypatch.setattr(compute, "similarity_rows", lambda model, examples, **kw: (
        computed.extend(e.index for e in examples), similarity_rows(model, examples, **kw))[1])
    compute.main(args(model_path, tmp_path / "resumed"))
    assert set(computed) == set(range(40)) - set(first) and len(computed) == 32  # nothing computed twice
    lines = (out_dir / FILE_NAME).read_text().splitlines()
    assert sorted(json.loads(line)["index"] for line in lines) == list(range(40))

    reference = compute.main(args(model_path, tmp_path / "uninterrupted"))
    resumed, whole = read_similarities(out_dir), read_similarities(reference)
    for i in range(40):
        assert resumed[i]["ches"] == pytest.approx(whole[i]["ches"], rel=1e-5, abs=1e-4)
        assert resumed[i]["minus_normalized_edit_distance"] == whole[i]["minus_normalized_edit_distance"]


def test_other_settings_in_the_same_directory_are_an_error(tiny_models, tmp_path, capsys):
    compute.main(args(tiny_models["chat"], tmp_path, PLAIN, "--num_train_samples", "6"))
    with pytest.raises(SystemExit) as exit_info:
        compute.main(args(tiny_models["chat"], tmp_path, PLAIN, "--num_train_samples", "7"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "holds similarities computed with other settings (num_train_samples: 6 -> 7)" in err


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pref_similarity.compute", "--model", "outputs/nope",
                             "--dataset", str(tmp_path / "missing.jsonl"), "--output_dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.jsonl'}: file not found"]


def test_nothing_fitting_max_input_length_is_an_error(tiny_models, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        compute.main(args(tiny_models["chat"], tmp_path, PLAIN, "--max_input_length", "5"))
    assert exit_info.value.code == 2
    assert ("no example to compute (40 of 40 have an empty response after truncation to --max_input_length 5"
            in capsys.readouterr().err)


@pytest.mark.parametrize("flags, message", [
    (["--device", "foo"], "error: --device 'foo': not a device; use auto, cpu, cuda or cuda:N"),
    (["--layer", "50"], "error: --layer 50: the model has "),
])
def test_bad_device_or_layer_is_one_line_error(tiny_models, tmp_path, capsys, flags, message):
    """Both used to end in a traceback (torch's device parser, an IndexError in the hidden-state tuple)."""
    with pytest.raises(SystemExit) as exit_info:
        compute.main(args(tiny_models["chat"], tmp_path, PLAIN, *flags))
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith(message)  # (stderr also holds the weight-loading bar)


def test_every_hidden_layer_in_range_is_accepted(tiny_chat):
    model, _ = tiny_chat
    layers = model.config.num_hidden_layers
    for layer in (-(layers + 1), -1, 0, layers):
        compute.check_layer(layer, model)
    for layer in (-(layers + 2), layers + 1):
        with pytest.raises(compute.ConfigError):
            compute.check_layer(layer, model)
