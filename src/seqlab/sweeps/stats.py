"""The statistics of a sweep report: per-arm summaries and tests of an arm against the reference.

All p-values are two-sided. numpy for the resampling; the Student-t tail comes from the
regularized incomplete beta function of mpmath (already a dependency), so no scipy is needed.
"""
import itertools
import math

import numpy as np


def summarize(values, n_boot=10000, seed=0):
    """mean, std (sample, ddof=1; 0 for n=1), n, and the bootstrap 95% interval of the mean
    (percentile method, `n_boot` resamples with replacement, fixed seed), in the metric's units."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "ci95": [None, None]}
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"n": n, "mean": float(x.mean()), "std": std, "ci95": [float(lo), float(hi)]}


def student_t_sf2(t, df):
    """Two-sided tail P(|T| >= |t|) of Student's t with `df` (real) degrees of freedom:
    I_{df/(df+t^2)}(df/2, 1/2), the regularized incomplete beta function."""
    import mpmath
    x = df / (df + t * t)
    return float(mpmath.betainc(df / 2, 0.5, 0, x, regularized=True))


def welch(a, b):
    """Welch's unequal-variance t-test of mean(a) - mean(b): (t, Welch-Satterthwaite df, two-sided p).
    None when either sample has fewer than 2 values or both variances are 0."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    if va + vb == 0:
        return None
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return float(t), float(df), student_t_sf2(t, df)


def permutation(a, b, n_perm=20000, seed=0):
    """Two-sided permutation test of the difference of means: the share of relabellings of the
    pooled sample with |mean difference| >= the observed one (observed labelling included).
    Exact (all C(n_a+n_b, n_a) splits) when there are at most `n_perm` of them, else `n_perm`
    random ones. With 3 vs 3 there are 20 splits, so p >= 0.1: such a test can never reach 0.05."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) == 0 or len(b) == 0:
        return None
    pooled, na = np.concatenate([a, b]), len(a)
    observed = abs(a.mean() - b.mean())
    total = pooled.sum()
    if math.comb(len(pooled), na) <= n_perm:
        sums = np.array([pooled[list(idx)].sum() for idx in itertools.combinations(range(len(pooled)), na)])
    else:
        rng = np.random.default_rng(seed)
        sums = np.array([pooled[rng.permutation(len(pooled))[:na]].sum() for _ in range(n_perm - 1)] + [a.sum()])
    diffs = np.abs(sums / na - (total - sums) / len(b))
    return float(np.mean(diffs >= observed - 1e-12 * max(1.0, observed)))


def holm(pvalues):
    """Holm-Bonferroni adjusted p-values, same order as given (None stays None):
    p_(i) -> max_{j <= i} min(1, (m - j + 1) p_(j)) over the ascending order."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    order = sorted(idx, key=lambda i: pvalues[i])
    m, out, running = len(idx), list(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
