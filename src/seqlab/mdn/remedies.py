"""Remedies for free-running drift (exposure bias) of an E0 SpacingMDN, each behind its own trainer flag.

Teacher-forced, a model only ever sees real histories; run free, it sees its own draws, and a
model whose forecasts follow its inputs' running count (the +count feature, the attention's sum
of s - 1) can walk away from the rigid count of the zeros (docs/telescope.md). Four known cures:

  --input-noise S        Gaussian noise of std S on the input spacings (targets stay true): the model
                         learns to forecast from perturbed histories (Bengio et al. 2015's cheaper cousin).
  --self-feed P          scheduled sampling in two passes (Mihaylova & Martins 2019): a no-grad pass
                         draws s^_{t+1} from the model at every position; each input after the first is
                         replaced by that draw with probability P; the loss is the NLL of the true next
                         spacings given the mixed history, so the model learns to correct its own errors.
  --drift-aux-weight W   a rollout loss: from a window's first T - H spacings the model samples H spacings
                         (component picked without gradient, then mu + sigma * eps, so gradients flow
                         through means, spreads and every fed-back draw); the loss adds
                         W * mean (sum_h (s^_h - s_h))^2 / H, the squared count error of the rollout
                         against the true continuation: it rewards rollouts that keep the zeros' count.
  --select-by-rollout    best.pt is chosen by rollout_err (free-running chains from the selection
                         split's contexts against that split's mean, std and lag-1; see rollout_error).

Randomness comes from generators seeded by (seed, step), so a resumed run draws what it would have.
"""
from dataclasses import dataclass

import numpy as np
import torch

from seqlab.mdn import evaluate as mdn_eval, generate, mixture
from seqlab.zeta import sequence_stats as ss


@dataclass
class Remedies:
    input_noise: float = 0.0
    self_feed: float = 0.0
    drift_weight: float = 0.0
    drift_horizon: int = 16
    drift_batch: int = 8
    select_by_rollout: bool = False
    rollout_chains: int = 4
    rollout_steps: int = 512

    @property
    def any_loss(self):
        return bool(self.input_noise or self.self_feed or self.drift_weight)


def generator(seed, step, salt):
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 7 + salt)


def add_input_noise(x, std, gen):
    """x + N(0, std^2), kept positive (a spacing is > 0)."""
    noise = torch.randn(x.shape, generator=gen, dtype=torch.float32).to(x.device, x.dtype)
    return (x + std * noise).clamp_min(1e-3)


@torch.no_grad()
def self_feed(model, x, share, gen, **forward_kwargs):
    """x with each input s_t (t >= 1) replaced, with probability `share`, by a draw from the model's
    teacher-forced forecast of it (made at position t - 1)."""
    m = model(x, **forward_kwargs)
    draws = mixture.sample(m.at((slice(None), slice(0, -1))), gen, positive=True)     # (B, T-1): s^_1..s^_{T-1}
    pick = (torch.rand(draws.shape, generator=gen) < share).to(x.device)
    out = x.clone()
    out[:, 1:] = torch.where(pick, draws.to(x.dtype), x[:, 1:])
    return out


def reparam_sample(m, gen):
    """One draw per row of a (N, K) mixture: the component picked without gradient, then mu + sigma * eps
    (differentiable in mu and sigma), floored at a small positive spacing."""
    k = torch.multinomial(m.w.detach().float().cpu(), 1, generator=gen).to(m.mu.device)
    eps = torch.randn(k.shape, generator=gen).to(m.mu.device, m.mu.dtype)
    mu, sigma = m.mu.gather(-1, k), m.sigma.gather(-1, k)
    return (mu + sigma * eps)[:, 0].clamp_min(1e-3)


def drift_loss(model, x, y, horizon, n_windows, gen, **forward_kwargs):
    """Mean over the first n_windows windows of (sum_h (s^_h - s_h))^2 / H: rollouts of H sampled
    spacings from each window's first T - H inputs against the window's true next H spacings."""
    T = x.size(1)
    if horizon >= T:
        raise ValueError(f"--drift-horizon {horizon} must be below the context {T}")
    x = x[:n_windows]
    hist, truth = x[:, :T - horizon], y[:n_windows, T - horizon - 1:T - 1]       # truth_h = s_{T-H+h}
    err = torch.zeros(len(x), device=x.device, dtype=torch.float32)
    for h in range(horizon):
        kw = {k: (v[:n_windows, :hist.size(1)] if v.dim() == 2 else v[:n_windows]) for k, v in forward_kwargs.items()}
        nxt = reparam_sample(model(hist, **kw).at((slice(None), -1)), gen)
        err = err + (nxt.float() - truth[:, h].float())
        hist = torch.cat([hist, nxt.to(hist.dtype)[:, None]], 1)
    return (err ** 2).mean() / horizon


def rollout_error(model, wins, n_chains, n_steps, heights=None, seed=0):
    """Free-running quality on a held-out split: n_chains chains of n_steps spacings, each from the first
    context spacings of evenly spaced windows of `wins` (N, context + 1), against the split's own
    statistics. Returns {rollout_err, rollout_mean, rollout_std, rollout_lag1}; rollout_err is the sum of
    the relative errors of the chains' mean, std and lag-1 correlation (0 = the data's)."""
    ctx = model.config.context
    stream = wins.reshape(-1).double().numpy()
    idx = np.linspace(0, len(wins) - 1, n_chains).astype(int)
    contexts = wins[idx, :ctx].double()
    h = None if heights is None else heights[idx, ctx - 1]
    chains = generate.free_run(mdn_eval.model_stepper(model, h), contexts, n_steps, seed)
    got, ref = (ss.moments(rows, segments=())["all"] for rows in (chains, stream[None]))
    err = sum(abs(got[k] - ref[k]) / abs(ref[k]) for k in ("mean", "std", "lag1"))
    return {"rollout_err": err, **{f"rollout_{k}": got[k] for k in ("mean", "std", "lag1")},
            **{f"data_{k}": ref[k] for k in ("mean", "std", "lag1")}}
