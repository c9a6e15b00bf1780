"""The results printer on hand-written runs: printed numbers, plots, no double counting, one-line errors."""
import subprocess
import sys
from pathlib import Path

from persona_experiments.results import main

REPO = Path(__file__).resolve().parents[2]


def test_printed_tables_match_the_hand_computation(runs_dir, capsys):
    main(["--experiments_dir", str(runs_dir)])
    out = capsys.readouterr().out
    assert out.startswith("4 finished runs under")
    assert "skipped 1 unfinished; 1 finished runs without token metrics (SFT) not shown" in out
    first, second = out.split("run set ")[1:]
    assert first.startswith("no_vs_never: 3 runs")
    assert "left out, train loss rose at some step: 1/3 runs (c)" in first
    assert "y+ probability fell at some step (vs the step before): 2/2 runs" in first
    assert "y+ probability below its initial value at the end:     2/2 runs" in first
    assert "first step it fell: min 1, median 1.5, mean 1.5, max 2" in first
    # a: 0.6 -> 0.4 over steps 0 -> 2; log 0.6 - log 0.4 = 0.4055. b: 0.7 -> 0.5 over steps 1 -> 2.
    assert "0.2000 (0.6000 -> 0.4000, steps 0->2)" in first and "0.4055 (-0.5108 -> -0.9163, steps 0->2)" in first
    assert "0.2000 (0.7000 -> 0.5000, steps 1->2)" in first
    assert "' Yes': 0.0500 -> 0.2000" in first  # the other token that rose most, first and last probability
    assert "step   1 top-2: ' No': 2/2 +5.50e-02, ' Yes': 2/2 +5.00e-02" in first
    assert any(line.split() == ["||h", "-", "h_init||", "1", "2"] for line in first.splitlines())
    assert second.startswith("yes_vs_no/nested: 1 runs") and "y+ ' Yes' vs y- ' No'" in second
    assert "y+ probability fell at some step (vs the step before): 0/1 runs" in second
    for png in (runs_dir / "no_vs_never" / "persona_No_vs_Never.png",
                runs_dir / "yes_vs_no" / "nested" / "persona_Yes_vs_No.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

    main(["--experiments_dir", str(runs_dir), "--no_plots"])  # a second reading counts every run once
    again = capsys.readouterr().out
    assert again.startswith("4 finished runs under") and "plot:" not in again


def test_keep_loss_increase(runs_dir, capsys):
    main(["--experiments_dir", str(runs_dir / "no_vs_never"), "--keep_loss_increase", "--no_plots"])
    out = capsys.readouterr().out
    assert "left out" not in out and "y+ probability fell at some step (vs the step before): 2/3 runs" in out


def test_bad_directory_is_one_line_and_exit_2(tmp_path):
    for args in (["--experiments_dir", str(tmp_path / "missing")], ["--experiments_dir", str(tmp_path)]):
        result = subprocess.run([sys.executable, "-m", "persona_experiments.results", *args], cwd=REPO,
                                capture_output=True, text=True)
        assert result.returncode == 2 and result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")


def test_mechanism_table_and_tokens_per_line(tmp_path, capsys):
    from tests.persona_experiments.conftest import write_run
    from tests.persona_experiments.test_analysis import write_mechanism

    write_run(tmp_path / "a", [0.6, 0.5, 0.4], [0.69, 0.6, 0.5], [[1, 2, 5], [1, 5, 4]], [[0.05, 0.01, 0.005],
                                                                                           [0.1, 0.02, 0.01]])
    write_mechanism(tmp_path / "a", [0, 2], [[1.0, 3.0], [2.0, 2.0]], [[0.0, 1.0], [1.0, 1.0]],
                    [[4.0, 2.0], [4.0, 2.0]],
                    [[-3.0, -1.0], [-3.0, -1.0]], [2, 1], [[1, 4], [1, 4]])
    main(["--experiments_dir", str(tmp_path), "--no_plots", "--num_tokens_to_print", "2"])
    out = capsys.readouterr().out
    # printed steps 1, 5, ...: only step 1 exists
    assert "step   1 top-3: ' Yes': 1/1 +5.00e-02, ' No': 1/1 +1.00e-02, ... (1 more)" in out
    assert "step   1 top-2: ' Yes': 1/1 +2.00e+00, ' Sure': 1/1 +1.00e+00" in out  # by log-prob increase
    table = out[out.index("mechanism, D(z)"):]
    # step 1: rank 0, rise ranks 0 / 1; D of log-P risers (1 + 3) / 2, of P risers 0.5; top-2 D 3, bottom -2
    row = ["1", "0", "0", "1", "2", "0.5", "3", "-2", "2.0/2", "1.0/2"]
    assert any(line.split() == row for line in table.splitlines())
    assert ("tokens with the largest D at step 0 (token: runs / mean D): "
            "' Yes': 1/1 +4.00e+00, ' Sure': 1/1 +2.00e+00") in out
    assert "tokens with the smallest D at step 0: ' Never': 1/1 -3.00e+00, ' Maybe': 1/1 -1.00e+00" in out
