"""Head ablation and magnitude pruning of an MDN model, scored by NLL on the model's scored positions.

A head is removed by zeroing its output before the attention's output projection (seqlab.mdn.
attention.heads_removed): the head, not a slice of the projection's output. Delta NLL = NLL with
the head removed - NLL of the intact model, per window, then averaged; its 95% interval is a paired
bootstrap over windows. Pruning zeroes the smallest-magnitude share q of the weights of one layer
type (all blocks together) and reports the NLL.
"""
import numpy as np
import torch

from seqlab.mdn import attention, evaluate as mdn_eval, mixture

LAYER_TYPES = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")


@torch.no_grad()
def window_nll(model, wins, batch_size=64):
    """(N,) mean NLL in nats per spacing over each window's scored positions."""
    m, y, _ = mdn_eval.predict(model, wins, batch_size)
    return mixture.nll(m, y).mean(1).numpy()


def paired_interval(delta, n_boot=1000, level=0.95, seed=0):
    """(mean, lo, hi) of per-window differences: a percentile bootstrap interval of the mean."""
    delta = np.asarray(delta, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = delta[rng.integers(0, len(delta), size=(n_boot, len(delta)))].mean(1)
    a = (1 - level) / 2
    return float(delta.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def head_ablation(model, wins, batch_size=64, n_boot=1000, seed=0):
    """{"base_nll", "heads": [{layer, head, delta, lo, hi}]}: Delta NLL (nats per spacing) of removing
    each head alone, with its paired 95% bootstrap interval over windows."""
    model.eval()
    base = window_nll(model, wins, batch_size)
    rows = []
    for layer, a in enumerate(attention.attention_layers(model)):
        for h in range(a.n_head):
            with attention.heads_removed(model, [(layer, h)]):
                cut = window_nll(model, wins, batch_size)
            d, lo, hi = paired_interval(cut - base, n_boot, seed=seed)
            rows.append({"layer": layer, "head": h, "delta": d, "lo": lo, "hi": hi})
    return {"base_nll": float(base.mean()), "heads": rows}


def layer_weights(model, kind):
    """The weight matrices of one layer type ("attn.qkv", ...) in every block, or all of them ("all")."""
    out = []
    for name, p in model.named_parameters():
        if p.dim() >= 2 and ".blocks." in f".{name}" and name.endswith(".weight"):
            if kind == "all" or name.endswith(f"{kind}.weight"):
                out.append(p)
    return out


@torch.no_grad()
def magnitude_pruning(model, wins, fractions=(0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9), kinds=LAYER_TYPES + ("all",),
                      batch_size=64):
    """{kind: [{"fraction", "nll"}]}: NLL (nats per spacing, scored positions, all windows) after zeroing
    the `fraction` of the kind's weights with the smallest |w| (one threshold over all its blocks);
    the model is restored after each point."""
    model.eval()
    out = {}
    for kind in kinds:
        ps = layer_weights(model, kind)
        saved = [p.detach().clone() for p in ps]
        mags = torch.cat([p.abs().flatten() for p in saved])
        curve = []
        for q in fractions:
            if q > 0:
                thr = torch.quantile(mags.float(), q) if mags.numel() <= 16_000_000 else mags.kthvalue(int(q * mags.numel())).values
                for p, s in zip(ps, saved):
                    p.copy_(torch.where(s.abs() <= thr, torch.zeros_like(s), s))
            curve.append({"fraction": q, "nll": float(window_nll(model, wins, batch_size).mean())})
            for p, s in zip(ps, saved):
                p.copy_(s)
        out[kind] = curve
    return out


def plot(report, png_path, title=""):
    """Two panels: Delta NLL per head with 95% intervals; NLL against the share of weights pruned."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), dpi=80)
    ax = axes[0]
    rows = report["heads"]
    x = np.arange(len(rows))
    d = np.array([r["delta"] for r in rows])
    err = np.array([[r["delta"] - r["lo"] for r in rows], [r["hi"] - r["delta"] for r in rows]])
    ax.bar(x, d, color=[f"C{r['layer']}" for r in rows])
    ax.errorbar(x, d, yerr=err, fmt="none", ecolor="k", capsize=3)
    ax.set_xticks(x, [f"L{r['layer']}H{r['head']}" for r in rows], fontsize=8)
    ax.axhline(0, color="k", lw=0.5)
    ax.set(ylabel="Delta NLL (nats per spacing)", title=f"head removed before the output projection (base NLL {report['base_nll']:.4f})")
    ax = axes[1]
    for kind, curve in report["pruning"].items():
        ax.plot([c["fraction"] for c in curve], [c["nll"] for c in curve], "o-", ms=3, label=kind)
    ax.set(xlabel="share of the layer type's weights zeroed (smallest |w|)", ylabel="NLL (nats per spacing)",
           title="magnitude pruning")
    ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.12, top=0.88, wspace=0.22)
    fig.savefig(png_path)
    plt.close(fig)
    return png_path
