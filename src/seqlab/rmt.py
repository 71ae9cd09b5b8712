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
    """Variance of the number of levels in an interval of length L (large-L GUE asymptotics):
    (1/pi^2) (log(2 pi L) + gamma + 1 - pi^2/8)."""
    L = np.asarray(L, dtype=np.float64)
    return (np.log(2 * math.pi * L) + EULER_GAMMA + 1 - math.pi**2 / 8) / math.pi**2
