"""Random-matrix references for unfolded spacings (mean spacing 1).

GUE Wigner surmise p(s) = (32/pi^2) s^2 exp(-4 s^2 / pi); Poisson p(s) = exp(-s);
Montgomery's pair correlation 1 - (sin(pi x)/(pi x))^2; the GUE number variance.
"""
import math

import numpy as np

EULER_GAMMA = 0.5772156649015329
WIGNER_ENTROPY = EULER_GAMMA + math.log(math.pi / 2) - 0.5  # nats, = 0.52880...


def wigner_pdf(s):
    """GUE Wigner surmise density at spacing s >= 0 (mean 1, variance 3 pi/8 - 1)."""
    s = np.asarray(s, dtype=np.float64)
    return np.where(s >= 0, 32 / math.pi**2 * s**2 * np.exp(-4 * s**2 / math.pi), 0.0)


def wigner_logpdf(s):
    s = np.asarray(s, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(s > 0, math.log(32 / math.pi**2) + 2 * np.log(np.abs(s)) - 4 * s**2 / math.pi, -np.inf)


def wigner_cdf(s):
    """P(S <= s) = erf(2s/sqrt(pi)) - (4s/pi) exp(-4 s^2/pi)."""
    from math import erf
    s = np.clip(np.asarray(s, dtype=np.float64), 0, None)
    return np.vectorize(erf)(2 * s / math.sqrt(math.pi)) - 4 * s / math.pi * np.exp(-4 * s**2 / math.pi)


def wigner_sample(n, rng):
    """n i.i.d. draws: the surmise is sqrt(pi/8) times a chi variable with 3 degrees of freedom."""
    return math.sqrt(math.pi / 8) * np.linalg.norm(rng.standard_normal((n, 3)), axis=1)


def poisson_pdf(s):
    s = np.asarray(s, dtype=np.float64)
    return np.where(s >= 0, np.exp(-s), 0.0)


def montgomery_pair_correlation(x):
    """1 - (sin(pi x) / (pi x))^2, the GUE two-point function of unfolded levels."""
    x = np.asarray(x, dtype=np.float64)
    return 1 - np.sinc(x) ** 2  # np.sinc(x) = sin(pi x)/(pi x)


def gue_number_variance(L):
    """Variance of the number of levels in an interval of length L (large-L GUE asymptotics, Mehta):
    (1/pi^2) (log(2 pi L) + gamma + 1). (The -pi^2/8 term belongs to GOE, beta = 1.)"""
    L = np.asarray(L, dtype=np.float64)
    return (np.log(2 * math.pi * L) + EULER_GAMMA + 1) / math.pi**2


def gue_number_variance_exact(L, n_grid=4001):
    """Sigma^2(L) of the sine-kernel (GUE, N -> inf) process: L - 2 int_0^L (L - x) (sin(pi x)/(pi x))^2 dx.
    L: interval lengths in units of the mean spacing; result: variance of the level count."""
    out = []
    for Li in np.atleast_1d(np.asarray(L, dtype=np.float64)):
        x = np.linspace(0.0, Li, n_grid)
        f = (Li - x) * np.sinc(x) ** 2
        out.append(Li - 2 * float(np.sum((f[1:] + f[:-1]) / 2 * np.diff(x))))
    return np.array(out)


def gue_unfolded_spacings(n_matrices, size, rng, keep=0.5):
    """Unfolded nearest-neighbour spacings of sampled GUE matrices (a measured reference).

    H = (G + G^H)/2 with G_ij complex normal (E|G_ij|^2 = 1): semicircle radius R = sqrt(2 size).
    Each eigenvalue lambda is unfolded by size * F(lambda/R), F the semicircle CDF; only the central
    `keep` fraction of the spectrum is used (the edges are not locally GUE-bulk). Returns an array
    of shape (n_matrices, spacings per matrix): rows are independent sequences."""
    import torch  # its eigvalsh runs single-threaded on request; numpy's OpenBLAS can crawl on a busy machine
    R = math.sqrt(2 * size)
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spectra = []
        for _ in range(n_matrices):
            G = (rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))) / math.sqrt(2)
            spectra.append(torch.linalg.eigvalsh(torch.from_numpy((G + G.conj().T) / 2)).numpy())
    finally:
        torch.set_num_threads(threads)
    for lam in spectra:
        u = np.clip(lam / R, -1, 1)
        x = size * (0.5 + (u * np.sqrt(1 - u * u) + np.arcsin(u)) / math.pi)
        x = x[np.abs(x - size / 2) < keep * size / 2]
        rows.append(np.diff(x))
    m = min(len(r) for r in rows)
    return np.stack([r[:m] for r in rows])
