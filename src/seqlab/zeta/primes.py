"""Prime gaps normalised by log p: the contrast dataset of family 2 (Cramer's model: i.i.d. Exp(1)).

g_n = (p_{n+1} - p_n) / ln p_n, dimensionless, mean about 1 (the mean gap near x is ln x).
"""
import math

import numpy as np

# largest normalised gap allowed: maximal prime gaps grow like ln^2 p, so g reaches ~ln p
# (12.5 at p = 20,831,323); the zeta cap of 10 does not apply here
MAX_GAP = 40.0


def primes_up_to(limit):
    """All primes p <= limit (int64 array), by a sieve of Eratosthenes over odd numbers."""
    if limit < 2:
        return np.zeros(0, dtype=np.int64)
    n_odd = (limit - 1) // 2  # odd numbers 3, 5, ..., indexed i -> 2i + 3
    sieve = np.ones(n_odd, dtype=bool)
    for i in range(int(math.isqrt(limit) - 3) // 2 + 1 if limit >= 9 else 0):
        if sieve[i]:
            p = 2 * i + 3
            sieve[(p * p - 3) // 2:: p] = False
    return np.concatenate([[2], 2 * np.flatnonzero(sieve).astype(np.int64) + 3])


def bound_for(n_primes):
    """An upper bound for the n-th prime: n (ln n + ln ln n) for n >= 6 (Rosser 1941), else 13."""
    n = max(int(n_primes), 6)
    return int(n * (math.log(n) + math.log(math.log(n)))) + 1


def normalised_gaps(p):
    """g_n = (p_{n+1} - p_n) / ln p_n (float64), for consecutive primes p."""
    p = np.asarray(p, dtype=np.int64)
    return np.diff(p).astype(np.float64) / np.log(p[:-1].astype(np.float64))
