"""Sigma collapse (seqlab/mdn/controls.py) on planted truth: a calibrated Gaussian forecast has error
over std 1 and nothing at the floor; a collapsed one is caught."""
import numpy as np
import torch

from seqlab.mdn import controls, mixture


def test_calibrated_forecast_has_error_matching_its_std_and_no_floor():
    g = torch.Generator().manual_seed(0)
    sd = 0.1 + torch.rand(20000, generator=g, dtype=torch.float64)
    mu = torch.ones(20000, dtype=torch.float64)
    y = mu + sd * torch.randn(20000, generator=g, dtype=torch.float64)
    r = controls.sigma_collapse(mixture.gaussian(mu, sd), y, min_sigma=1e-3)
    assert r["floor_share"] == 0.0 and abs(r["error_over_std"] - 1) < 0.03
    b = r["by_bin"]
    assert b[-1]["rms_error"] > 3 * b[0]["rms_error"]            # the error tracks the predicted std
    assert all(abs(x["rms_error"] / x["predicted_std"] - 1) < 0.1 for x in b)


def test_collapsed_forecast_is_caught():
    n = 1000
    mu = torch.ones(n, 2, dtype=torch.float64)
    sig = torch.tensor([1e-3, 0.3], dtype=torch.float64).expand(n, 2)
    logw = torch.log(torch.tensor([0.9, 0.1], dtype=torch.float64)).expand(n, 2)
    y = 1 + 0.3 * torch.randn(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    r = controls.sigma_collapse(mixture.Mixture(logw, mu, sig), y, min_sigma=1e-3)
    assert r["floor_share"] == 1.0 and abs(r["floor_weight"] - 0.9) < 1e-9
    assert r["error_over_std"] > 2.5                               # std sqrt(0.1) * 0.3 ~ 0.095 vs error 0.3
    assert np.isclose(float(controls.mixture_std(mixture.Mixture(logw, mu, sig))[0]),
                      np.sqrt(0.9 * 1e-6 + 0.1 * 0.09))
