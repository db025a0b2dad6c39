"""Bootstrap intervals over customers: they contain the estimate, are reproducible and
order-independent, and the paired difference tells a planted effect from none."""

import json
import math

import numpy as np
import pytest

from hmrec.evaluation import System, evaluate_systems, write_evaluation
from hmrec.evaluation.intervals import (
    bootstrap_interval,
    bootstrap_means,
    paired_difference,
    summary_line,
    verdict,
)


def _ap_like(n: int, seed: int, hit_rate: float = 0.2) -> np.ndarray:
    """Mostly zeros, the rest from a small set of AP-like values (per-customer MAP@12)."""
    rng = np.random.default_rng(seed)
    levels = np.array([1.0, 0.5, 1 / 3, 0.25, 0.75, 0.2, 0.1])
    return np.where(rng.random(n) < hit_rate, levels[rng.integers(0, levels.size, n)], 0.0)


def _continuous(n: int, seed: int) -> np.ndarray:
    """All values distinct: the index-drawing path, not the multinomial one."""
    return np.random.default_rng(seed).random(n) ** 3


@pytest.mark.parametrize("values", [_ap_like(2000, 1), _continuous(2000, 2), np.array([0.0, 1.0]),
                                    np.array([0.3] * 5)])
def test_interval_contains_the_point_estimate(values):
    lo, hi = bootstrap_interval(values)
    mean = math.fsum(values) / values.size
    assert lo <= mean <= hi
    assert 0.0 <= lo and hi <= 1.0


def test_interval_width_matches_the_standard_error():
    # the percentile interval of a mean is about +-1.96 standard errors wide
    for values in (_ap_like(5000, 3), _continuous(5000, 4)):
        lo, hi = bootstrap_interval(values)
        se = values.std(ddof=1) / math.sqrt(values.size)
        assert (hi - lo) == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_bootstrap_means_resample_the_values():
    # two values, n=2: the resampled mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4
    means = bootstrap_means([0.0, 1.0], n_resamples=4000)
    assert set(np.unique(means)) <= {0.0, 0.5, 1.0}
    assert np.mean(means == 0.5) == pytest.approx(0.5, abs=0.04)


def _mixed(n: int, seed: int) -> np.ndarray:
    """Common values (drawn by the multinomial) and rare ones (drawn one by one) together."""
    rng = np.random.default_rng(seed)
    values = _ap_like(n, seed)
    rare = rng.random(n) < 0.1
    values[rare] = rng.random(int(rare.sum()))
    return values


@pytest.mark.parametrize("make", [_ap_like, _mixed, _continuous])
def test_bootstrap_means_have_the_sampling_distribution_of_the_mean(make):
    # whichever way the draws are made, the resampled means centre on the sample mean and
    # spread by its standard error, as resampling customer indices would
    values = make(4000, 15)
    means = bootstrap_means(values, n_resamples=2000)
    se = values.std() / math.sqrt(values.size)
    assert abs(means.mean() - values.mean()) < 0.1 * se
    assert means.std() == pytest.approx(se, rel=0.08)


def test_same_input_gives_the_same_interval_and_another_seed_another():
    values = _continuous(3000, 5)
    assert bootstrap_interval(values) == bootstrap_interval(values.copy())
    assert bootstrap_interval(values, seed=1) != bootstrap_interval(values, seed=2)


@pytest.mark.parametrize("values", [_ap_like(3000, 6), _continuous(3000, 7)])
def test_shuffled_customer_order_gives_the_identical_interval(values):
    base = bootstrap_interval(values)
    for seed in range(3):
        shuffled = np.random.default_rng(seed).permutation(values)
        assert bootstrap_interval(shuffled) == base


def test_identical_systems_differ_by_exactly_zero():
    values = _ap_like(2000, 8)
    d = paired_difference(values, values.copy())
    assert d == {"diff": 0.0, "ci95": [0.0, 0.0]}
    assert verdict(d) == "not distinguishable"


def test_systems_that_differ_only_by_noise_have_an_interval_around_zero():
    a, b = _ap_like(3000, 9), _ap_like(3000, 10)  # same distribution, independent
    d = paired_difference(a, b)
    lo, hi = d["ci95"]
    assert lo < 0 < hi and lo <= d["diff"] <= hi
    assert verdict(d) == "not distinguishable"


def test_a_planted_large_difference_excludes_zero():
    b = _ap_like(3000, 11, hit_rate=0.1)
    a = _ap_like(3000, 12, hit_rate=0.3)
    d = paired_difference(a, b)
    assert 0 < d["ci95"][0] <= d["diff"] <= d["ci95"][1]
    assert verdict(d) == "better"
    assert verdict(paired_difference(b, a)) == "worse"


def test_pairing_narrows_the_interval_of_a_small_shared_effect():
    # b = a minus a little for a few customers: unpaired noise would hide it, pairing does not
    a = _continuous(2000, 13)
    b = a.copy()
    b[::10] -= 0.05
    d = paired_difference(a, b)
    assert d["ci95"][0] > 0
    lo_a, hi_a = bootstrap_interval(a)
    assert d["ci95"][1] - d["ci95"][0] < (hi_a - lo_a) / 5


def test_summary_line_never_calls_an_undistinguishable_difference_better():
    differences = {
        "popularity": {"map_at_12": {"diff": 0.02, "ci95": [0.01, 0.03]}},
        "als": {"map_at_12": {"diff": 0.004, "ci95": [-0.001, 0.009]}},
        "repurchase_popularity": {"map_at_12": {"diff": -0.01, "ci95": [-0.02, -0.005]}},
    }
    line = summary_line(differences, "map_at_12", n_customers=1234, label="MAP@12")
    assert line.startswith("MAP@12 (1,234 customers): pipeline beats popularity;")
    assert "not distinguishable from als at this sample size" in line
    assert "worse than repurchase_popularity" in line
    assert "beats als" not in line and "beats popularity and als" not in line
    only_noise = summary_line({"als": differences["als"]}, "map_at_12")
    assert "beats" not in only_noise and "pipeline is not distinguishable from als at this sample size" in only_noise


def test_evaluate_json_carries_intervals_and_paired_differences(tmp_path):
    rng = np.random.default_rng(14)
    actual = {f"c{i:04d}": [f"a{j}" for j in rng.choice(30, size=3, replace=False)] for i in range(400)}
    good = {c: list(bought) + ["a29"] for c, bought in actual.items()}  # finds everything
    same = System(recommend=lambda ids, k: {c: good[c] for c in ids})

    def poor(ids, k):
        return {c: [f"a{j}" for j in range(12)] for c in ids}

    result = evaluate_systems(actual, {"popularity": poor, "pipeline": same, "copy": same})
    doc = json.loads(write_evaluation(result, tmp_path).read_text())
    assert doc["n_customers"] == 400 and doc["reference"] == "pipeline"
    assert set(doc["intervals"]) == {"popularity", "pipeline", "copy"}
    for system, by_metric in doc["intervals"].items():
        assert set(by_metric) == {"map_at_12", "recall_at_12", "ndcg_at_12"}
        for metric, (lo, hi) in by_metric.items():
            assert lo <= doc["metrics"][system][metric] <= hi
    assert doc["intervals"]["pipeline"]["map_at_12"] == [1.0, 1.0]  # every customer scores 1
    assert set(doc["differences"]) == {"popularity", "copy"}
    assert doc["differences"]["copy"]["map_at_12"] == {"diff": 0.0, "ci95": [0.0, 0.0]}
    pop = doc["differences"]["popularity"]["map_at_12"]
    assert pop["diff"] == pytest.approx(1.0 - doc["metrics"]["popularity"]["map_at_12"])
    assert pop["ci95"][0] > 0
    assert doc["bootstrap"]["resamples"] == 1000

    # the same customers in another order: the same intervals and differences
    shuffled = dict(sorted(actual.items(), key=lambda kv: kv[0][::-1]))
    again = evaluate_systems(shuffled, {"popularity": poor, "pipeline": same, "copy": same}, batch_size=37)
    assert again.intervals == result.intervals and again.differences == result.differences
