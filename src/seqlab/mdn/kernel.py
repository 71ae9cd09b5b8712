"""Kernels of a trained MDN: its linear response to each past spacing, their spectra, and fits of
kernel curves to a library of forms ranked by held-out AIC.

Glossary: lag d = 0 is the most recent input s_t of the prediction of s_{t+1}; d = k is s_{t-k}.
The AR coefficients phi_j (lag j = d + 1 in AR notation) sit at d = j - 1, so a linear model
s_{t+1} - 1 = sum_d a_d (s_{t-d} - 1) has response kernel a_d exactly.
"""
import math

import numpy as np
import torch

from seqlab.mdn import mixture
from seqlab.zeta import spectra


def mixture_median(m, iters=60):
    """Median of each mixture in m (any leading shape), by bisection on the CDF (no gradient)."""
    with torch.no_grad():
        lo = (m.mu - 10 * m.sigma).min(-1).values
        hi = (m.mu + 10 * m.sigma).max(-1).values
        for _ in range(iters):
            mid = (lo + hi) / 2
            below = mixture.cdf(m, mid) < 0.5
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


def response_kernel(model, wins, max_lag=64, positions=None, batch_size=64):
    """Linear response of the forecast to each past spacing, per window.

    For window n and query position t (predicting s_{t+1} from s_0..s_t), entry d of the mean
    kernel is d E[s_{t+1}] / d s_{t-d} (the gradient of the predicted mean, through every input
    feature the spacing enters, e.g. the count channel), and of the median kernel d median / d s_{t-d}
    (implicit differentiation: -dF(m)/ds / p(m) at the median m). Dimensionless (spacing per
    spacing). Averaged over `positions` (default: the last position and the three 32, 64, 96 before
    it, those >= max_lag). Returns {"mean": (N, max_lag + 1), "median": (N, max_lag + 1)}."""
    dev = next(model.parameters()).device
    T = wins.size(1) - 1
    if positions is None:
        positions = [t for t in (T - 1, T - 33, T - 65, T - 97) if t >= max_lag] or [T - 1]
    out = {"mean": [], "median": []}
    model.eval()
    for i in range(0, len(wins), batch_size):
        x = wins[i:i + batch_size, :T].to(dev).float().requires_grad_(True)
        m = model(x)
        k_mean = torch.zeros(len(x), max_lag + 1, dtype=torch.float64)
        k_med = torch.zeros_like(k_mean)
        for t in positions:
            mt = mixture.Mixture(*(v[:, t].double() for v in m))
            g_mean, = torch.autograd.grad(mixture.mean(mt).sum(), x, retain_graph=True)
            med = mixture_median(mt)
            pdf = mixture.log_prob(mt, med).exp().detach()
            g_cdf, = torch.autograd.grad(mixture.cdf(mt, med).sum(), x, retain_graph=True)
            g_med = -g_cdf.double() / pdf[:, None]
            lags = t - torch.arange(max_lag + 1)
            k_mean += g_mean.double().cpu()[:, lags]
            k_med += g_med.cpu()[:, lags]
        out["mean"].append(k_mean / len(positions))
        out["median"].append(k_med / len(positions))
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def ar_kernel(stream, p):
    """Yule-Walker AR(p) coefficients of a spacing stream as a kernel by lag d = 0..p-1
    (seqlab.mdn.baselines.GaussianAR; d = 0 multiplies the most recent spacing)."""
    from seqlab.mdn import baselines
    ar = baselines.GaussianAR(np.asarray(stream, dtype=np.float64), p)
    return ar.phi[p - 1, :p].copy()


def transfer(kernel, n_fft=8192):
    """(freqs, gain, implied) of a kernel a_d: A(f) = sum_d a_d exp(-2 pi i f (d + 1)), gain = |A(f)|,
    implied = 1 / |1 - A(f)|^2 (the spectrum of s if it were the AR process with these coefficients,
    in units of the innovation variance); f in cycles per spacing, 0 .. 0.5."""
    a = np.concatenate([[0.0], np.asarray(kernel, dtype=np.float64)])
    A = np.fft.rfft(a, n_fft)
    return np.fft.rfftfreq(n_fft), np.abs(A), 1.0 / np.abs(1.0 - A) ** 2


def spectral_peaks(freqs, spec, height, primes=(2, 3, 5, 7)):
    """For each prime p: the local maximum of `spec` nearest the line f_p = log p / log(T/2pi)
    (f_meas, rel_err = f_meas / f_p - 1) and its height over the median of spec."""
    spec = np.asarray(spec)
    k = np.nonzero((spec[1:-1] > spec[:-2]) & (spec[1:-1] >= spec[2:]))[0] + 1
    med = float(np.median(spec[1:]))
    rows = []
    for p in primes:
        f = spectra.prime_line(p, height)
        if len(k) == 0 or f >= freqs[-1]:
            continue
        j = k[np.argmin(np.abs(freqs[k] - f))]
        rows.append({"p": p, "f_pred": f, "f_meas": float(freqs[j]), "rel_err": float(freqs[j] / f - 1),
                     "peak_over_median": float(spec[j] / med)})
    return rows


def dominant_frequency(curve, f_min=0.02, n_fft=4096):
    """(f, power share) of the strongest oscillation of a kernel curve c(d), d = 1..D (d = 0 left out):
    the frequency in [f_min, 0.5] cycles per lag of the highest |FFT|^2 of c after removing its
    least-squares line, and the share of the power above f_min that lies within 1/D of it."""
    c = np.asarray(curve, dtype=np.float64)[1:]
    d = np.arange(len(c))
    c = c - np.polyval(np.polyfit(d, c, 1), d)
    freqs = np.fft.rfftfreq(n_fft)
    pw = np.abs(np.fft.rfft(c * np.hanning(len(c)), n_fft)) ** 2
    sel = freqs >= f_min
    f = float(freqs[sel][np.argmax(pw[sel])])
    near = sel & (np.abs(freqs - f) <= 1.0 / len(c))
    return f, float(pw[near].sum() / pw[sel].sum())


# ---- a library of forms, linear in their amplitudes, nonlinear parameters on grids ----------------
TAUS = np.geomspace(0.5, 200, 40)


def _forms(d, height):
    """{name: [(nonlinear params, design matrix (len(d), k))]}; every design includes a constant."""
    one = np.ones_like(d)
    fp = [spectra.prime_line(p, height) for p in (2, 3, 5, 7)]
    return {
        "sine_kernel": [({}, np.stack([1 - np.sinc(d) ** 2, one], 1))],
        "exponential": [({"tau": t}, np.stack([np.exp(-d / t), one], 1)) for t in TAUS],
        "power_law": [({"b": b}, np.stack([(d + 1.0) ** -b, one], 1)) for b in np.linspace(0.2, 4, 39)],
        "damped_cosine": [({"tau": t, "f": f}, np.stack([np.exp(-d / t) * np.cos(2 * np.pi * f * d),
                                                       np.exp(-d / t) * np.sin(2 * np.pi * f * d), one], 1))
                          for t in TAUS[::3] for f in np.linspace(0.005, 0.5, 100)],
        "prime_cosines": [({"tau": t, "f_p": fp}, np.concatenate(
            [np.stack([np.exp(-d / t) * np.cos(2 * np.pi * f * d), np.exp(-d / t) * np.sin(2 * np.pi * f * d)], 1)
             for f in fp] + [one[:, None]], 1)) for t in TAUS],
    }


def fit_forms(d, y_fit, y_eval, height, skip_first=0):
    """Fit each form of the library to the curve y_fit(d) by least squares (amplitudes exactly, the
    nonlinear parameters on grids), and score it on the held-out curve y_eval (the same kernel from
    other windows): AIC = n log(RSS_eval / n) + 2 k, k = amplitudes + nonlinear parameters. Lower
    is better. skip_first drops lags d < skip_first (e.g. d = 0, often an outlier). Returns a list,
    best first, of {form, params, coef, k, rss_fit, rss_eval, aic, residual_eval}."""
    d = np.asarray(d, dtype=np.float64)[skip_first:]
    y_fit = np.asarray(y_fit, dtype=np.float64)[skip_first:]
    y_eval = np.asarray(y_eval, dtype=np.float64)[skip_first:]
    n = len(d)
    rows = []
    for name, cands in _forms(d, height).items():
        best = None
        for params, X in cands:
            coef, *_ = np.linalg.lstsq(X, y_fit, rcond=None)
            rss = float(np.sum((X @ coef - y_fit) ** 2))
            if best is None or rss < best[0]:
                best = (rss, params, coef, X)
        rss, params, coef, X = best
        k = X.shape[1] + len([v for v in params.values() if not isinstance(v, list)])
        res = y_eval - X @ coef
        rss_eval = float(np.sum(res ** 2))
        rows.append({"form": name, "params": {k_: v for k_, v in params.items()}, "coef": coef.tolist(), "k": k,
                     "rss_fit": rss, "rss_eval": rss_eval, "aic": n * math.log(max(rss_eval, 1e-300) / n) + 2 * k,
                     "residual_eval": res.tolist(), "d": d.tolist()})
    return sorted(rows, key=lambda r: r["aic"])
