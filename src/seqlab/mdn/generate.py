"""Free-running generation from an MDN model and its comparison with the data and the references.

generate_spectra.py calls `free_run` (chains sampled one spacing at a time from real val contexts,
sliding window of the model's context), `reference_sources` (GUE, Wigner i.i.d., AR chains) and
`compare` (every statistic of seqlab/zeta/sequence_stats.py for every source, distances to the data
with bootstrap errors, prime lines of the mean periodogram), then `plot`.
"""
import math

import numpy as np
import torch

from seqlab.mdn import evaluate as mdn_eval, mixture
from seqlab.zeta import rmt, sequence_stats as ss

SOURCES = ("model", "data", "gue", "wigner_iid", "ar")


@torch.no_grad()
def free_run(stepper, contexts, n_steps, seed=0):
    """(n_chains, n_steps) spacings: row c starts from contexts[c] (n_chains, ctx) and feeds back one
    draw at a time (restricted to s > 0); `stepper(history) -> Mixture (n, K)` sees the history's tail."""
    gen = torch.Generator().manual_seed(seed)
    hist = torch.as_tensor(contexts, dtype=torch.float64)
    ctx = hist.size(1)
    for _ in range(n_steps):
        nxt = mixture.sample(stepper(hist[:, -ctx:]), gen, positive=True)
        hist = torch.cat([hist, nxt.double()[:, None]], 1)
    return hist[:, ctx:].numpy()


def sampler(stepper, sigma_scale=1.0, feedback="sample"):
    """The stepper as generation uses it: every component's sigma times sigma_scale (a temperature on
    the spread), and feedback "sample" (draw the next spacing) or "mean" (feed back the mixture mean:
    a point mass there)."""
    if sigma_scale == 1.0 and feedback == "sample":
        return stepper

    def step(history):
        m = stepper(history)
        if feedback == "mean":
            mu = mixture.mean(m)
            return mixture.gaussian(mu, torch.full_like(mu, 1e-9))
        return mixture.Mixture(m.log_w, m.mu, m.sigma * sigma_scale)
    return step


def val_contexts(val_stream, n_chains, ctx):
    """n_chains contexts of ctx consecutive val spacings, evenly spaced over the val stream, and the
    index of the first spacing after each (where the chain continues the real sequence)."""
    starts = np.linspace(0, len(val_stream) - ctx - 1, n_chains).astype(int)
    return np.stack([val_stream[s:s + ctx] for s in starts]), starts + ctx


def ar_chains(ar, contexts, n_steps, seed=0):
    """Chains of a Gaussian AR forecaster (seqlab.mdn.baselines.GaussianAR) from the same contexts."""
    return free_run(mdn_eval.ar_stepper(ar), contexts, n_steps, seed)


def gue_blocks(n_spacings, block, seed=0):
    """(n, block) unfolded GUE spacings (numpy complex GUE matrices, semicircle unfolding, central half
    of each spectrum; seqlab.zeta.rmt.gue_unfolded_spacings) with at least n_spacings in all."""
    rng = np.random.default_rng(seed)
    size = int(2.2 * block) + 8                     # the central half holds > block spacings
    n_mat = max(2, math.ceil(n_spacings / block))
    return rmt.gue_unfolded_spacings(n_mat, size, rng)[:, :block]


def blocks_of(x, block):
    """Rows of `block` consecutive values cut from each row of x (n, m) (or from a 1-D stream)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    n = x.shape[1] // block
    return x[:, :n * block].reshape(-1, block)


def compare(sources_long, height, block=512, n_boot=200, seed=0):
    """The spectra report. sources_long: {name: (n, m) long sequences} (model chains, data blocks of the
    chains' length, ...); statistics on blocks of `block` spacings, periodograms on the long rows.

    Returns {"sources": {name: {"curves", "moments", "periodogram", "prime_lines"}}, "distances":
    {name: {statistic: {"value", "boot_std"}}} against "data", "references": GUE curves, "height"}."""
    per = {name: ss.per_block(blocks_of(x, block)) for name, x in sources_long.items()}
    out = {"height": height, "block": block, "sources": {}, "distances": {},
           "references": {k: (None if v is None else v.tolist()) for k, v in ss.references().items()}}
    for name, x in sources_long.items():
        freqs, power = ss.mean_periodogram(x)
        out["sources"][name] = {"n_spacings": int(np.asarray(x).size), "shape": list(np.shape(x)),
                                "curves": ss.curves(per[name]), "moments": ss.moments(np.atleast_2d(x)),
                                "count_excursion_32": ss.count_excursion(x, 32),
                                "periodogram": {"freqs": freqs.tolist(), "power": power.tolist()},
                                "prime_lines": ss.prime_lines(freqs, power, height)}
        if name != "data":
            out["distances"][name] = ss.distances(per[name], per["data"], n_boot, seed)
    return out


COLORS = {"model": "C3", "data": "k", "gue": "C0", "wigner_iid": "C2", "ar": "C1"}


def plot(report, png_path, title=""):
    """Six panels: NN density, R2 against the sine kernel, Sigma^2(L), form factor, lag-k
    autocorrelation (each source's mean with its standard error) and the periodograms with the
    prime lines f_p marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from seqlab.core import plots
    from seqlab.zeta import spectra
    fig, axes = plt.subplots(2, 3, figsize=(17, 9), dpi=80)
    panels = [("nn_density", "spacing s / mean", "density", "nearest-neighbour spacing"),
              ("r2", "r (mean spacings)", "R2(r)", "pair correlation vs 1 - (sin pi r / pi r)^2"),
              ("sigma2", "L (mean spacings)", "Sigma^2(L)", "number variance"),
              ("sff", "tau", "K(tau)", "spectral form factor (Hann taper)"),
              ("acf", "lag k", "corr(s_i, s_i+k)", "autocorrelation")]
    refs = report["references"]
    for ax, (key, xl, yl, tt) in zip(axes.flat, panels):
        for name, src in report["sources"].items():
            c = src["curves"][key]
            x, m, e = (np.asarray(c[k], dtype=np.float64) for k in ("x", "mean", "sem"))
            ax.plot(x, m, color=COLORS.get(name), lw=1.2, label=name, marker="o" if key == "acf" else None, ms=3)
            ax.fill_between(x, m - 2 * e, m + 2 * e, color=COLORS.get(name), alpha=0.2, lw=0)
        if refs.get(key) is not None:
            ax.plot(report["sources"]["data"]["curves"][key]["x"], refs[key], "k--", lw=0.8, label="GUE theory")
        ax.set(xlabel=xl, ylabel=yl, title=tt)
        ax.legend(fontsize=7)
    axes[1, 1].axhline(0, color="k", lw=0.5)
    axes[0, 2].set_yscale("log")      # a drifting source's Sigma^2 grows like L^2 and would hide the rest
    ax = axes[1, 2]
    for name, src in report["sources"].items():
        pg = src["periodogram"]
        f, p = np.asarray(pg["freqs"]), np.asarray(pg["power"])
        ax.semilogy(f[1:], p[1:] / np.median(p[1:]), color=COLORS.get(name), lw=0.7, label=name, alpha=0.8)
    for p in (2, 3, 5, 7):
        ax.axvline(spectra.prime_line(p, report["height"]), color="m", ls=":", lw=0.8)
    ax.set(xlabel="frequency (cycles per spacing); dotted: log p / log(T/2pi), p = 2, 3, 5, 7",
           ylabel="power / median", title="mean periodogram of s - mean", xlim=(0, 0.5))
    ax.legend(fontsize=7)
    return plots.finish_grid(fig, png_path, title)
