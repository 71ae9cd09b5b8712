"""Reference forecasters every SpacingMDN number is compared with, on the same positions.

  wigner_iid    each spacing i.i.d. from the GUE Wigner surmise (no fitting at all)
  marginal_iid  each spacing i.i.d. from the train spacings' histogram (Freedman-Diaconis bins)
  ar            Gaussian AR(p) on the centred spacings, fitted on train (Yule-Walker via the
                Levinson-Durbin recursion); p is chosen on train: fit on the first 90% of the
                train stream, pick the order with the lowest NLL on the last 10%, refit on all.
                At position t it uses AR(min(p, t+1)): only the t+1 spacings the model sees.
  local_ar      the same Gaussian AR, fitted only on the last L spacings of train (the heights
                nearest val: the best linear predictor changes with height, as the prime lines
                f_p = log p / log(T/2pi) drift). L and p are chosen on train only: hold out the last
                5% of the train stream, fit each candidate tail L ending where the holdout starts,
                score every order on the holdout windows, keep the best (L, p); refit on the last L.
  height_ar     a linear predictor whose coefficients move with the height, a + a_h z (z the
                normalised log(gamma/2pi) of the newest input), least squares on the lags and the
                lags times z over the last L train spacings; L and P chosen on train only (the
                held-out last 5%, as local_ar); Gaussian with the fit's residual variance. The prime
                lines drift with log T, and this follows them past the heights it was fitted at.
  oracle_local_ar  AR fitted on one half of the scored windows and scored on the other, both ways
                (cross-fitted; p chosen inside the fitting half). It sees the scored split, so it
                is a ceiling for linear prediction at those heights, not a rival forecaster.

i.i.d. baselines are `IID` objects (nll, cdf, crps, sample); the AR forecast of every
(window, position) is a one-component mixture, scored by seqlab.mdn.mixture like the models.
"""
import math

import numpy as np
import torch

from seqlab.mdn import mixture
from seqlab.zeta import rmt

AR_ORDERS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 255)


class IID:
    """A fixed distribution on s >= 0 used for every position, given by its log-density and CDF.

    CRPS(y) = int_0^y F(x)^2 dx + int_y^inf (1 - F(x))^2 dx, by the trapezoid rule on a grid of
    step `dx` up to `x_max` (F = 1 beyond it); error O(dx^2).
    """

    def __init__(self, name, logpdf, cdf_fn, x_max, dx=1e-3):
        self.name, self._logpdf, self._cdf = name, logpdf, cdf_fn
        self.grid = np.arange(0.0, x_max + dx, dx)
        F = np.clip(self._cdf(self.grid), 0.0, 1.0)
        self.grid_cdf = F
        self.below = np.concatenate([[0.0], np.cumsum(0.5 * (F[1:] ** 2 + F[:-1] ** 2) * dx)])
        tail = 0.5 * ((1 - F[1:]) ** 2 + (1 - F[:-1]) ** 2) * dx
        self.above = np.concatenate([np.cumsum(tail[::-1])[::-1], [0.0]])
        self.mean = float(np.sum(0.5 * ((1 - F[1:]) + (1 - F[:-1]))) * dx)  # E[S] = int (1 - F)

    def nll(self, y):
        """-log p(y) in nats per spacing."""
        return -self._logpdf(np.asarray(y, dtype=np.float64))

    def cdf(self, y):
        return self._cdf(np.asarray(y, dtype=np.float64))

    def crps(self, y):
        """CRPS in spacing units (see the class docstring)."""
        y = np.asarray(y, dtype=np.float64)
        inside = np.interp(y, self.grid, self.below) + np.interp(y, self.grid, self.above)
        beyond = self.below[-1] + (y - self.grid[-1])  # F = 1 past the grid: only the first integral grows
        return np.where(y <= self.grid[-1], inside, beyond)

    def mass_below_zero(self):
        return 0.0

    def sample(self, shape, rng):
        """i.i.d. draws by inverse-CDF interpolation on the grid."""
        return np.interp(rng.random(shape), self.grid_cdf, self.grid)


def wigner_iid():
    """The GUE Wigner surmise p(s) = (32/pi^2) s^2 exp(-4 s^2/pi); entropy 0.5288 nats."""
    return IID("wigner_iid", rmt.wigner_logpdf, rmt.wigner_cdf, x_max=6.0)


def marginal_iid(train_spacings):
    """Histogram density of the train spacings on [0, 1.5 max]; bin width by Freedman-Diaconis
    (clipped to [0.005, 0.1]); 0.5 pseudo-counts per bin so no val value gets zero density."""
    s = np.asarray(train_spacings, dtype=np.float64).ravel()
    q75, q25 = np.percentile(s, [75, 25])
    h = float(np.clip(2 * (q75 - q25) / len(s) ** (1 / 3), 0.005, 0.1))
    edges = np.arange(0.0, 1.5 * s.max() + h, h)
    counts = np.histogram(s, edges)[0] + 0.5
    dens = counts / (counts.sum() * h)
    cum = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])

    def logpdf(y):
        b = np.clip((y // h).astype(np.int64), 0, len(dens) - 1)
        return np.where(y >= 0, np.log(dens[b]), -np.inf)

    def cdf_fn(y):
        return np.interp(y, edges, cum)

    iid = IID("marginal_iid", logpdf, cdf_fn, x_max=float(edges[-1]))
    iid.bin_width = h
    return iid


# ---- Gaussian AR(p) -----------------------------------------------------------------------------
def autocovariance(x, max_lag):
    """Biased sample autocovariance c_0..c_max_lag of a 1-D array (FFT, O(n log n))."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    n = len(x)
    f = np.fft.rfft(x, 2 ** int(math.ceil(math.log2(2 * n))))
    return np.fft.irfft(f * np.conj(f))[: max_lag + 1] / n


def levinson(c, max_p):
    """Yule-Walker AR coefficients of every order 1..max_p from autocovariances c.

    Returns (phi, v): phi[q - 1, :q] are AR(q)'s coefficients (lag 1 first), v[q] the
    one-step innovation variance of AR(q) (v[0] = c_0).
    """
    phi = np.zeros((max_p, max_p))
    v = np.zeros(max_p + 1)
    v[0] = c[0]
    prev = np.zeros(0)
    for q in range(1, max_p + 1):
        k = (c[q] - prev @ c[1:q][::-1] if q > 1 else c[1]) / v[q - 1]
        cur = np.concatenate([prev - k * prev[::-1], [k]])
        phi[q - 1, :q] = cur
        v[q] = v[q - 1] * (1 - k * k)
        prev = cur
    return phi, v


class GaussianAR:
    """AR(p) forecaster: s_{t+1} ~ N(m + sum_j phi_j (s_{t+1-j} - m), v_q), q = min(p, t+1)."""

    def __init__(self, stream, p, max_p=None):
        self.max_p = max(p, max_p or p)
        self.mean = float(np.mean(stream))
        self.phi, self.v = levinson(autocovariance(stream, self.max_p), self.max_p)
        self.p = p
        self.name = f"ar{p}"

    def coef_matrix(self, T, p=None):
        """(T, T) matrix A with prediction_t = m + sum_j A[t, j] (s_j - m), using min(p, t+1) lags."""
        p = p or self.p
        A = np.zeros((T, T))
        for t in range(T):
            q = min(p, t + 1)
            A[t, t + 1 - q: t + 1] = self.phi[q - 1, :q][::-1]
        return A

    def sigma(self, T, p=None):
        p = p or self.p
        return np.sqrt(self.v[np.minimum(p, np.arange(1, T + 1))])

    def predict(self, wins, pos, p=None):
        """Mixture (N, P, 1) for windows (N, T+1) at positions pos (all ranks < T)."""
        w = np.asarray(wins, dtype=np.float64)
        T = w.shape[1] - 1
        A = self.coef_matrix(T, p)[np.asarray(pos)]
        mu = self.mean + (w[:, :T] - self.mean) @ A.T
        sig = np.broadcast_to(self.sigma(T, p)[np.asarray(pos)], mu.shape)
        return mixture.gaussian(torch.from_numpy(np.array(mu)), torch.from_numpy(np.array(sig)))  # own, writable copies

    def next_mixture(self, history):
        """One-step forecast from each row of history (N, L) using its last min(p, L) values."""
        h = np.asarray(history, dtype=np.float64)
        q = min(self.p, h.shape[1])
        mu = self.mean + (h[:, -q:] - self.mean) @ self.phi[q - 1, :q][::-1]
        return mixture.gaussian(torch.from_numpy(mu), torch.full((len(h),), math.sqrt(self.v[q]), dtype=torch.float64))


def fit_ar(stream, window, orders=AR_ORDERS, holdout=0.1):
    """AR baseline with p chosen on train (see module docstring). `window` = T+1 of the eval windows.

    Returns (GaussianAR fitted on the whole stream, {p: held-out NLL in nats per spacing}).
    """
    s = np.asarray(stream, dtype=np.float64)
    T = window - 1
    orders = [p for p in orders if p <= T] or [1]
    cut = int(len(s) * (1 - holdout))
    held = s[cut:]
    n = len(held) // window
    if cut < 2 * window or n < 1:  # too little data to choose: keep the smallest order
        return GaussianAR(s, orders[0]), {}
    fit = GaussianAR(s[:cut], orders[0], max_p=max(orders))
    wins = held[: n * window].reshape(n, window)
    pos = np.arange(T)
    scores = {}
    for p in orders:
        m = fit.predict(wins, pos, p)
        scores[p] = float(mixture.nll(m, torch.from_numpy(wins[:, 1:])).mean())
    best = min(scores, key=scores.get)
    return GaussianAR(s, best), scores


LOCAL_TAILS = tuple(2 ** k for k in range(13, 21))  # candidate tail lengths L (spacings), 8k .. 1M


def _holdout_scores(fit_stream, held, window, orders):
    """{p: mean NLL (nats per spacing) over all positions of held's windows} for AR fitted on fit_stream."""
    T = window - 1
    n = len(held) // window
    wins = held[: n * window].reshape(n, window)
    fit = GaussianAR(fit_stream, orders[0], max_p=max(orders))
    pos = np.arange(T)
    return {p: float(mixture.nll(fit.predict(wins, pos, p), torch.from_numpy(wins[:, 1:])).mean()) for p in orders}


def fit_local_ar(stream, window, tails=LOCAL_TAILS, orders=AR_ORDERS, holdout=0.05):
    """The local_ar baseline (module docstring): AR fitted on the last L spacings of the train stream,
    L and p chosen on a held-out train tail. Returns (GaussianAR, {"tail": L, "p": p,
    "holdout_nll": {"L:p": NLL in nats per spacing}, "holdout_spacings": n})."""
    s = np.asarray(stream, dtype=np.float64)
    orders = [p for p in orders if p <= window - 1] or [1]
    cut = len(s) - max(window, int(round(holdout * len(s))))
    if cut < 2 * window:  # too little train to choose: the whole stream, the smallest order
        return GaussianAR(s, orders[0]), {"tail": len(s), "p": orders[0], "holdout_nll": {}, "holdout_spacings": 0}
    cands = sorted({L for L in tails if 2 * window <= L < cut} | {cut})
    scores = {}
    for L in cands:
        for p, v in _holdout_scores(s[cut - L:cut], s[cut:], window, [q for q in orders if q < L // 4]).items():
            scores[f"{L}:{p}"] = v
    best = min(scores, key=scores.get)
    L, p = (int(v) for v in best.split(":"))
    L = min(L if L < cut else len(s), len(s))  # "all of it before the holdout" becomes all of train
    ar = GaussianAR(s[-L:], p)
    ar.name = "local_ar"
    return ar, {"tail": L, "p": p, "holdout_nll": scores, "holdout_spacings": len(s) - cut}


def oracle_local_ar(wins, pos, holdout=0.2):
    """The oracle_local_ar forecast (module docstring) of windows (N, T+1) at positions pos: windows
    [0, N/2) are predicted by AR fitted on the concatenated windows [N/2, N) and vice versa, p chosen
    by fit_ar inside the fitting half. Returns (Mixture (N, P, 1), {"p": [p for the first half,
    p for the second]})."""
    w = np.asarray(wins, dtype=np.float64)
    half = len(w) // 2
    if half < 2:
        raise ValueError("oracle_local_ar needs at least 4 windows")
    parts, ps = [], []
    for scored, fitted in ((slice(0, half), slice(half, None)), (slice(half, None), slice(0, half))):
        ar, _ = fit_ar(w[fitted].ravel(), w.shape[1], holdout=holdout)
        parts.append(ar.predict(w[scored], pos))
        ps.append(ar.p)
    return mixture.Mixture(*(torch.cat(t) for t in zip(*parts))), {"p": ps}


def height_ar_coefficients(s, z, P, ridge=1e-9):
    """Least squares of (s_{t+1} - 1) on the lags (s_{t-j} - 1), j < q, and on those lags times z_t,
    for every order q = 1..P from one Gram matrix. s: spacings, z: normalised height of each.
    Returns (a, a_h, v): (P, P) coefficients (row q-1 = order q, lag 1 first) and (P,) residual
    variances (spacing units squared) on the fitted data."""
    x = np.asarray(s, dtype=np.float64) - 1.0
    lag = np.lib.stride_tricks.sliding_window_view(x, P + 1)[:, ::-1]    # col 0: s_{t+1}; col j: s_{t+1-j}
    y, X = lag[:, 0], lag[:, 1:]
    D = np.concatenate([X, X * np.asarray(z, dtype=np.float64)[P - 1:len(x) - 1, None]], 1)   # (n, 2P)
    G, r, yy = D.T @ D, D.T @ y, float(y @ y)
    a, a_h, v = np.zeros((P, P)), np.zeros((P, P)), np.zeros(P)
    for q in range(1, P + 1):
        idx = np.r_[0:q, P:P + q]
        Gq = G[np.ix_(idx, idx)]
        sol = np.linalg.solve(Gq + ridge * np.trace(G) / len(G) * np.eye(2 * q), r[idx])
        a[q - 1, :q], a_h[q - 1, :q] = sol[:q], sol[q:]
        v[q - 1] = max((yy - 2 * sol @ r[idx] + sol @ Gq @ sol) / len(y), 1e-6)
    return a, a_h, v


class HeightAR:
    """The height_ar forecaster (module docstring): s_{t+1} ~ N(1 + sum_j (a + a_h z)[q-1, j] (s_{t-j} - 1),
    v[q-1]), q = min(P, t+1), z = (L - center) / scale of the window's spacings."""

    def __init__(self, s, log_heights, P):
        L = np.asarray(log_heights, dtype=np.float64)
        self.center, self.scale, self.p = float(L.mean()), float(max((L[-1] - L[0]) / 2, 1e-9)), P
        self.a, self.a_h, self.v = height_ar_coefficients(s, (L - self.center) / self.scale, P)
        self.name = "height_ar"

    def predict(self, wins, pos, log_heights):
        """Mixture (N, P, 1) for windows (N, T+1) at positions pos; log_heights (N, T+1)."""
        w = np.asarray(wins, dtype=np.float64) - 1.0
        z = (np.asarray(log_heights, dtype=np.float64) - self.center) / self.scale
        mu, sig = np.zeros((len(w), len(pos))), np.zeros((len(w), len(pos)))
        for k, t in enumerate(np.asarray(pos)):
            q = min(self.p, t + 1)
            hist = w[:, t + 1 - q:t + 1][:, ::-1]
            mu[:, k] = 1 + hist @ self.a[q - 1, :q] + (hist * z[:, t:t + 1]) @ self.a_h[q - 1, :q]
            sig[:, k] = math.sqrt(self.v[q - 1])
        return mixture.gaussian(torch.from_numpy(mu), torch.from_numpy(sig))


def fit_height_ar(stream, log_heights, window, tails=(2 ** 16, 2 ** 17, 2 ** 18), orders=(64, 128), holdout=0.05):
    """The height_ar baseline: (L, P) chosen by NLL on the held-out last 5% of train (windows of
    `window`, all positions), then refitted on the last L spacings. Returns (HeightAR, {"tail", "p",
    "holdout_nll": {"L:P": nats per spacing}})."""
    s, L = np.asarray(stream, dtype=np.float64), np.asarray(log_heights, dtype=np.float64)
    T = window - 1
    orders = [p for p in orders if p <= T] or [min(T, 8)]
    cut = len(s) - max(window, int(round(holdout * len(s))))
    n = (len(s) - cut) // window
    wins, hw = s[cut:cut + n * window].reshape(n, window), L[cut:cut + n * window].reshape(n, window)
    scores = {}
    for tail in [t for t in tails if 4 * max(orders) <= t <= cut]:
        for P in orders:
            fit = HeightAR(s[cut - tail:cut], L[cut - tail:cut], P)
            m = fit.predict(wins, np.arange(T), hw)
            scores[f"{tail}:{P}"] = float(mixture.nll(m, torch.from_numpy(wins[:, 1:])).mean())
    if not scores:
        raise ValueError("too little train data for height_ar")
    tail, P = (int(v) for v in min(scores, key=scores.get).split(":"))
    return HeightAR(s[-tail:], L[-tail:], P), {"tail": tail, "p": P, "holdout_nll": scores}
