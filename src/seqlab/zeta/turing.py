"""Turing's method: the exact number of zeros below a Gram point, and complete chunks beyond Rosser's limit.

N(t) counts the zeros rho of zeta with 0 < Im rho <= t (on the critical line or not), and off the
ordinates N(t) = theta(t)/pi + 1 + S(t). Trudgian ("Improvements to Turing's method", Math. Comp. 80
(2011) 2259-2279, Theorem 2.2): for t2 > t1 > 168 pi,

    |integral_{t1}^{t2} S(t) dt| <= 2.067 + 0.059 ln t2  =: B(t2).

Every sign change of Z found on [t, t'] is at least one zero there. At a Gram point g_j (theta(g_j) = j pi):

  upper bound. Over [g_j, g_j + L], N(t) >= N(g_j) + F(t), F(t) = found zeros in (g_j, t], so
      integral S >= (N(g_j) - j - 1) L + I_F,   I_F = integral (F(t) - theta(t)/pi + j) dt.
    If L + I_F > B, then N(g_j) >= j + 2 would contradict Trudgian: N(g_j) <= j + 1.
  lower bound. Over [g_j - L', g_j], N(t) <= N(g_j) - G(t), G(t) = found zeros in [t, g_j), so
      integral S <= (N(g_j) - j - 1) L' + I_G,   I_G = integral (j - theta(t)/pi - G(t)) dt.
    If L' - I_G > B, then N(g_j) <= j would contradict it: N(g_j) >= j + 1.

Both margins positive: N(g_j) = j + 1 exactly (the zeros found are real zeros of the true Z; the
integrals are computed exactly from the brackets' ends, theta by Gauss-Legendre). Two such Gram points
g_A < g_B with B - A sign changes found between them: every zero in between is found, simple and on
the critical line, and they are zeros n = A + 2 .. B + 1. Nothing here assumes Rosser's rule: a block
that breaks it (fewer sign changes than Gram intervals, made up by a neighbour) is allowed.

The certification is as exact as Z's float64 evaluation (errors ~1e-10 in Z, see docs/zeta_zeros.md):
not interval arithmetic.
"""
import math
from functools import lru_cache

import numpy as np

from seqlab.core.errors import UserError
from seqlab.zeta.riemann_siegel import ZChunk, theta_diff
from seqlab.zeta.roots import ZetaError, gram_approx, illinois, sign_changes

TRUDGIAN = (2.067, 0.059)  # B(t2) = a + b ln t2, Trudgian 2011, Theorem 2.2 (t2 > t1 > 168 pi)
T_MIN = 168 * math.pi
TURING_GRAMS = 48  # Gram intervals on each side of a certified Gram point (about 12 suffice at t ~ 1e10)
SEARCH = 64  # certify_gram(k) tries the good Gram points j = k .. k + SEARCH - 1
WINDOW_HALVINGS = 10  # deficit blocks inside a certification window are split at most 2^10 times
MAX_HALVINGS = 16  # inside a chunk: as in the Rosser search
MARGIN_EPS = 1e-6  # a margin counts as positive above this (the integrals are exact to ~1e-9)
MIN_ABS_Z = 1e-8  # a certified Gram point is not within float64 reach of a zero


class CertificationError(ZetaError, UserError):
    """Turing's method could not certify a range (names it): a missed zero, a precision loss, or RH fails."""


def integral_bound(t2):
    """Trudgian's bound B(t2) = 2.067 + 0.059 ln t2 on |integral_{t1}^{t2} S(t) dt| (t2 > t1 > 168 pi), in
    units of (zeros x t)."""
    return TRUDGIAN[0] + TRUDGIAN[1] * math.log(t2)


def _theta_integral(zc, h0, h1, j):
    """integral over h in [h0, h1] of (theta(t0 + h)/pi - j), by 24-point Gauss-Legendre (theta is
    analytic and nearly linear over a few dozen units: the rule is exact to rounding)."""
    x, w = np.polynomial.legendre.leggauss(24)
    h = 0.5 * (h0 + h1) + 0.5 * (h1 - h0) * x
    val = (zc.m0 - j) + (zc.r0 + theta_diff(zc.t0, h)) / math.pi
    return 0.5 * (h1 - h0) * float(np.dot(w, val))


def turing_margins(zc, j, hj, h_left, h_right, a, b):
    """(lower, upper) margins of Turing's method at the Gram point g_j = t0 + hj, over [h_left, hj] and
    [hj, h_right], with found zeros in the disjoint brackets [a_i, b_i] (offsets from t0): lower > 0 proves
    N(g_j) >= j + 1 and upper > 0 proves N(g_j) <= j + 1 (see the module docstring; units: zeros x t)."""
    t0 = zc.t0
    if t0 + h_left <= T_MIN:
        raise ZetaError(f"Turing's bound needs t > 168 pi; the window starts at t = {t0 + h_left:.1f}")
    right = (a >= hj) & (b <= h_right)
    L = h_right - hj
    I_F = float(np.sum(h_right - b[right])) - _theta_integral(zc, hj, h_right, j)
    upper = L + I_F - integral_bound(t0 + h_right)
    left = (b <= hj) & (a >= h_left)
    Lp = hj - h_left
    I_G = -_theta_integral(zc, h_left, hj, j) - float(np.sum(a[left] - h_left))
    lower = Lp - I_G - integral_bound(t0 + hj)
    return lower, upper


# --- Gram windows and the sign-change search ---------------------------------------------------
def gram_window(k_lo, k_hi):
    """(zc, ks, g, zg): a ZChunk covering the Gram points g_k, k_lo <= k <= k_hi (offsets g, values zg).
    Its base t0 depends on k_lo only, so two callers with the same k_lo get bit-identical numbers."""
    ks = np.arange(k_lo, k_hi + 1)
    t0 = float(np.floor(gram_approx(ks[0]) - 1.0))
    zc = ZChunk(t0)
    g = zc.gram(ks)
    zc.cover(g[0] - 0.5, g[-1] + 0.5)
    return zc, ks, g, zc.z(g)


def find_brackets(zc, ks, g, zg, p_lo, p_hi, max_halvings, need=None):
    """Sign changes of Z on [g[p_lo], g[p_hi]] (both good Gram points): Gram intervals first, then the
    blocks (runs between consecutive good Gram points) with fewer sign changes than Gram intervals are
    split into 2, 4, ... pieces. Stops when no block is short, when the total reaches `need`, or after
    max_halvings. Returns (a, b, fa, fb, stats), brackets sorted by a."""
    good = np.flatnonzero(np.where(ks % 2 == 0, zg, -zg) > 0)
    good = good[(good >= p_lo) & (good <= p_hi)]
    j_idx, k_idx = good[:-1], good[1:]
    length = k_idx - j_idx
    sc = np.signbit(zg[1:]) != np.signbit(zg[:-1])
    cs = np.concatenate([[0], np.cumsum(sc)])
    count = cs[k_idx] - cs[j_idx]
    pos = np.arange(len(ks) - 1)
    block_of = np.where((pos >= p_lo) & (pos < p_hi), np.searchsorted(j_idx, pos, side="right") - 1, -1)
    iv = np.flatnonzero(sc & (block_of >= 0))
    parts = {int(bk): [] for bk in range(len(j_idx))}
    for i in iv:
        parts[int(block_of[i])].append((g[i], g[i + 1], zg[i], zg[i + 1]))
    halvings = 0
    while True:
        short = np.flatnonzero(count < length)
        if short.size == 0 or (need is not None and count.sum() >= need) or halvings >= max_halvings:
            break
        halvings += 1
        # where Rosser's rule fails, a short block's zeros sit in a neighbour (as a close pair that its
        # Gram points miss): from the 3rd halving on, the neighbours within (h - 1) // 2 blocks are split too
        r = min(4, (halvings - 1) // 2)
        todo = np.unique(np.clip(short[:, None] + np.arange(-r, r + 1)[None, :], 0, len(j_idx) - 1))
        ivs = np.flatnonzero(np.isin(block_of, todo))
        cnt, (r, xa, xb, fa, fb) = sign_changes(zc, g[ivs], g[ivs + 1], halvings)
        blk = block_of[ivs]
        count[todo] = np.bincount(blk, weights=cnt, minlength=len(j_idx)).astype(int)[todo]
        for bk in todo:
            parts[int(bk)] = []
        for i in range(len(r)):
            parts[int(blk[r[i]])].append((xa[i], xb[i], fa[i], fb[i]))
    rows = [x for bk in range(len(j_idx)) for x in parts[bk]]
    arr = np.array(rows, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(arr[:, 0], kind="stable")
    arr = arr[order]
    stats = {"blocks": int(len(j_idx)), "bad_gram": int(p_hi - p_lo + 1 - len(good)),
             "subdivided": int((cs[k_idx] - cs[j_idx] < length).sum()), "max_halvings": halvings,
             "rosser_exceptions": int((count != length).sum())}
    return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], stats


@lru_cache(maxsize=16)
def certify_gram(k):
    """(j, t_j, lower margin, upper margin): the first Gram point g_j, k <= j < k + SEARCH, that is good,
    not near a zero (|Z| > 1e-8) and where Turing's method proves N(g_j) = j + 1, each side using
    TURING_GRAMS Gram intervals. A pure function of k (its window's base depends on k only).
    Raises CertificationError naming the Gram range when no j qualifies."""
    lo, hi = k - TURING_GRAMS - 2, k + SEARCH + TURING_GRAMS + 2
    zc, ks, g, zg = gram_window(lo, hi)
    good = np.flatnonzero(np.where(ks % 2 == 0, zg, -zg) > 0)
    a, b, _, _, _ = find_brackets(zc, ks, g, zg, int(good[0]), int(good[-1]), WINDOW_HALVINGS)
    best = -math.inf
    for p in range(k - lo, k + SEARCH - lo):
        if not ((-1) ** int(ks[p] % 2) * zg[p] > MIN_ABS_Z):
            continue
        lower, upper = turing_margins(zc, int(ks[p]), g[p], g[p - TURING_GRAMS], g[p + TURING_GRAMS], a, b)
        if lower > MARGIN_EPS and upper > MARGIN_EPS:
            return int(ks[p]), zc.t0 + g[p], lower, upper
        best = max(best, min(lower, upper))
    raise CertificationError(
        f"Turing's method cannot certify N(t) at any Gram point g_{k}..g_{k + SEARCH - 1} "
        f"(t = {zc.t0 + g[k - lo]:.3f}..{zc.t0 + g[k + SEARCH - 1 - lo]:.3f}; best margin "
        f"{best:.3f}): the zeros of this range cannot be certified complete")


def chunk_zeros(k_a, k_b, n_lo, n_hi):
    """Zeros between the certified Gram points g_A, g_B (A = certify_gram(k_a), B = certify_gram(k_b)),
    keeping those with index n_lo <= n < n_hi. Exactly B - A sign changes must be found (N(g_A) = A + 1
    and N(g_B) = B + 1 are proven); they are zeros A + 2 .. B + 1. Returns (n, gamma, stats)."""
    A, tA, loA, upA = certify_gram(k_a)
    B, tB, loB, upB = certify_gram(k_b)
    zc, ks, g, zg = gram_window(A, B)
    a, b, fa, fb, st = find_brackets(zc, ks, g, zg, 0, len(ks) - 1, MAX_HALVINGS, need=B - A)
    if len(a) != B - A:
        what = "fewer" if len(a) < B - A else "more"
        raise CertificationError(
            f"zeros n = {A + 2:,}..{B + 1:,} (t = {tA:.6f}..{tB:.6f}): Turing's method proves {B - A} zeros, "
            f"{len(a)} sign changes found ({what}) after splitting Gram intervals 2^{st['max_halvings']} times: "
            "this range cannot be certified")
    n = A + 2 + np.arange(len(a))
    keep = (n >= n_lo) & (n < n_hi)
    h = illinois(zc, a[keep], b[keep], fa[keep], fb[keep])
    st["turing_margin_min"] = float(min(loA, upA, loB, upB))
    return n[keep], zc.t0 + h, st
