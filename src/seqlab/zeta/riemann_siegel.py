"""The Riemann-Siegel Z function, vectorised in numpy, accurate from t ~ 800 to t ~ 1e10 and beyond.

    Z(t) = 2 sum_{n<=N} n^{-1/2} cos(theta(t) - t ln n) + (-1)^{N-1} tau^{-1/2} sum_{j=0..4} C_j(p) tau^{-j}

with tau = sqrt(t / 2 pi), N = floor(tau), p = tau - N (Edwards, "Riemann's zeta function", ch. 7;
C_0..C_4 as in Gabcke 1979), and theta the Riemann-Siegel theta function. Glossary:
    t0      the base of a chunk: a float64, exact; every point is t = t0 + h with h a float64 offset
    theta0  theta(t0), computed once per chunk with python-flint (128 bits), kept as m0 pi + r0
    phi_n   -t0 ln n mod 2 pi, also from python-flint: float64 alone would lose ~1e-9 rad at t0 ~ 1e6
            (~1e-5 rad at t0 ~ 3e9, where t0 ln n ~ 7e10)
    cell    an interval of length Delta (about 1) of one N-segment [2 pi N^2, 2 pi (N+1)^2); at its
            centre c the main sum is stored as K Taylor coefficients M_k in u = (t - c) / (Delta/2),
            so Z at any point costs O(K) instead of O(N) (N = 424 at the top of the 2M range)
The cells are filled by one complex matrix product per N-segment (see ZChunk._fill_segment).
"""
import math
from functools import lru_cache

import numpy as np

CELL = 1.0  # target cell length Delta in t (shorter above N = 992 terms: see cell_length)
K_TAYLOR = 24  # terms of the Taylor series in u; |u (Delta/2)(ln n - L)| <= 1.73, 1.73^24/24! < 1e-18
G_BYTES = 1 << 26  # the matrix G of one segment is built in column blocks of at most this size


def cell_length(N, cell=CELL):
    """Target cell length for N terms: the Taylor variable's range (Delta/2)(ln N)/2 stays <= 1.725,
    so K_TAYLOR = 24 terms keep the truncation below 1e-18 relative. Equal to `cell` for N <= 992
    (every zero n <= 14.6M), shorter above (0.69 at N = 23,000, t ~ 3.3e9)."""
    return min(cell, 6.9 / math.log(N)) if N > 1 else cell


# --- theta ------------------------------------------------------------------------------------
# theta(t) = t/2 ln(t/2pi) - t/2 - pi/8 + sum_j THETA_SERIES[j] t^-(2j+1)  (Stirling; t >= 10)
THETA_SERIES = (1 / 48, 7 / 5760, 31 / 80640, 127 / 430080, 511 / 1216512)


def _theta_tail(t):
    t = np.asarray(t, dtype=np.float64)
    s = np.zeros_like(t)
    for j, c in reversed(list(enumerate(THETA_SERIES))):
        s = s / (t * t) + c
    return s / t


def theta(t):
    """Riemann-Siegel theta(t) = arg Gamma(1/4 + i t/2) - (t/2) ln pi, radians, float64 (t >= 10).
    At t ~ 1e6 theta ~ 7e6, so the absolute rounding error is ~1e-9: use theta_diff for differences."""
    t = np.asarray(t, dtype=np.float64)
    return t / 2 * np.log(t / (2 * math.pi)) - t / 2 - math.pi / 8 + _theta_tail(t)


def theta_diff(t0, h):
    """theta(t0 + h) - theta(t0) in float64 without cancellation (absolute error ~1e-16 * |h| ln t0)."""
    t0 = np.asarray(t0, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    t1 = t0 + h
    return (t1 / 2 * np.log1p(h / t0) + h / 2 * (np.log(t0 / (2 * math.pi)) - 1)
            + (_theta_tail(t1) - _theta_tail(t0)))


def theta_prime(t):
    """theta'(t) = ln(t/2pi)/2 - 1/(48 t^2) - 7/(1920 t^4) (mean density of zeros times pi)."""
    t = np.asarray(t, dtype=np.float64)
    return 0.5 * np.log(t / (2 * math.pi)) - 1 / (48 * t * t) - 7 / (1920 * t**4)


# --- the remainder C_0..C_4 -----------------------------------------------------------------------
@lru_cache(maxsize=1)
def remainder_polys():
    """Float64 coefficients (low degree first) of C_j as polynomials in x = p - 1/2, j = 0..4.

    Psi(p) = cos(2 pi (p^2 - p - 1/16)) / cos(2 pi p) is entire; its Taylor series around p = 1/2
    is the quotient of two power series, computed with mpmath at 150 digits (the quotient has
    large cancelling terms), then C_j from Gabcke's derivative formulas."""
    import mpmath as mp
    D = 110
    with mp.workdps(150):
        tp = 2 * mp.pi
        a, b = mp.cos(-5 * mp.pi / 8), mp.sin(-5 * mp.pi / 8)  # num = cos(2 pi x^2 + (-5 pi/8))
        num = [mp.mpf(0)] * (D + 1)
        for j in range(D // 2 + 1):  # Taylor series of cos(y + phase) in y = 2 pi x^2
            num[2 * j] = [a, -b, -a, b][j % 4] * tp**j / mp.factorial(j)  # d^j/dy^j cos(y + phase) at 0
        den = [mp.mpf(0)] * (D + 1)  # cos(2 pi (1/2 + x)) = -cos(2 pi x)
        for j in range(D // 2 + 1):
            den[2 * j] = -((-1) ** j) * tp ** (2 * j) / mp.factorial(2 * j)
        psi = [mp.mpf(0)] * (D + 1)
        for k in range(D + 1):
            psi[k] = (num[k] - sum(psi[i] * den[k - i] for i in range(k))) / den[0]

        def deriv(r):
            return [psi[k + r] * mp.factorial(k + r) / mp.factorial(k) for k in range(D + 1 - r)]

        pi = mp.pi
        terms = [  # C_j = sum of (coefficient, derivative order) (Gabcke 1979)
            [(1, 0)],
            [(-1 / (96 * pi**2), 3)],
            [(1 / (64 * pi**2), 2), (1 / (18432 * pi**4), 6)],
            [(-1 / (64 * pi**2), 1), (-1 / (3840 * pi**4), 5), (-1 / (5308416 * pi**6), 9)],
            [(1 / (128 * pi**2), 0), (19 / (24576 * pi**4), 4), (11 / (5898240 * pi**6), 8),
             (1 / (2038431744 * pi**8), 12)],
        ]
        polys = []
        for j, parts in enumerate(terms):
            c = [mp.mpf(0)] * (D + 1 - 12)
            for coef, r in parts:
                d = deriv(r)
                for k in range(len(c)):
                    c[k] += coef * d[k]
            # keep the degrees whose contribution on |x| <= 1/2 can exceed 1e-20
            keep = max(k for k in range(len(c)) if abs(c[k]) * mp.mpf(0.5) ** k > mp.mpf(10) ** -20)
            polys.append(np.array([float(v) for v in c[: keep + 1]]))
    return polys


@lru_cache(maxsize=1)
def _remainder_polys_y():
    """C_j(x) = x^(j%2) P_j(x^2): Psi is even about p = 1/2, so C_0, C_2, C_4 are even and C_1, C_3 odd."""
    out = []
    for j, c in enumerate(remainder_polys()):
        parity = j % 2
        other = c[1 - parity::2]
        assert np.abs(other).max(initial=0) < 1e-12 * np.abs(c).max(), "parity of C_j"
        out.append(np.ascontiguousarray(c[parity::2]))
    return out


def _horner(coef, y):
    out = np.full_like(y, coef[-1])
    for a in coef[-2::-1]:
        out *= y
        out += a
    return out


def remainder(tau):
    """(-1)^(N-1) tau^(-1/2) sum_j C_j(p) tau^-j, the Riemann-Siegel correction (tau = sqrt(t/2pi))."""
    tau = np.asarray(tau, dtype=np.float64)
    N = np.floor(tau)
    x = tau - N - 0.5
    y = x * x
    total = np.zeros_like(tau)
    for j, c in reversed(list(enumerate(_remainder_polys_y()))):
        total /= tau
        total += _horner(c, y) * x if j % 2 else _horner(c, y)
    sign = np.where(N % 2 == 1, 1.0, -1.0)
    return sign * total / np.sqrt(tau)


def z_direct(t):
    """Z(t) by the plain formula in float64 (O(N) per point; phases lose ~1e-16 t ln N): the reference
    the cell expansion is tested against, usable for moderate t."""
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    tau = np.sqrt(t / (2 * math.pi))
    out = np.empty_like(t)
    th = theta(t)
    for i, (ti, taui) in enumerate(zip(t, tau)):
        n = np.arange(1, int(taui) + 1, dtype=np.float64)
        out[i] = 2 * np.sum(np.cos(th[i] - ti * np.log(n)) / np.sqrt(n))
    return out + remainder(tau)


# --- high-precision bases (python-flint) -----------------------------------------------------------
PHASE_BITS = 128  # t0 ln n < 2^40 up to t0 ~ 1e10: 88 bits are left for the fraction of 2 pi
_LOGS = [None]  # ln n at PHASE_BITS for n = 1.. (grown on demand: N = 23,000 terms at t ~ 3.3e9)


def _flint_logs(n_max):
    from flint import arb, ctx
    if n_max >= len(_LOGS):
        old, ctx.prec = ctx.prec, PHASE_BITS
        try:
            _LOGS.extend(arb(n).log() for n in range(len(_LOGS), n_max + 1))
        finally:
            ctx.prec = old
    return _LOGS


def base_phases(t0, n_max):
    """phi_n = -t0 ln n mod 2 pi for n = 1..n_max (float64 array, index n-1), computed at 128 bits:
    exact to float64 rounding for t0 ln n up to ~2^70 (t0 far beyond 1e10)."""
    from flint import arb, ctx
    logs = _flint_logs(n_max)
    old, ctx.prec = ctx.prec, PHASE_BITS
    try:
        T, tp = arb(t0), 2 * arb.pi()
        out = np.empty(n_max)
        for n in range(1, n_max + 1):
            x = -T * logs[n]
            out[n - 1] = float(x - (x / tp).floor() * tp)
        return out
    finally:
        ctx.prec = old


def base_theta(t0):
    """(m0, r0) with theta(t0) = m0 pi + r0, 0 <= r0 < pi, from log Gamma at 128 bits."""
    from flint import acb, arb, ctx
    old, ctx.prec = ctx.prec, 128
    try:
        T = arb(t0)
        th = acb(arb(0.25), T / 2).lgamma().imag - T / 2 * arb.pi().log()
        m0 = int((th / arb.pi()).floor().unique_fmpz())
        return m0, float(th - m0 * arb.pi())
    finally:
        ctx.prec = old


# --- Z on a chunk --------------------------------------------------------------------------------
class ZChunk:
    """Z(t0 + h) for float64 offsets h in [h_lo, h_hi], with every phase reduced from a 128-bit base.

    Build with ZChunk(t0), then .cover(h_lo, h_hi) fills the cells; .theta_pi(h) and .gram(k) work
    before that (they need only theta)."""

    def __init__(self, t0):
        self.t0 = float(t0)
        self.m0, self.r0 = base_theta(self.t0)

    # theta(t0 + h) = m0 pi + r0 + theta_diff(t0, h)
    def gram(self, k):
        """Offsets h_k of the Gram points g_k (theta(g_k) = k pi) for integer array k."""
        target = (np.asarray(k, dtype=np.float64) - self.m0) * math.pi - self.r0
        h = target / theta_prime(self.t0)
        for _ in range(6):  # Newton; theta'' ~ 1/(2t) makes this converge in 3 steps
            h = h - (theta_diff(self.t0, h) - target) / theta_prime(self.t0 + h)
        return h

    def cover(self, h_lo, h_hi, cell=CELL, K=K_TAYLOR):
        """Fill the cells of every N-segment that meets [t0 + h_lo, t0 + h_hi]."""
        t0 = self.t0
        self.h_lo, self.h_hi, self.K = float(h_lo), float(h_hi), K
        m_lo = int(math.floor(math.sqrt((t0 + h_lo) / (2 * math.pi))))
        m_hi = int(math.floor(math.sqrt((t0 + h_hi) / (2 * math.pi))))
        self.m_lo = m_lo
        self.phi = base_phases(t0, m_hi)
        self.seg_start = np.array([2 * math.pi * m * m - t0 for m in range(m_lo, m_hi + 2)])  # b_m in h
        self.seg = []  # per segment: (first cell index i_lo, n cells, Delta_m, row offset)
        rows = []
        offset = 0
        for m in range(m_lo, m_hi + 1):
            b, e = self.seg_start[m - m_lo], self.seg_start[m - m_lo + 1]
            n_total = math.ceil((e - b) / cell_length(m, cell))
            delta = (e - b) / n_total
            i_lo = min(max(int(math.floor((h_lo - b) / delta)), 0), n_total - 1)
            i_hi = min(max(int(math.floor((h_hi - b) / delta)), 0), n_total - 1)
            n_c = i_hi - i_lo + 1
            rows.append(self._fill_segment(m, b + (i_lo + 0.5) * delta, n_c, delta, K))
            self.seg.append((i_lo, n_c, delta, offset))
            offset += n_c
        self.M = np.concatenate(rows)  # (cells, K) complex
        self.seg_arr = np.array(self.seg, dtype=np.float64)
        return self

    def _fill_segment(self, N, c0, n_c, delta, K, B=64):
        """M'_k(c_i) = sum_{n<=N} n^-1/2 e^{-i(t0+c_i) ln n} (w (ln n - L))^k / k!, w = -i Delta/2,
        for the cells c_i = c0 + i Delta, i < n_c. With i = a B + b, e^{-i c_i ln n} = E_a[n] F_b[n],
        so all cells are one product F (B x N) @ G (N x A*K), G[n, a K + k] = E_a[n] W[n, k]."""
        n = np.arange(1, N + 1, dtype=np.float64)
        ln = np.log(n)
        L = ln[-1] / 2
        A = -(-n_c // B)
        k = np.arange(K)
        W = (n ** -0.5)[:, None] * ((-0.5j * delta) * (ln - L))[:, None] ** k / np.array(
            [math.factorial(i) for i in k], dtype=np.float64)  # (N, K)
        F = np.exp(-1j * (np.arange(B) * delta)[:, None] * ln[None, :])  # (B, N)
        step = max(1, G_BYTES // (16 * N * K))  # values of a per product: G stays under G_BYTES at any height
        out = []
        for a0 in range(0, A, step):
            a_off = c0 + np.arange(a0, min(A, a0 + step)) * (B * delta)  # (A',)
            E = np.exp(1j * (self.phi[:N][None, :] - a_off[:, None] * ln[None, :]))  # (A', N)
            G = (E.T[:, :, None] * W[:, None, :]).reshape(N, len(a_off) * K)
            out.append((F @ G).reshape(B, len(a_off), K).transpose(1, 0, 2).reshape(len(a_off) * B, K))
        M = out[0] if len(out) == 1 else np.concatenate(out)
        return M[:n_c]

    def z(self, h):
        """Z(t0 + h) for a float64 array h inside the covered range."""
        h = np.asarray(h, dtype=np.float64)
        if h.size and (h.min() < self.h_lo - 1e-9 or h.max() > self.h_hi + 1e-9):
            raise ValueError("point outside the covered range of this chunk")
        t = self.t0 + h
        tau = np.sqrt(t / (2 * math.pi))
        s = np.clip(np.searchsorted(self.seg_start, h, side="right") - 1, 0, len(self.seg) - 1)
        N = self.m_lo + s
        i_lo, n_c, delta, off = (self.seg_arr[s, j] for j in range(4))
        b = self.seg_start[s]
        i = np.clip(np.floor((h - b) / delta), i_lo, i_lo + n_c - 1)
        u = (h - b - (i + 0.5) * delta) / (delta / 2)
        rows = (off + i - i_lo).astype(np.int64)
        M = self.M[rows]  # (P, K)
        S = M[:, -1].copy()
        for k in range(self.K - 2, -1, -1):
            S = S * u + M[:, k]
        L = np.log(N.astype(np.float64)) / 2
        phase = (self.m0 % 2) * math.pi + self.r0 + theta_diff(self.t0, h) - u * (delta / 2) * L
        return 2 * (np.cos(phase) * S.real - np.sin(phase) * S.imag) + remainder(tau)
