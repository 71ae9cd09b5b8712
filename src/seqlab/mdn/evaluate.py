"""Scoring SpacingMDN models (and baselines) on a split, with the scored positions stated.

Vocabulary. A window is T+1 consecutive spacings s_0..s_T cut from a split. "Position t"
is the prediction of s_{t+1} from s_0..s_t (a context of t+1 spacings). E0 and PREFIX score
positions 0..T-1 of each window; POSTFIX scores only position T-1. Every number below says
which positions it averages over ("all", "last" = T-1, ">=k"), and baselines are always
scored on exactly the same (window, position) pairs.

Metrics (per scored spacing, then averaged):
  nll       -log p(s) in nats per spacing (the density on the whole line; lower is better)
  crps      continuous ranked probability score, in spacing units (lower is better)
  pit       F(s), the predictive CDF at the truth; uniform on [0, 1] for a calibrated forecast
            (mean 0.5, std 1/sqrt(12) = 0.2887); KS = sup |empirical CDF of PIT - identity|
            on a thinned sample (every `thin`-th value along the positions of a window, to weaken
            serial dependence; no thinning when a selection keeps one position per window)
  coverage  fraction of truths inside the central c-interval, = P(|pit - 1/2| <= c/2)
  mass_below_zero  mean P(S <= 0) the forecast wastes on impossible spacings
"""
import math
from pathlib import Path

import numpy as np
import torch

from seqlab.mdn import mixture

COVERAGE_LEVELS = (0.5, 0.8, 0.95)


def windows(split, length, stride=None):
    """(N, length) windows of `length` consecutive spacings from the flattened split, `stride` apart
    (default: length, i.e. non-overlapping; equals the stored rows when length is their width)."""
    stream = split.flatten()
    stride = stride or length
    n = (len(stream) - length) // stride + 1
    if n < 1:
        from seqlab.core.errors import UserError
        raise UserError(f"the split has {len(stream)} spacings, fewer than one window of {length}")
    return stream[torch.arange(n)[:, None] * stride + torch.arange(length)]


@torch.no_grad()
def predict(model, wins, batch_size=64, heights=None, **forward_kwargs):
    """Run `model` over windows (N, T+1). Returns (Mixture (N, P, K) in float64 on cpu,
    targets (N, P), positions (P,)): P scored positions per window, targets s_{t+1}.
    heights (N, T+1): log(gamma/2pi) of each spacing, for height-aware models (else None)."""
    dev = next(model.parameters()).device
    T = wins.size(1) - 1
    pos = model.scored_positions(T)
    outs = []
    for i in range(0, len(wins), batch_size):
        x = wins[i:i + batch_size, :T].to(dev)
        kw = dict(forward_kwargs, height=heights[i:i + batch_size, :T].to(dev)) if heights is not None else forward_kwargs
        outs.append(model(x, **kw).to("cpu", torch.float64))
    m = mixture.Mixture(*(torch.cat(parts) for parts in zip(*outs)))
    return m, wins[:, 1:][:, pos].double(), pos


def val_metrics(model, wins, batch_size=64, heights=None):
    """The engine's per-eval metrics: val_nll over the model's scored positions (and, when those
    are all positions, val_nll_last at position T-1 for comparison with POSTFIX)."""
    m, y, pos = predict(model, wins, batch_size, heights)
    nll = mixture.nll(m, y)                                   # (N, P)
    out = {"val_nll": float(nll.mean()), "val_positions": describe_positions(pos, wins.size(1) - 1),
           "val_scored": nll.numel()}
    if len(pos) > 1:
        out["val_nll_last"] = float(nll[:, -1].mean())
    return out


def describe_positions(pos, T):
    pos = [int(p) for p in pos]
    if pos == list(range(T)):
        return f"all (0..{T - 1})"
    if pos == [T - 1]:
        return f"last ({T - 1})"
    return f"{len(pos)} positions {pos[0]}..{pos[-1]}"


def ks_uniform(u):
    """Kolmogorov-Smirnov distance between the sample u and Uniform(0, 1)."""
    u = np.sort(np.asarray(u, dtype=np.float64))
    n = len(u)
    if n == 0:
        return math.nan
    i = np.arange(1, n + 1)
    return float(max((i / n - u).max(), (u - (i - 1) / n).max()))


# ---- full evaluation: model and baselines on the same positions -------------------------------------
def score(pred, y):
    """Per-target arrays (same shape as y): nll (nats), pit, crps (spacing units), below (P(S<=0)).
    pred: a mixture.Mixture (models, AR) or a baselines.IID (same distribution everywhere)."""
    if isinstance(pred, mixture.Mixture):
        y = torch.as_tensor(y, dtype=torch.float64)
        out = {"nll": mixture.nll(pred, y), "pit": mixture.cdf(pred, y), "crps": mixture.crps(pred, y),
               "below": mixture.mass_below_zero(pred)}
        return {k: v.numpy() for k, v in out.items()}
    y = np.asarray(y, dtype=np.float64)
    return {"nll": pred.nll(y), "pit": pred.cdf(y), "crps": pred.crps(y), "below": np.zeros_like(y)}


def summarise(per, thin=16):
    """Means of per-target scores (arrays of one selection, window-major order) -> the metrics dict."""
    pit = per["pit"].ravel()
    out = {"nll": float(per["nll"].mean()), "crps": float(per["crps"].mean()),
           "pit_mean": float(pit.mean()), "pit_std": float(pit.std()),
           "pit_ks": ks_uniform(pit[thin - 1::thin] if len(pit) >= 2 * thin else pit), "ks_thin": thin,
           "mass_below_zero": float(per["below"].mean()), "n_scored": int(pit.size)}
    for c in COVERAGE_LEVELS:
        out[f"coverage_{int(round(100 * c))}"] = float((np.abs(pit - 0.5) <= c / 2).mean())
    return out


def selections(pos, T, min_positions=(32, 64, 128)):
    """{name: boolean mask over the scored positions}: all, last (T-1), >=k for each k < T-1."""
    pos = np.asarray(pos)
    sel = {"all": np.ones(len(pos), dtype=bool)}
    if len(pos) > 1:
        for k in min_positions:
            if k < T - 1:
                sel[f">={k}"] = pos >= k
    sel["last"] = pos == T - 1
    return sel


def pit_histogram(pit, bins=20):
    """Density histogram of PIT values on [0, 1] (1.0 everywhere for a calibrated forecast)."""
    h, _ = np.histogram(np.ravel(pit), bins=bins, range=(0, 1), density=True)
    return [float(v) for v in h]


def evaluate(model, wins, train_stream, batch_size=64, min_positions=(32, 64, 128), thin=16, ar=None, heights=None,
             local=True, train_heights=None, split_heights=None):
    """Model and the baselines scored on the same (window, position) pairs of `wins` (N, T+1):
    wigner_iid, marginal_iid, ar, and (local=True) local_ar and oracle_local_ar, and with train_heights
    (log(gamma/2pi) of each train spacing) and split_heights (N, T+1) also height_ar (seqlab.mdn.baselines).
    heights: what a height-aware model is given (None for other models).

    Returns ({"positions", "selections": {sel: {"model": metrics, "wigner_iid": ..., ...}}, "ar_p",
    "ar_holdout_nll", "local_ar", "oracle_local_ar", "pit_hist", "nll_by_position", "example"},
    the forecaster objects).
    """
    from seqlab.mdn import baselines
    T = wins.size(1) - 1
    m, y, pos = predict(model, wins, batch_size, heights)
    if ar is None:
        ar, ar_scores = baselines.fit_ar(train_stream, T + 1)
    else:
        ar_scores = {}
    forecasters = {"model": model, "wigner_iid": baselines.wigner_iid(),
                   "marginal_iid": baselines.marginal_iid(train_stream), "ar": ar}
    preds = {"model": m, "wigner_iid": forecasters["wigner_iid"], "marginal_iid": forecasters["marginal_iid"],
             "ar": ar.predict(wins.numpy(), pos.numpy())}
    extra = {}
    if local:
        forecasters["local_ar"], extra["local_ar"] = baselines.fit_local_ar(train_stream, T + 1)
        preds["local_ar"] = forecasters["local_ar"].predict(wins.numpy(), pos.numpy())
        if len(wins) >= 4:
            preds["oracle_local_ar"], extra["oracle_local_ar"] = baselines.oracle_local_ar(wins.numpy(), pos.numpy())
        if train_heights is not None and split_heights is not None:
            try:
                har, extra["height_ar"] = baselines.fit_height_ar(train_stream, train_heights, T + 1)
                preds["height_ar"] = har.predict(wins.numpy(), pos.numpy(), np.asarray(split_heights))
            except ValueError:  # too little train data: no height_ar row
                pass
    per = {name: score(p, y.numpy()) for name, p in preds.items()}
    sel = selections(pos, T, min_positions)
    report = {"positions": describe_positions(pos, T), "n_windows": len(wins), "window": T + 1,
              "ar_p": ar.p, "ar_holdout_nll": {str(k): v for k, v in ar_scores.items()},
              "marginal_bin_width": forecasters["marginal_iid"].bin_width, **extra, "selections": {}}
    for sname, mask in sel.items():
        t = max(1, min(thin, int(mask.sum())))  # mask.sum() = positions kept per window
        report["selections"][sname] = {name: summarise({k: v[:, mask] for k, v in p.items()}, t) for name, p in per.items()}
    report["pit_hist"] = {name: pit_histogram(p["pit"]) for name, p in per.items()}
    report["nll_by_position"] = {name: [float(v) for v in p["nll"].mean(0)] for name, p in per.items()}
    report["scored_positions"] = [int(v) for v in pos]
    report["example"] = {"mixture": [t[0, -1].tolist() for t in m], "truth": float(y[0, -1]),
                         "ar": [float(preds["ar"].mu[0, -1, 0]), float(preds["ar"].sigma[0, -1, 0])]}
    return report, forecasters


# ---- rollouts ---------------------------------------------------------------------------------------
def model_stepper(model, height=None):
    """history (N, L) -> Mixture (N, K) of the next spacing, from the model's last scored position.
    height (n,): log(gamma/2pi) of each rolled-out window (height-aware models), repeated to N rows."""
    dev = next(model.parameters()).device
    ctx = model.config.context

    @torch.no_grad()
    def step(history):
        kw = {}
        if height is not None:
            kw["height"] = torch.as_tensor(height).repeat_interleave(len(history) // len(height)).to(dev)
        m = model(history[:, -ctx:].float().to(dev), **kw).to("cpu", torch.float64)
        return m.at((slice(None), -1))
    return step


def ar_stepper(ar):
    return lambda history: ar.next_mixture(history.numpy())


def iid_stepper(iid):
    """An i.i.d. baseline as a stepper: its mean and its draws ignore the history."""
    class Step:
        def mean(self, history):
            return torch.full((len(history),), iid.mean, dtype=torch.float64)

        def sample(self, history, gen):
            u = torch.rand(len(history), generator=gen, dtype=torch.float64).numpy()
            return torch.from_numpy(np.interp(u, iid.grid_cdf, iid.grid))
    return Step()


def rollout(stepper, wins, context_len, horizon, n_samples=4, seed=0):
    """Free-running forecasts from a fixed context: the first `context_len` spacings of each window.

    mean rollout: feed back the forecast mean; sampled rollout: feed back draws (restricted to
    s > 0), n_samples per window, from a generator seeded with `seed`. For each horizon h = 1..H:
      step_rmse[h-1] = RMSE of the h-th forecast spacing against the truth (spacing units);
      cum_rmse[h-1]  = RMSE of the sum of the first h forecast spacings against the true sum:
                       the error in the position of the h-th next zero, in mean spacings. It is
                       not flat for a mean rollout: it grows unless the forecast tracks the count.
    """
    truth = wins[:, context_len: context_len + horizon].double()
    if truth.size(1) < horizon:
        raise ValueError(f"windows of {wins.size(1)} hold fewer than context {context_len} + horizon {horizon}")
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for kind in ("mean", "sampled"):
        reps = 1 if kind == "mean" else n_samples
        hist = wins[:, :context_len].double().repeat_interleave(reps, 0)
        for _ in range(horizon):
            if hasattr(stepper, "mean"):
                nxt = stepper.mean(hist) if kind == "mean" else stepper.sample(hist, gen)
            else:
                m = stepper(hist)
                nxt = mixture.mean(m) if kind == "mean" else mixture.sample(m, gen, positive=True)
            hist = torch.cat([hist, nxt.double()[:, None]], 1)
        fc = hist[:, context_len:]
        tr = truth.repeat_interleave(reps, 0)
        out[kind] = {"step_rmse": ((fc - tr) ** 2).mean(0).sqrt().tolist(),
                     "cum_rmse": ((fc.cumsum(1) - tr.cumsum(1)) ** 2).mean(0).sqrt().tolist()}
    return out


def drift_slope(cum_rmse, h_min=2):
    """Log-log slope of cum_rmse against horizon h (h >= h_min): 0.5 for i.i.d. draws (a random
    walk), near 0 for forecasts as rigid as the zeros (number variance grows like log h)."""
    h = np.arange(1, len(cum_rmse) + 1)
    keep = h >= h_min
    return float(np.polyfit(np.log(h[keep]), np.log(np.asarray(cum_rmse)[keep]), 1)[0])


# ---- figure -----------------------------------------------------------------------------------------
NAMES = {"model": "model", "wigner_iid": "Wigner i.i.d.", "marginal_iid": "marginal i.i.d.", "ar": "AR",
         "local_ar": "local AR", "height_ar": "height AR", "oracle_local_ar": "oracle local AR (uses val)"}


def labels(report):
    """Display names, with the AR orders chosen for this report."""
    out = dict(NAMES, ar=f"AR({report['ar_p']})")
    if "local_ar" in report:
        out["local_ar"] = f"local AR({report['local_ar']['p']}), last {report['local_ar']['tail']:,} train"
    if "height_ar" in report:
        out["height_ar"] = f"height AR({report['height_ar']['p']}), last {report['height_ar']['tail']:,} train"
    return out


def plot_report(report, png_path, title=""):
    """Six panels: NLL per selection vs baselines, PIT histograms, NLL by position, an example
    predictive density, cumulative rollout error (sampled and mean) vs baselines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from seqlab.mdn import baselines

    names = [n for n in NAMES if n in report["nll_by_position"]]
    label = labels(report)
    fig, axes = plt.subplots(2, 3, figsize=(16, 8), dpi=80)
    ax = axes[0, 0]
    sels = list(report["selections"])
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        vals = [report["selections"][s][name]["nll"] for s in sels]
        ax.bar(np.arange(len(sels)) + i * width, vals, width, label=label[name])
    ax.set_xticks(np.arange(len(sels)) + 0.4 - width / 2, [f"{s}\n(n={report['selections'][s]['model']['n_scored']})" for s in sels])
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("NLL (nats per spacing)")
    ax.set_title("NLL on the same positions (lower is better)")
    ax.legend(fontsize=8)

    ax = axes[0, 1]
    centers = (np.arange(20) + 0.5) / 20
    for name in names:
        ax.step(centers, report["pit_hist"][name], where="mid", label=label[name])
    ax.axhline(1.0, color="k", ls="--", lw=0.8)
    ax.set_xlabel("PIT")
    ax.set_ylabel("density")
    ax.set_title("PIT histograms, all scored positions (flat = calibrated)")
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    ex = report["example"]
    s = np.linspace(0, 3.5, 400)
    mix = mixture.Mixture(*(torch.tensor(v, dtype=torch.float64).expand(len(s), -1) for v in ex["mixture"]))
    ax.plot(s, np.exp(-mixture.nll(mix, torch.from_numpy(s)).numpy()), label="model")
    mu, sd = ex["ar"]
    ax.plot(s, np.exp(-0.5 * ((s - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)), label=label["ar"])
    ax.plot(s, np.exp(baselines.wigner_iid()._logpdf(s)), label="Wigner surmise", ls="--")
    ax.axvline(ex["truth"], color="k", lw=1, label="truth")
    ax.set_xlabel("next spacing")
    ax.set_title("predictive density, window 0, last position")
    ax.legend(fontsize=8)

    ax = axes[0, 2]
    if len(report["scored_positions"]) > 1:
        for name in names:
            ax.plot(report["scored_positions"], report["nll_by_position"][name], lw=1, label=label[name])
        ax.set_xlabel("position t (context t+1 spacings)")
        ax.set_ylabel("mean NLL over windows")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "one scored position per window\n(POSTFIX)", ha="center", va="center")
    ax.set_title("NLL by position")
    for ax, kind in ((axes[1, 1], "sampled"), (axes[1, 2], "mean")):
        for name, r in report.get("rollouts", {}).get("curves", {}).items():
            if kind in r:
                ax.plot(np.arange(1, len(r[kind]["cum_rmse"]) + 1), r[kind]["cum_rmse"], label=label.get(name, name))
        ax.set_xlabel("horizon h (spacings after the fixed context)")
        ax.set_ylabel("RMSE of the position of the h-th zero")
        ax.set_title(f"{kind} rollouts: cumulative error")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.07, top=0.91, hspace=0.35, wspace=0.25)  # tight_layout costs seconds
    fig.savefig(png_path)
    plt.close(fig)
    return png_path


def plot_val_curve(metrics_path, report, png_path):
    """The run's val_nll against step, with the baselines' NLL on the same positions as the
    training-time val_nll (E0/PREFIX: all positions; POSTFIX: the last) as horizontal lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from seqlab.core.runfolder import read_metrics

    rows = [r for r in read_metrics(metrics_path) if r["event"] == "eval" and "val_nll" in r]
    if not rows:
        return None
    sel = "all" if len(report["scored_positions"]) > 1 else "last"
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    ax.plot([r["step"] for r in rows], [r["val_nll"] for r in rows], "o-", ms=3, label=f"model val_nll ({sel} positions)")
    label = labels(report)
    for name, style, colour in (("wigner_iid", ":", "k"), ("marginal_iid", "--", "k"), ("ar", "-.", "r"),
                                ("local_ar", "--", "g"), ("height_ar", "-", "c"), ("oracle_local_ar", ":", "m")):
        if name in report["selections"][sel]:
            ax.axhline(report["selections"][sel][name]["nll"], ls=style, c=colour, lw=1, label=label[name])
    ax.set_xlabel("step")
    ax.set_ylabel("NLL (nats per spacing)")
    ax.set_title(f"{Path(metrics_path).parent.name}: val curve against the baselines", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.9)
    fig.savefig(png_path)
    plt.close(fig)
    return png_path
