"""Statistics of spacing sequences, computed per block so that every curve has an error bar.

A source (real zeros, GUE eigenvalues, a model's generated chains, ...) is an array of blocks
(n_blocks, n) of consecutive spacings. Each statistic below is computed on every block; the curve
of a source is the mean over its blocks and its error the standard error of that mean (blocks
are treated as independent). `per_block` first divides a source by its overall mean spacing (so
every source has mean spacing 1; a block's own total stays free, which a per-block rescaling would
pin and so bias Sigma^2 low); levels are x_0 = 0, x_k = sum_{i<k} s_i. The raw mean, std and drift
of a source are reported separately (`moments`).

References: Mehta, Random Matrices (R2, Sigma^2, form factor of the sine kernel); Odlyzko 1987
(zeta zeros against GUE); the prime lines of seqlab/zeta/spectra.py.
"""
import numpy as np

from seqlab.zeta import rmt, spectra

NN_EDGES = np.linspace(0.0, 4.0, 41)
R2_EDGES = np.linspace(0.0, 4.0, 41)
SIGMA2_L = np.array([0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50], dtype=np.float64)
SFF_TAU = np.linspace(0.05, 2.5, 50)
ACF_LAGS = 10


def levels(block):
    """Levels of one block of unfolded spacings: x_0 = 0, x_k = sum_{i<k} s_i."""
    return np.concatenate([[0.0], np.cumsum(np.asarray(block, dtype=np.float64))])


def nn_density(block, edges=NN_EDGES):
    """Nearest-neighbour spacing density: histogram of the unfolded spacings s on `edges`,
    normalised to a density (per unit spacing) over all of the block's spacings."""
    s = np.asarray(block, dtype=np.float64)
    h, _ = np.histogram(s, bins=edges)
    return h / (len(s) * np.diff(edges))


def pair_correlation(block, edges=R2_EDGES):
    """R2(r): the density of other levels at distance r to the right of a level, in levels per unit
    length (1 for Poisson, 1 - (sin pi r / pi r)^2 for GUE). Pairs (i, j > i) with x_j - x_i in each
    bin, over reference levels x_i <= x_end - r_max (so every reference sees the whole range)."""
    x = levels(block)
    r_max = edges[-1]
    n_ref = int(np.searchsorted(x, x[-1] - r_max, side="right"))
    counts = np.zeros(len(edges) - 1)
    for k in range(1, len(x)):      # pairs k levels apart; x increases, so stop past r_max
        m = min(n_ref, len(x) - k)
        d = x[k:k + m] - x[:m]
        if m == 0 or d.min() > r_max:
            break
        counts += np.histogram(d, bins=edges)[0]
    return counts / (max(n_ref, 1) * np.diff(edges))


def number_variance(block, L=SIGMA2_L, n_starts=256):
    """Sigma^2(L) = mean of (n(a, L) - L)^2, n(a, L) the number of levels in [a, a + L), over
    `n_starts` evenly spaced starts a in [0, x_end - L]: the count variance about its expectation L
    at unit density (dimensionless; the block's own mean count would bias it low in short blocks).
    NaN where L exceeds the block."""
    x = levels(block)
    out = np.full(len(L), np.nan)
    for i, Li in enumerate(L):
        if x[-1] - Li <= 0:
            continue
        a = np.linspace(0.0, x[-1] - Li, n_starts)
        n = np.searchsorted(x, a + Li, side="left") - np.searchsorted(x, a, side="left")
        out[i] = np.mean((n - Li) ** 2)   # around the expected count L (density 1), not the block mean
    return out


def form_factor(block, tau=SFF_TAU):
    """Spectral form factor K(tau) = |sum_n w_n exp(2 pi i tau x_n)|^2 / sum_n w_n^2 over the block's
    levels, w a Hann taper (it removes the block edges' leakage at small tau). tau in units of the
    inverse mean spacing; GUE: K = min(tau, 1) (the connected part, N -> inf); Poisson: 1."""
    x = levels(block)
    w = np.hanning(len(x) + 2)[1:-1]
    ph = np.exp(2j * np.pi * np.outer(tau, x))
    return np.abs(ph @ w) ** 2 / np.sum(w * w)


def autocorrelation(block, max_lag=ACF_LAGS):
    """corr(s_i, s_{i+k}) for k = 1..max_lag, centred on the block mean (dimensionless)."""
    d = np.asarray(block, dtype=np.float64)
    d = d - d.mean()
    var = float(np.mean(d * d))
    return np.array([np.mean(d[:-k] * d[k:]) / var for k in range(1, max_lag + 1)])


STATISTICS = {"nn_density": nn_density, "r2": pair_correlation, "sigma2": number_variance,
              "sff": form_factor, "acf": autocorrelation}
GRIDS = {"nn_density": 0.5 * (NN_EDGES[1:] + NN_EDGES[:-1]), "r2": 0.5 * (R2_EDGES[1:] + R2_EDGES[:-1]),
         "sigma2": SIGMA2_L, "sff": SFF_TAU, "acf": np.arange(1, ACF_LAGS + 1, dtype=np.float64)}


def references():
    """The GUE (N -> inf) curve of each statistic on its grid (None where there is none in closed form:
    nn_density uses the Wigner surmise, an approximation good to about 1%)."""
    return {"nn_density": rmt.wigner_pdf(GRIDS["nn_density"]),
            "r2": rmt.montgomery_pair_correlation(GRIDS["r2"]),
            "sigma2": rmt.gue_number_variance_exact(SIGMA2_L),
            "sff": np.minimum(SFF_TAU, 1.0), "acf": None}


def per_block(blocks):
    """{statistic: (n_blocks, grid) array} for a source given as blocks (n_blocks, n) of spacings,
    divided first by the source's overall mean spacing."""
    b = np.asarray(blocks, dtype=np.float64)
    b = b / b.mean()
    return {name: np.stack([f(row) for row in b]) for name, f in STATISTICS.items()}


def curves(per):
    """{statistic: {"x", "mean", "sem"}}: the mean over blocks and its standard error."""
    out = {}
    for name, v in per.items():
        n = np.sum(np.isfinite(v), 0)
        out[name] = {"x": GRIDS[name].tolist(), "mean": np.nanmean(v, 0).tolist(),
                     "sem": (np.nanstd(v, 0) / np.sqrt(np.maximum(n, 1))).tolist()}
    return out


def distance(name, a, b):
    """Distance between two mean curves of statistic `name`: total variation (half the L1 distance
    of the densities) for nn_density, the root-mean-square difference over the grid otherwise."""
    a, b = np.asarray(a), np.asarray(b)
    if name == "nn_density":
        return float(0.5 * np.sum(np.abs(a - b) * np.diff(NN_EDGES)))
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.sqrt(np.mean((a[ok] - b[ok]) ** 2)))


def distances(per_src, per_ref, n_boot=200, seed=0):
    """{statistic: {"value", "boot_std"}}: distance between the source's and the reference's mean
    curves, and its bootstrap standard deviation (blocks of both resampled with replacement)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in per_src:
        a, b = per_src[name], per_ref[name]
        boot = [distance(name, np.nanmean(a[rng.integers(0, len(a), len(a))], 0),
                         np.nanmean(b[rng.integers(0, len(b), len(b))], 0)) for _ in range(n_boot)]
        out[name] = {"value": distance(name, np.nanmean(a, 0), np.nanmean(b, 0)), "boot_std": float(np.std(boot))}
    return out


def moments(blocks, segments=(0, 128, 512, 2048, 8192)):
    """Raw mean, std and lag-1 correlation of the spacings, overall and in position segments
    [segments[i], segments[i+1]) of each block (drift of a generated chain shows as change along it)."""
    b = np.asarray(blocks, dtype=np.float64)

    def stats(x):                   # x (n_blocks, m): lag-1 with each row centred on its own mean
        d = x - x.mean(1, keepdims=True)
        return {"mean": float(x.mean()), "std": float(x.std()), "n": int(x.size),
                "lag1": float(np.sum(d[:, :-1] * d[:, 1:]) / np.sum(d * d))}
    out = {"all": stats(b)}
    edges = [e for e in segments if e < b.shape[1]] + [b.shape[1]]
    for lo, hi in zip(edges[:-1], edges[1:]):
        if hi - lo >= 4:
            out[f"{lo}:{hi}"] = stats(b[:, lo:hi])
    return out


def count_excursion(rows, window=32):
    """Mean |sum of (s_i - 1) over `window` consecutive spacings| along each row, averaged over rows:
    how far the count of levels runs from the smooth count over that many spacings (the zeros are
    rigid: about 0.33 for window 32 on continuous_2M; a random walk of i.i.d. spacings grows like
    sqrt(window))."""
    r = np.atleast_2d(np.asarray(rows, dtype=np.float64)) - 1.0
    c = np.cumsum(r, 1)
    c = np.concatenate([np.zeros((len(r), 1)), c], 1)
    return float(np.mean(np.abs(c[:, window:] - c[:, :-window])))


def mean_periodogram(blocks):
    """(freqs, mean over blocks of the Hann periodogram of s - mean) in cycles per spacing."""
    pw = [spectra.periodogram(b) for b in np.asarray(blocks, dtype=np.float64)]
    return pw[0][0], np.mean([p for _, p in pw], 0)


def prime_lines(freqs, power, height, primes=(2, 3, 5), rel_window=0.03):
    """For each prime p: the predicted line f_p = log p / log(height / 2 pi), the measured peak
    near it and its peak-to-median ratio (about 1-10 for noise; 60-70 for the data's long blocks)."""
    rows = []
    for p in primes:
        f = spectra.prime_line(p, height)
        try:
            fm, ratio = spectra.peak_near(freqs, power, f, rel_window)
        except ValueError:  # rows too short to resolve the line
            rows.append({"p": p, "f_pred": f, "f_meas": None, "rel_err": None, "peak_over_median": None})
            continue
        rows.append({"p": p, "f_pred": f, "f_meas": fm, "rel_err": fm / f - 1, "peak_over_median": ratio})
    return rows


def shuffle_within_splits(s, seq_len=256, val_fraction=0.1, seed=0):
    """A control set: the spacings of the train part and of the val part (the split of
    seqlab.zeta.spacings.to_windows) each permuted at random, so that both keep their marginal and
    lose every correlation. Returns a new array; the tail that makes no whole window is kept as is."""
    s = np.array(s, dtype=np.float64)
    n = len(s) // seq_len
    cut = (n - int(val_fraction * n)) * seq_len
    rng = np.random.default_rng(seed)
    s[:cut] = rng.permutation(s[:cut])
    s[cut:n * seq_len] = rng.permutation(s[cut:n * seq_len])
    return s
