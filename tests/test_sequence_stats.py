"""Statistics of spacing sequences (seqlab/zeta/sequence_stats.py) and the spectra report
(seqlab/mdn/generate.py) on planted truth: GUE samples against GUE theory within their own error
bars, Poisson and i.i.d. against theirs, planted sinusoids found at the prime lines."""
import math

import numpy as np
import pytest
import torch

from seqlab.mdn import generate, mixture
from seqlab.zeta import rmt, sequence_stats as ss, spectra


@pytest.fixture(scope="module")
def gue():
    return generate.gue_blocks(40 * 128, 128, seed=1)          # (40, 128) unfolded GUE spacings


def _z(curve, ref):
    m, e = np.asarray(curve["mean"]), np.asarray(curve["sem"])
    return (m - ref) / e


def test_gue_matches_known_r2_and_sigma2_within_its_error_bars(gue):
    rep = generate.compare({"data": gue}, height=1e6, block=128, n_boot=10)
    c, ref = rep["sources"]["data"]["curves"], ss.references()
    for key in ("r2", "sigma2"):
        z = _z(c[key], ref[key])
        assert np.all(np.isfinite(z))
        assert np.mean(np.abs(z) < 2) >= 0.85 and np.max(np.abs(z)) < 4, (key, np.round(z, 1))
    # the same test rejects i.i.d. Wigner draws (no level repulsion beyond the neighbour, no rigidity)
    wig = rmt.wigner_sample(gue.size, np.random.default_rng(0)).reshape(gue.shape)
    cw = generate.compare({"data": wig}, height=1e6, block=128, n_boot=10)["sources"]["data"]["curves"]
    assert np.max(np.abs(_z(cw["sigma2"], ref["sigma2"]))) > 10


def test_poisson_has_flat_r2_and_linear_sigma2():
    s = np.random.default_rng(0).exponential(size=(30, 512))
    c = ss.curves(ss.per_block(s))
    r2 = np.asarray(c["r2"]["mean"])
    assert np.all(np.abs(r2 - 1) < 4 * np.asarray(c["r2"]["sem"]) + 0.02)
    L = ss.SIGMA2_L <= 10
    assert np.allclose(np.asarray(c["sigma2"]["mean"])[L], ss.SIGMA2_L[L], rtol=0.15)
    assert np.all(np.abs(np.asarray(c["sff"]["mean"]) - 1) < 4 * np.asarray(c["sff"]["sem"]))
    assert np.all(np.abs(np.asarray(c["acf"]["mean"])) < 0.03)


def test_distances_are_small_for_the_same_law_and_large_for_another(gue):
    other = generate.gue_blocks(40 * 128, 128, seed=2)
    wig = rmt.wigner_sample(gue.size, np.random.default_rng(0)).reshape(gue.shape)
    same = ss.distances(ss.per_block(other), ss.per_block(gue), n_boot=20)
    diff = ss.distances(ss.per_block(wig), ss.per_block(gue), n_boot=20)
    for k in ("sigma2", "acf"):
        assert diff[k]["value"] > same[k]["value"] + 3 * (diff[k]["boot_std"] + same[k]["boot_std"]), k


def test_planted_sinusoids_are_found_at_the_prime_lines():
    height, n = 1.0e6, 4096
    t = np.arange(n)
    f2, f3 = spectra.prime_line(2, height), spectra.prime_line(3, height)
    rng = np.random.default_rng(0)
    s = 1 + 0.05 * np.cos(2 * np.pi * f2 * t) + 0.05 * np.cos(2 * np.pi * f3 * t + 1) + 0.3 * rng.standard_normal((4, n))
    freqs, power = ss.mean_periodogram(s)
    rows = {r["p"]: r for r in ss.prime_lines(freqs, power, height, primes=(2, 3, 5))}
    assert abs(rows[2]["rel_err"]) < 2e-3 and abs(rows[3]["rel_err"]) < 2e-3
    assert rows[2]["peak_over_median"] > 20 and rows[3]["peak_over_median"] > 10
    assert rows[5]["peak_over_median"] < 10                        # nothing planted there


def test_moments_by_segment_see_a_drift():
    x = np.ones((3, 600)) + np.linspace(0, 0.5, 600) + 0.01 * np.random.default_rng(0).standard_normal((3, 600))
    m = ss.moments(x)
    assert m["0:128"]["mean"] < m["128:512"]["mean"] < m["512:600"]["mean"]
    assert m["all"]["n"] == 1800


def test_free_run_slides_the_window_and_feeds_back_draws():
    seen = []

    def stepper(h):                    # the next spacing = the mean of the window, deterministic
        seen.append(h.shape[1])
        return mixture.gaussian(h.mean(1), torch.full((len(h),), 1e-9, dtype=torch.float64))
    ctx = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    out = generate.free_run(stepper, ctx, 4)
    assert set(seen) == {3}
    assert out.shape == (2, 4)
    assert out[0, 0] == pytest.approx(2.0, abs=1e-6) and out[0, 1] == pytest.approx(7 / 3, abs=1e-6)
    assert np.allclose(out[1], 2.0, atol=1e-6)


def test_gue_blocks_have_mean_one_and_gue_lag1():
    g = generate.gue_blocks(20 * 256, 256, seed=0)
    assert g.shape == (20, 256)
    assert abs(g.mean() - 1) < 0.01
    assert -0.40 < ss.moments(g)["all"]["lag1"] < -0.25      # GUE nearest-neighbour spacings anticorrelate
    i = ss.SIGMA2_L.tolist().index(10.0)       # the exact sine-kernel Sigma^2 meets Mehta's large-L asymptotics
    assert math.isclose(ss.references()["sigma2"][i], float(rmt.gue_number_variance(10.0)), abs_tol=0.01)


def test_shuffle_within_splits_keeps_each_split_marginal_and_kills_correlation():
    from seqlab.zeta import spacings as spacing_data
    rng = np.random.default_rng(0)
    n = 40 * 256 + 17
    s = np.empty(n)
    s[0] = 1.0
    for i in range(1, n):                       # strongly anticorrelated, like the zeros
        s[i] = 2.0 - s[i - 1] + 0.1 * rng.standard_normal()
    s = np.clip(s, 0.05, 3)
    sh = ss.shuffle_within_splits(s)
    tr, va = spacing_data.to_windows(s)
    tr2, va2 = spacing_data.to_windows(sh)
    assert np.array_equal(np.sort(tr.flatten().numpy()), np.sort(tr2.flatten().numpy()))
    assert np.array_equal(np.sort(va.flatten().numpy()), np.sort(va2.flatten().numpy()))
    assert not np.array_equal(tr.numpy(), tr2.numpy())
    assert ss.autocorrelation(s[:8000], 1)[0] < -0.9 and abs(ss.autocorrelation(sh[:8000], 1)[0]) < 0.05
    assert np.array_equal(sh[40 * 256:], s[40 * 256:])


def test_count_excursion_of_rigid_and_random_sequences():
    rng = np.random.default_rng(0)
    iid = rng.exponential(size=(8, 4096))
    rigid = 1 + 0.3 * np.diff(rng.standard_normal((8, 4097)), axis=1)     # s - 1 = a difference: counts bounded
    assert ss.count_excursion(iid, 32) == pytest.approx(np.sqrt(2 * 32 / np.pi), rel=0.1)   # E|N(0, 32)|
    assert ss.count_excursion(rigid, 32) < 0.5


def test_sampler_scales_sigma_and_feeds_back_the_mean():
    def stepper(h):
        return mixture.Mixture(torch.zeros(len(h), 1, dtype=torch.float64), 1 + torch.zeros(len(h), 1, dtype=torch.float64),
                               torch.full((len(h), 1), 0.2, dtype=torch.float64))
    ctx = np.ones((4, 3))
    assert float(generate.sampler(stepper, 0.5)(torch.ones(2, 3)).sigma[0, 0]) == pytest.approx(0.1)
    out = generate.free_run(generate.sampler(stepper, feedback="mean"), ctx, 5)
    assert np.allclose(out, 1.0, atol=1e-6)
    assert generate.free_run(stepper, ctx, 200).std() == pytest.approx(0.2, rel=0.15)
