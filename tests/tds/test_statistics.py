"""Statistics on the hand-made table of conftest.py, worked out by hand.

    example 0 (4 tokens): categories 2 0 1 0   example 1 (2 tokens): 2 2   example 2 (1 token): 0
"""
import math

import numpy as np
import pytest

from tds import statistics
from tds.results import main as results_main
from tests.tds.conftest import hand_table


def test_pooled_and_per_example_ratios():
    table = hand_table()
    ratios = statistics.category_ratios(table["category"])
    assert ratios == pytest.approx({"unshifted": 3 / 7, "marginal": 1 / 7, "shifted": 3 / 7})
    per_example = statistics.per_example(table)
    np.testing.assert_array_equal(per_example["num_tokens"], [4, 2, 1])
    np.testing.assert_array_equal(per_example["shifted"], [1, 2, 0])
    np.testing.assert_allclose(per_example["shifted_ratio"], [0.25, 1.0, 0.0])
    np.testing.assert_allclose(per_example["unshifted_ratio"], [0.5, 0.0, 1.0])
    np.testing.assert_allclose(per_example["mean_kl_aligned_base"], [1.6 / 4, 1.5, 0.0])
    summary = statistics.summarize(table)
    assert summary["mean_example_shifted_ratio"] == pytest.approx((0.25 + 1 + 0) / 3)
    assert summary["num_examples"] == 3 and summary["num_positions"] == 7 and summary["aligned_top1_ratio"] == 1.0
    assert summary["mean_kl_aligned_base"] == pytest.approx(4.6 / 7)
    assert summary["mean_kl_base_aligned"] == math.inf  # one position has infinite KL(b||a): reported, not hidden


def test_shift_rate_and_kl_by_position():
    table = hand_table()
    profile = statistics.absolute_position_profile(table, max_position=5)
    np.testing.assert_array_equal(profile["count"], [3, 2, 1, 1, 0])
    np.testing.assert_allclose(profile["shifted_rate"], [2 / 3, 1 / 2, 0, 0, np.nan])
    np.testing.assert_allclose(profile["marginal_rate"], [0, 0, 1, 0, np.nan])
    np.testing.assert_allclose(profile["kl_aligned_base"], [1.0, 0.5, 0.5, 0.1, np.nan])
    np.testing.assert_allclose(profile["base_prob"], [(0.1 + 0.05 + 0.8) / 3, 0.3, 0.2, 0.9, np.nan], rtol=1e-6)
    # Relative position pos/len in 2 bins: bin 0 = ex0 pos 0-1, ex1 pos 0, ex2 pos 0; bin 1 = the rest.
    relative = statistics.relative_position_profile(table, n_bins=2)
    np.testing.assert_array_equal(relative["count"], [4, 3])
    np.testing.assert_allclose(relative["shifted_rate"], [2 / 4, 1 / 3])
    labels, buckets = statistics.bucketed_position_profile(table, edges=(0, 1, 3))
    assert labels == ["0", "1-2", "3+"]
    np.testing.assert_allclose(buckets["shifted_rate"], [2 / 3, 1 / 3, 0])


def naive_overlaps(base_ids, base_probs, aligned_ids, aligned_probs, k):
    """One position, AlignTDS's definitions written out with sets and dicts."""
    b, a = list(base_ids[:k]), list(aligned_ids[:k])
    jaccard = len(set(b) & set(a)) / len(set(b) | set(a))
    p_b, p_a = dict(zip(b, base_probs[:k])), dict(zip(a, aligned_probs[:k]))
    weighted = sum(p_b.get(v, 0.0) * p_a.get(v, 0.0) for v in set(b) | set(a))
    relevance = {v: 1 / math.log2(j + 2) for j, v in enumerate(a)}
    dcg = sum(relevance.get(v, 0.0) / math.log2(i + 2) for i, v in enumerate(b))
    idcg = sum(1 / math.log2(i + 2) ** 2 for i in range(k))
    return {"jaccard": jaccard, "ndcg": dcg / idcg, "weighted_overlap": weighted}


def test_topk_overlaps_hand_worked():
    # every row: base (5, 7, 9) with P (.5, .3, .1), aligned (9, 7, 5) with P (.6, .2, .1)
    overlaps = statistics.topk_overlaps(hand_table())
    np.testing.assert_allclose(overlaps["jaccard"], 1.0)
    np.testing.assert_allclose(overlaps["weighted_overlap"], 0.5 * 0.1 + 0.3 * 0.2 + 0.1 * 0.6, rtol=1e-6)
    # rel(5) = 1/log2(4), rel(7) = 1/log2(3), rel(9) = 1: DCG = 0.5/1 + (1/log2 3)/log2 3 + 1/2
    l3 = math.log2(3)
    np.testing.assert_allclose(overlaps["ndcg"], (0.5 + 1 / l3 ** 2 + 0.5) / (1 + 1 / l3 ** 2 + 0.25))
    # k = 1: {5} vs {9}, nothing shared
    top1 = statistics.topk_overlaps(hand_table(), k=1)
    assert top1["jaccard"].max() == 0 and top1["ndcg"].max() == 0 and top1["weighted_overlap"].max() == 0
    with pytest.raises(ValueError, match="stores the top 3"):
        statistics.topk_overlaps(hand_table(), k=4)


def test_topk_overlaps_match_a_naive_computation():
    rng = np.random.default_rng(0)
    n, k, vocab = 200, 6, 10
    base_ids = np.stack([rng.permutation(vocab)[:k] for _ in range(n)]).astype(np.int32)
    aligned_ids = np.stack([rng.permutation(vocab)[:k] for _ in range(n)]).astype(np.int32)
    base_p = np.sort(rng.dirichlet(np.ones(vocab), n), axis=1)[:, ::-1][:, :k]
    aligned_p = np.sort(rng.dirichlet(np.ones(vocab), n), axis=1)[:, ::-1][:, :k]
    table = {"base_topk_ids": base_ids, "aligned_topk_ids": aligned_ids,
             "base_topk_logprobs": np.log(base_p), "aligned_topk_logprobs": np.log(aligned_p)}
    for kk in (1, 3, k):
        ours = statistics.topk_overlaps(table, kk)
        for i in range(n):
            expected = naive_overlaps(base_ids[i], base_p[i], aligned_ids[i], aligned_p[i], kk)
            for name, value in expected.items():
                assert ours[name][i] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, i, kk)


def test_overlaps_in_the_summary_and_by_position():
    table = hand_table()
    table["aligned_topk_ids"][0] = [1, 2, 3]  # position 0 of example 0 shares nothing
    summary = statistics.summarize(table)
    assert summary["top_k"] == 3 and summary["mean_jaccard"] == pytest.approx(6 / 7)
    profile = statistics.absolute_position_profile(table, max_position=2)
    np.testing.assert_allclose(profile["jaccard"], [2 / 3, 1.0])  # position 0: rows 0, 4, 6


def test_most_shifted_tokens():
    table = hand_table()
    tokens = statistics.most_shifted_tokens(table["token_id"], table["category"], top=5)
    assert tokens == [{"token_id": 5, "shifted": 2, "occurrences": 3, "shifted_share": pytest.approx(2 / 3)},
                      {"token_id": 8, "shifted": 1, "occurrences": 1, "shifted_share": 1.0}]


def test_results_cli_prints_tables_and_writes_plots(hand_analysis_dir, tmp_path, capsys):
    second = tmp_path / "second_pair"
    second.mkdir()
    for f in hand_analysis_dir.iterdir():
        (second / f.name).write_bytes(f.read_bytes())
    results_main(["--analysis_dir", str(hand_analysis_dir), str(second), "--plots_dir", str(tmp_path / "plots"),
                  "--max_position", "4"])
    out = capsys.readouterr().out
    assert "hand_pair" in out and "second_pair" in out
    assert "42.9%" in out  # 3/7 shifted, pooled
    assert "Jaccard@k" in out and "0.170" in out  # the weighted overlap of every hand-made position
    assert "<script>window.pwned=1</script>" in out  # the most shifted token, printed as text
    for name in ("tds_category_ratios.png", "tds_by_position.png", "tds_by_relative_position.png",
                 "tds_example_shift_ratios.png", "tds_results.json"):
        assert (tmp_path / "plots" / name).stat().st_size > 0


def test_results_cli_finds_the_finished_runs_under_experiments_dir(hand_analysis_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    for name, finished in (("pair_a", True), ("pair_b", False)):
        (runs / name).mkdir(parents=True)
        for f in hand_analysis_dir.iterdir():
            (runs / name / f.name).write_bytes(f.read_bytes())
        if finished:
            (runs / name / "summary.json").write_text('{"status": "finished"}')
    results_main(["--experiments_dir", str(runs), "--plots_dir", str(tmp_path / "plots"), "--max_position", "4"])
    out = capsys.readouterr().out
    assert "pair_a" in out and "pair_b" not in out and "42.9%" in out


def test_results_cli_missing_dir_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        results_main(["--analysis_dir", str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "token_shifts.parquet: not found" in err and "\n" not in err


@pytest.mark.parametrize("flag", ["--top_tokens", "--max_position", "--relative_bins"])
def test_results_cli_non_positive_counts_are_one_line_errors(hand_analysis_dir, tmp_path, capsys, flag):
    """--top_tokens -1 used to drop the last token of the table silently; 0 bins gave empty tables."""
    with pytest.raises(SystemExit) as exit_info:
        results_main(["--analysis_dir", str(hand_analysis_dir), "--plots_dir", str(tmp_path), flag, "-1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {flag}: expected a value >= 1, got -1"
