"""Controls for MDN forecasts: does the head collapse its sigmas onto the floor, and does the error
it makes match the spread it predicts? (eval_mdn.py reports this under "sigma_collapse".)"""
import numpy as np
import torch

from seqlab.mdn import evaluate as mdn_eval, mixture


def mixture_std(m):
    """Standard deviation of each mixture (law of total variance), spacing units."""
    w = m.w
    mean = (w * m.mu).sum(-1, keepdim=True)
    return ((w * (m.sigma ** 2 + (m.mu - mean) ** 2)).sum(-1)).sqrt()


def sigma_collapse(m, y, min_sigma, floor_factor=1.05, n_bins=10):
    """Sigma collapse of forecasts m (Mixture (..., K)) against truths y (...).

    floor_share: share of forecasts whose heaviest component has sigma <= floor_factor x min_sigma
      (the head's floor; a collapsed head puts its weight there);
    floor_weight: mean total weight on components at the floor;
    rms_error / rms_predicted_std: sqrt(mean (y - E[y])^2) and sqrt(mean Var[y]) (spacing units);
      their ratio is 1 for a forecast whose spread matches its error, < 1 over-dispersed, > 1 over-confident;
    by_bin: the same two in n_bins quantile bins of the predicted std (the error should track it)."""
    m = mixture.Mixture(*(t.double().reshape(-1, t.shape[-1]) for t in m))
    y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
    at_floor = m.sigma <= floor_factor * min_sigma
    heavy = m.log_w.argmax(-1, keepdim=True)
    sd = mixture_std(m).numpy()
    err = (y - mixture.mean(m)).numpy()
    edges = np.quantile(sd, np.linspace(0, 1, n_bins + 1))
    idx = np.clip(np.searchsorted(edges, sd, side="right") - 1, 0, n_bins - 1)
    bins = [{"predicted_std": float(np.sqrt(np.mean(sd[idx == b] ** 2))), "rms_error": float(np.sqrt(np.mean(err[idx == b] ** 2))),
             "n": int(np.sum(idx == b))} for b in range(n_bins) if np.any(idx == b)]
    rms_e, rms_s = float(np.sqrt(np.mean(err ** 2))), float(np.sqrt(np.mean(sd ** 2)))
    return {"floor_share": float(at_floor.gather(-1, heavy).double().mean()),
            "floor_weight": float((m.w * at_floor).sum(-1).mean()), "min_sigma": min_sigma,
            "rms_error": rms_e, "rms_predicted_std": rms_s, "error_over_std": rms_e / rms_s, "by_bin": bins}


def sigma_report(model, wins, batch_size=64, **predict_kwargs):
    """sigma_collapse of the model's forecasts at its scored positions of windows wins (N, T+1);
    predict_kwargs go to seqlab.mdn.evaluate.predict (e.g. heights for height-aware models)."""
    m, y, _ = mdn_eval.predict(model, wins, batch_size, **{k: v for k, v in predict_kwargs.items() if v is not None})
    return sigma_collapse(m, y, model.config.min_sigma)
