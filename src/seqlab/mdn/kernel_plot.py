"""The figure of extract_kernel.py: attention kernels, response kernel vs AR, their spectra with the
prime lines, held-out residuals of the best-fitting forms (first checkpoint of the report)."""
import numpy as np

from seqlab.zeta import spectra


def _band(ax, x, b, color, label, lw=1.2):
    ax.plot(x, b["mean"], color=color, lw=lw, label=label)
    ax.fill_between(x, b["lo"], b["hi"], color=color, alpha=0.25, lw=0)


def plot(out, png_path, title=""):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from seqlab.core import plots
    r = out["checkpoints"][0]
    d = np.asarray(r["lags"])
    fig, axes = plt.subplots(2, 3, figsize=(17, 9), dpi=80)
    styles = ["-", "--", ":", "-."]
    for kind, ax, yl in (("score", axes[0, 0], "row-centred pre-softmax score"), ("weight", axes[0, 1], "post-softmax weight")):
        for layer, heads in enumerate(r["attention"]):
            for h, hb in enumerate(heads):
                _band(ax, d, hb[kind], f"C{h}", f"L{layer} H{h}", lw=1.0)
                ax.lines[-1].set_linestyle(styles[layer % 4])
        ax.set(xlabel="lag d (0 = the query token itself)", ylabel=yl, title=f"attention {kind} by lag (95% bootstrap band)")
        if kind == "weight":
            ax.set_yscale("log")
        ax.legend(fontsize=6, ncol=2)
    ax = axes[0, 2]
    _band(ax, d, r["response"]["mean"], "C3", "model: d E[s_t+1] / d s_t-d")
    _band(ax, d, r["response"]["median"], "C4", "model: d median / d s_t-d")
    ar = np.asarray(out["ar"]["coef"])
    ax.plot(np.arange(len(ar))[: len(d)], ar[: len(d)], "k.-", lw=0.8, ms=3, label=f"AR({out['ar']['order']}) on the train tail")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="lag d", ylabel="response (spacing per spacing)", title="linear response kernel vs height-local AR")
    ax.legend(fontsize=7)
    for ax, key, yl in ((axes[1, 0], "gain", "|A(f)|"), (axes[1, 1], "implied", "1 / |1 - A(f)|^2")):
        for name, color in (("response_mean", "C3"), ("response_median", "C4"), ("ar", "k")):
            s = r["spectra"][name]
            ax.plot(s["freqs"], s[key], color=color, lw=1, label=name)
        for p in (2, 3, 5, 7):
            ax.axvline(spectra.prime_line(p, r["height"]), color="m", ls=":", lw=0.8)
        ax.set(xlabel="f (cycles per spacing); dotted: log p / log(T/2pi), p = 2, 3, 5, 7", ylabel=yl, xlim=(0, 0.5),
               title=f"kernel spectrum: {key}")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    ax = axes[1, 2]
    for i, f in enumerate(r["fits"]["response_mean"][:3]):
        ax.plot(f["d"], f["residual_eval"], f"C{i}.-", lw=0.8, ms=3, label=f"{f['form']} (AIC {f['aic']:.0f})")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="lag d", ylabel="held-out residual", title="response kernel (mean): best 3 forms, odd-window residuals")
    ax.legend(fontsize=7)
    return plots.finish_grid(fig, png_path, title)
