"""Symbolic regression of the next spacing (seqlab/mdn/symbolic.py): the features say what they claim,
and on a planted linear law the symbolic fit scores like the least-squares law on held-out data."""
import numpy as np
import pytest
import torch

from seqlab.mdn import symbolic


def test_features_are_the_lags_and_the_count():
    s = 1 + np.arange(40, dtype=np.float64) / 100
    X, y = symbolic.features(s, 3, 5)
    d = s - 1
    t = 4                                   # the first row: max(3, 5) - 1
    assert X[0].tolist() == pytest.approx([d[t], d[t - 1], d[t - 2], d[0:5].sum()])
    assert y[0] == pytest.approx(d[t + 1])
    assert len(X) == len(s) - 1 - t


def test_planted_linear_law_is_found_on_held_out_data():
    pytest.importorskip("gplearn")
    rng = np.random.default_rng(0)
    n = 30000
    d = np.zeros(n)
    e = rng.normal(0, 0.3, n)
    for t in range(1, n):
        d[t] = -0.6 * d[t - 1] + e[t]          # s - 1 follows an AR(1): the best law is -0.6 d0
    s = 1 + d
    wins = torch.from_numpy(s[20000:].reshape(-1, 50))
    law = symbolic.fit(s[:20000], wins, n_lags=2, count_window=4, n_fit=3000, population=300, generations=8, seed=1)
    h = law["heldout_mse"]
    assert h["linear"] == pytest.approx(0.09, rel=0.1)            # the noise variance
    assert law["linear_coef"]["d0"] == pytest.approx(-0.6, abs=0.05)
    assert h["symbolic"] < 0.8 * h["one"]                         # it learned the law, not the mean
    assert h["symbolic"] < 1.15 * h["linear"]
    assert law["n_heldout"] == len(wins) * (50 - 1 - 3)
