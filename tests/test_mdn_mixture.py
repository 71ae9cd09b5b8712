"""The mixture maths and the baselines against independent computations (Monte Carlo, known densities)."""
import math

import numpy as np
import pytest
import torch

from seqlab.mdn import baselines, evaluate as mdn_eval, mixture
from seqlab.zeta import rmt


def mix3(n=1):
    return mixture.Mixture(torch.log(torch.tensor([[0.5, 0.3, 0.2]] * n, dtype=torch.float64)),
                           torch.tensor([[0.6, 1.1, 1.8]] * n, dtype=torch.float64),
                           torch.tensor([[0.15, 0.3, 0.5]] * n, dtype=torch.float64))


def test_density_integrates_to_one_and_cdf_matches():
    m = mix3(1)
    x = torch.linspace(-3, 6, 20001, dtype=torch.float64)
    mx = mixture.Mixture(*(t.expand(len(x), -1) for t in m))
    p = torch.exp(-mixture.nll(mx, x))
    assert float(torch.trapezoid(p, x)) == pytest.approx(1.0, abs=1e-6)
    cum = torch.cumulative_trapezoid(p, x)
    assert torch.allclose(cum, mixture.cdf(mx, x)[1:], atol=1e-5)


def test_crps_closed_form_equals_monte_carlo():
    g = torch.Generator().manual_seed(0)
    n = 400_000
    m = mix3(n)
    a = mixture.sample(m, g, positive=False)
    b = mixture.sample(m, g, positive=False)
    half_spread = 0.5 * (a - b).abs().mean()
    for y in (0.2, 0.9, 1.5, 3.0):
        mc = float((a - y).abs().mean() - half_spread)
        exact = float(mixture.crps(mix3(1), torch.tensor([y], dtype=torch.float64)))
        assert exact == pytest.approx(mc, abs=4e-3), y


def test_crps_of_one_gaussian_is_the_textbook_formula():
    mu, sd, y = 1.2, 0.4, 0.7
    z = (y - mu) / sd
    phi, Phi = math.exp(-z * z / 2) / math.sqrt(2 * math.pi), 0.5 * (1 + math.erf(z / math.sqrt(2)))
    expected = sd * (z * (2 * Phi - 1) + 2 * phi - 1 / math.sqrt(math.pi))
    got = float(mixture.crps(mixture.gaussian(torch.tensor([mu]), torch.tensor([sd])), torch.tensor([y])))
    assert got == pytest.approx(expected, rel=1e-6)


def test_positive_sampling_is_the_truncated_mixture():
    m = mixture.Mixture(torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64)).expand(200_000, -1),
                        torch.tensor([[0.1, 1.0]], dtype=torch.float64).expand(200_000, -1),
                        torch.tensor([[0.2, 0.3]], dtype=torch.float64).expand(200_000, -1))
    s = mixture.sample(m, torch.Generator().manual_seed(1), positive=True)
    assert (s > 0).all()
    below = mixture.mass_below_zero(m.at(slice(0, 1)))
    for q in (0.1, 0.5, 1.2):  # P(S <= q | S > 0) = (F(q) - F(0)) / (1 - F(0))
        expected = (mixture.cdf(m.at(slice(0, 1)), torch.tensor([q], dtype=torch.float64)) - below) / (1 - below)
        assert float((s <= q).double().mean()) == pytest.approx(float(expected), abs=4e-3)


def ar1_stream(n, phi=0.6, sd=0.25, seed=0):
    rng = np.random.default_rng(seed)
    s = np.empty(n)
    s[0] = 1.0
    e = rng.standard_normal(n) * sd
    for i in range(1, n):
        s[i] = 1 + phi * (s[i - 1] - 1) + e[i]
    return s


def test_true_conditional_density_gives_uniform_pit_and_entropy_nll():
    """The 'model' is the data's true conditional density N(1 + phi (s_t - 1), sd^2)."""
    phi, sd = 0.6, 0.25
    s = torch.from_numpy(ar1_stream(200_001, phi, sd))
    m = mixture.gaussian(1 + phi * (s[:-1] - 1), torch.full((len(s) - 1,), sd, dtype=torch.float64))
    per = mdn_eval.score(m, s[1:].numpy())
    summ = mdn_eval.summarise({k: v[None] for k, v in per.items()}, thin=1)
    assert summ["nll"] == pytest.approx(0.5 * math.log(2 * math.pi * math.e * sd * sd), abs=0.01)
    assert summ["pit_mean"] == pytest.approx(0.5, abs=0.005)
    assert summ["pit_std"] == pytest.approx(1 / math.sqrt(12), abs=0.003)
    assert summ["pit_ks"] < 0.006
    for c in (50, 80, 95):
        assert summ[f"coverage_{c}"] == pytest.approx(c / 100, abs=0.006)
    # a miscalibrated forecast (too wide) is caught by the same metrics
    wide = mixture.gaussian(m.mu[..., 0], 2 * m.sigma[..., 0])
    bad = mdn_eval.summarise({k: v[None] for k, v in mdn_eval.score(wide, s[1:].numpy()).items()}, thin=1)
    assert bad["pit_std"] < 0.2 and bad["coverage_50"] > 0.7 and bad["nll"] > summ["nll"] + 0.2


def test_wigner_baseline_nll_crps_and_sampling():
    rng = np.random.default_rng(0)
    w = baselines.wigner_iid()
    y = rmt.wigner_sample(200_000, rng)
    assert float(w.nll(y).mean()) == pytest.approx(rmt.WIGNER_ENTROPY, abs=0.005)
    assert w.mean == pytest.approx(1.0, abs=1e-4)
    draws = w.sample(200_000, rng)
    assert abs(draws.mean() - 1) < 0.005 and mdn_eval.ks_uniform(w.cdf(draws)) < 0.005
    xs = w.sample(400_000, rng)
    half = 0.5 * np.abs(xs[:200_000] - xs[200_000:]).mean()
    for v in (0.3, 1.0, 2.2):
        assert float(w.crps(np.array([v]))[0]) == pytest.approx(np.abs(xs - v).mean() - half, abs=4e-3)


def test_marginal_baseline_recovers_its_source():
    rng = np.random.default_rng(1)
    train = rmt.wigner_sample(300_000, rng)
    marg = baselines.marginal_iid(train)
    val = rmt.wigner_sample(100_000, rng)
    assert float(marg.nll(val).mean()) == pytest.approx(rmt.WIGNER_ENTROPY, abs=0.01)
    assert mdn_eval.ks_uniform(marg.cdf(val)) < 0.01
    assert np.isfinite(marg.nll(np.array([50.0]))).all()  # beyond the train range: finite, not -inf


def test_levinson_recovers_ar2_and_order_is_chosen_on_train():
    rng = np.random.default_rng(2)
    n = 120_000
    s = np.empty(n)
    s[:2] = 1
    e = rng.standard_normal(n) * 0.2
    for i in range(2, n):
        s[i] = 1 + 0.5 * (s[i - 1] - 1) - 0.3 * (s[i - 2] - 1) + e[i]
    phi, v = baselines.levinson(baselines.autocovariance(s, 4), 4)
    assert phi[1, :2] == pytest.approx([0.5, -0.3], abs=0.02)
    assert v[2] == pytest.approx(0.04, rel=0.03) and v[1] > v[2]
    ar, scores = baselines.fit_ar(s, window=64, orders=(1, 2, 4, 8))
    assert ar.p >= 2 and scores[1] > scores[2] + 0.01
    wins = torch.from_numpy(s[-6400:].reshape(100, 64))
    m = ar.predict(wins.numpy(), np.arange(63))
    nll = mixture.nll(m, wins[:, 1:].double())
    assert float(nll[:, 2:].mean()) == pytest.approx(0.5 * math.log(2 * math.pi * math.e * 0.04), abs=0.03)
    # position 0 sees one spacing: AR(1) there, never a value before the window
    A = ar.coef_matrix(63)
    assert np.all(np.triu(A, 1) == 0) and np.count_nonzero(A[0]) == 1
