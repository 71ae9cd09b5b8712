"""Kernel extraction (seqlab/mdn/kernel.py) on planted truth: a linear model's response kernel is
its coefficients, AR coefficients of a planted AR process, spectral peaks at planted lines, the
form library picks the planted form on held-out data."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from seqlab.mdn import kernel, mixture
from seqlab.zeta import spectra


class LinearMDN(nn.Module):
    """mu_t = 1 + sum_d a_d (x_{t-d} - 1), a symmetric two-component mixture around it: mean and
    median both move by exactly a_d per unit of s_{t-d} (the closed-form response kernel)."""
    family = "mdn"

    def __init__(self, a, context=48):
        super().__init__()
        self.a = nn.Parameter(torch.as_tensor(a, dtype=torch.float32))
        self.config = type("C", (), {"context": context})()

    def forward(self, x):
        d = x - 1.0
        D = len(self.a)
        pad = torch.nn.functional.pad(d, (D - 1, 0))
        mu = 1.0 + torch.stack([pad[:, D - 1 - j: D - 1 - j + x.size(1)] for j in range(D)], -1) @ self.a
        two = torch.stack([mu - 0.1, mu + 0.1], -1)
        return mixture.Mixture(torch.log(torch.full_like(two, 0.5)), two, torch.full_like(two, 0.3))


def test_response_kernel_of_a_linear_model_is_its_coefficients():
    a = np.array([-0.4, 0.2, -0.1, 0.05, 0.0, 0.03])
    model = LinearMDN(a)
    wins = 0.5 + torch.rand(10, 49, generator=torch.Generator().manual_seed(0))
    k = kernel.response_kernel(model, wins, max_lag=8)
    expect = np.concatenate([a, np.zeros(3)])
    assert k["mean"].shape == (10, 9)
    assert np.allclose(k["mean"], expect, atol=1e-5)
    assert np.allclose(k["median"], expect, atol=1e-4)


def test_median_of_a_mixture():
    m = mixture.Mixture(torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64)),
                        torch.tensor([[0.0, 2.0]], dtype=torch.float64), torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    assert float(kernel.mixture_median(m)) == pytest.approx(1.0, abs=1e-9)


def test_ar_kernel_recovers_planted_coefficients():
    rng = np.random.default_rng(0)
    phi = np.array([-0.5, -0.2, 0.1])
    n = 200_000
    x = np.zeros(n)
    e = 0.3 * rng.standard_normal(n)
    for t in range(3, n):
        x[t] = phi @ x[t - 3:t][::-1] + e[t]
    assert np.allclose(kernel.ar_kernel(1 + x, 3), phi, atol=0.01)


def test_transfer_and_spectral_peaks_find_a_planted_line():
    height = 1e6
    f2 = spectra.prime_line(2, height)
    d = np.arange(64)
    k = 0.05 * np.exp(-d / 40) * np.cos(2 * np.pi * f2 * (d + 1))   # a resonance at f_2
    freqs, gain, implied = kernel.transfer(k)
    rows = {r["p"]: r for r in kernel.spectral_peaks(freqs, gain, height)}
    assert abs(rows[2]["rel_err"]) < 0.02 and rows[2]["peak_over_median"] > 3


def test_form_library_picks_the_planted_form_on_held_out_data():
    height = 1e6
    rng = np.random.default_rng(1)
    d = np.arange(64, dtype=np.float64)
    truth = 0.3 * np.exp(-d / 12) * np.cos(2 * np.pi * 0.12 * d)
    fits = kernel.fit_forms(d, truth + 0.005 * rng.standard_normal(64), truth + 0.005 * rng.standard_normal(64), height)
    assert fits[0]["form"] == "damped_cosine"
    assert fits[0]["params"]["f"] == pytest.approx(0.12, abs=0.006)
    expo = 0.5 * np.exp(-d / kernel.TAUS[17]) + 0.01    # nonlinear parameters are fitted on grids: one on it
    fits = kernel.fit_forms(d, expo + 0.005 * rng.standard_normal(64), expo + 0.005 * rng.standard_normal(64), height)
    assert fits[0]["form"] == "exponential"
    assert {r["form"] for r in fits} == {"sine_kernel", "exponential", "power_law", "damped_cosine", "prime_cosines"}


def test_dominant_frequency_of_a_planted_oscillation_on_a_trend():
    d = np.arange(129, dtype=np.float64)
    c = 0.01 * d + 0.3 * np.cos(2 * np.pi * 0.0575 * d)
    f, share = kernel.dominant_frequency(c)
    assert f == pytest.approx(0.0575, abs=0.002) and share > 0.05
