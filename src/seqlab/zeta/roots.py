"""Shared pieces of the zero search (Rosser blocks in zeros.py, Turing's method in turing.py):
the error type, float64 Gram points for placing chunks, sign changes on subdivided intervals and
the vectorised Illinois refinement."""
import math

import numpy as np

from seqlab.zeta.riemann_siegel import theta, theta_prime

REFINE_TOL = 1e-12  # bracket width in h = t - t0 at which a root counts as refined


class ZetaError(RuntimeError):
    """A block could not be resolved or a range not certified (a bug, a precision loss, or a failure of RH)."""


# --- Gram points -----------------------------------------------------------------------------------
def gram_approx(k):
    """g_k in float64 (accurate to ~1e-9 at k ~ 2e6; used only to place chunk bases), k >= 0.
    theta is convex for t > 7, so Newton from a start to the right of the root converges."""
    k = np.asarray(k, dtype=np.float64)
    t = 2 * math.pi * math.e * (k + 10)
    for _ in range(60):
        t = t - (theta(t) - k * math.pi) / theta_prime(t)
    return t


def illinois(zc, a, b, fa, fb, tol=REFINE_TOL, max_iter=200):
    """Roots of Z in brackets [a, b] (arrays, fa fb < 0): the Illinois variant of regula falsi."""
    a, b, fa, fb = a.copy(), b.copy(), fa.copy(), fb.copy()
    side = np.zeros(len(a), dtype=np.int8)  # which end was kept last time (-1 a, +1 b)
    active = np.abs(b - a) > tol
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        A, Bv, FA, FB = a[idx], b[idx], fa[idx], fb[idx]
        c = Bv - FB * (Bv - A) / (FB - FA)
        c = np.where((c > A) & (c < Bv), c, 0.5 * (A + Bv))  # guard against round-off
        fc = zc.z(c)
        left = np.sign(fc) == np.sign(FA)  # root in [c, b]: replace a
        exact = fc == 0
        # Illinois: when the same end survives twice, halve its function value
        keep_b = left & (side[idx] == 1)
        keep_a = ~left & (side[idx] == -1)
        fb[idx] = np.where(keep_b, FB / 2, FB)
        fa[idx] = np.where(keep_a, FA / 2, FA)
        a[idx] = np.where(left, c, A)
        fa[idx] = np.where(left, fc, fa[idx])
        b[idx] = np.where(~left, c, Bv)
        fb[idx] = np.where(~left, fc, fb[idx])
        side[idx] = np.where(left, 1, -1)
        a[idx[exact]] = b[idx[exact]] = c[exact]
        active[idx] = np.abs(b[idx] - a[idx]) > tol
    else:
        raise ZetaError(f"root refinement did not converge for {int(active.sum())} brackets")
    with np.errstate(invalid="ignore", divide="ignore"):
        root = b - fb * (b - a) / (fb - fa)
    return np.where(np.isfinite(root) & (root >= a) & (root <= b), root, 0.5 * (a + b))


def sign_changes(zc, h_left, h_right, halvings):
    """Evaluate Z on 2^halvings equal pieces of each interval; return (counts, brackets)."""
    p = 2**halvings
    frac = np.arange(p + 1) / p
    x = h_left[:, None] + (h_right - h_left)[:, None] * frac[None, :]  # (I, p+1)
    f = zc.z(x.ravel()).reshape(x.shape)
    ch = np.signbit(f[:, 1:]) != np.signbit(f[:, :-1])
    r, c = np.nonzero(ch)
    return ch.sum(axis=1), (r, x[r, c], x[r, c + 1], f[r, c], f[r, c + 1])
