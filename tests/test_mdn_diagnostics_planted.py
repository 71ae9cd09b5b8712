"""Diagnostics that can fail: each of B, C, G, I, K flags a planted effect and stays quiet on a null model."""
import numpy as np
import torch

from seqlab.mdn import baselines, diagnostics as dg, evaluate as mdn_eval


def status(key, value):
    return dg._status(key, value)


def test_B_mean_abs_cos_sees_slots_that_agree_up_to_sign():
    g = torch.Generator().manual_seed(0)
    N, M, C = 64, 6, 32
    null = torch.randn(N, M, C, generator=g)
    assert status("B", dg.mean_abs_cos(null)[0]) == "PASS"
    # planted: in every window all slots lie on one line, with signs that change from window to window
    v = torch.randn(N, 1, C, generator=g)
    signs = torch.where(torch.rand(N, M, 1, generator=g) < 0.5, -1.0, 1.0)
    planted = signs * v
    b, abs_m, signed = dg.mean_abs_cos(planted)
    assert b > 0.99 and status("B", b) == "WARN"
    off = ~torch.eye(M, dtype=torch.bool)
    assert signed[off].abs().mean() < 0.5      # |mean cos|, the old number, would have passed it


def test_C_gradient_correlation():
    g = torch.Generator().manual_seed(1)
    null = torch.randn(8, 512, generator=g, dtype=torch.float64)
    assert status("C", dg.mean_abs_corr(null)[0]) == "PASS"
    common = torch.randn(1, 512, generator=g, dtype=torch.float64)
    planted = common + 0.2 * torch.randn(8, 512, generator=g, dtype=torch.float64)
    assert status("C", dg.mean_abs_corr(planted)[0]) == "WARN"


def test_G_drift_is_judged_against_the_marginal_of_the_same_run():
    rng = np.random.default_rng(2)
    eps = 0.1 * rng.standard_normal(40 * 160 + 1)
    s = 1 + np.diff(eps)                               # a rigid sequence: the n-th point stays near n
    wins = torch.from_numpy(s[: 40 * 160].reshape(40, 160))

    class Rigid:                                       # forecasts the mean spacing, never drifts
        def mean(self, history):
            return torch.ones(len(history), dtype=torch.float64)

        def sample(self, history, gen):
            return torch.ones(len(history), dtype=torch.float64)
    quiet = dg.rollout_drift(Rigid(), wins, s, n_samples=4, seed=0)
    assert status("G", quiet["value"]) == "PASS" and quiet["value"] < 0.2
    # planted drift: i.i.d. draws from the marginal, as an i.i.d. forecaster would make
    iid = mdn_eval.iid_stepper(baselines.marginal_iid(s))
    drift = dg.rollout_drift(iid, wins, s, n_samples=4, seed=5)
    assert status("G", drift["value"]) == "WARN" and 0.7 < drift["value"] < 1.3
    assert drift["slope"] < 0.5                        # the old absolute target (< 0.5) would have passed it


def test_I_attention_centre_of_mass_spread():
    M, T = 8, 128
    uniform = torch.full((M, T), 1.0 / T, dtype=torch.float64)
    assert status("I", dg.com_spread(uniform)[0]) == "WARN"
    focused = torch.zeros(M, T, dtype=torch.float64)
    focused[torch.arange(M), torch.arange(M) * 15] = 1.0   # slot m reads position 15 m
    spread, com = dg.com_spread(focused)
    assert status("I", spread) == "PASS" and torch.equal(com, torch.arange(M, dtype=torch.float64) * 15)


def test_K_effective_rank_uses_energies():
    g = torch.Generator().manual_seed(3)
    M, D = 8, 256
    U = torch.linalg.qr(torch.randn(M, M, generator=g, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(D, M, generator=g, dtype=torch.float64))[0]
    equal = U @ torch.diag(torch.ones(M, dtype=torch.float64)) @ V.T
    er, _ = dg.effective_rank(equal)
    assert abs(er - M) < 1e-6 and status("K", er / M) == "PASS"
    sv = torch.tensor([8.9] + [1.0] * (M - 1), dtype=torch.float64)   # E4's first/second ratio
    near_rank1 = U @ torch.diag(sv) @ V.T
    er, _ = dg.effective_rank(near_rank1)
    assert status("K", er / M) == "WARN"
    p = sv / sv.sum()                                  # the old measure on plain singular values
    assert float(torch.exp(-(p * p.log()).sum())) / M > 0.5
