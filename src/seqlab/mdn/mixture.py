"""Gaussian-mixture predictive distributions: the maths of the SpacingMDN head, written once.

A mixture over the real line, p(s) = sum_k w_k N(s; mu_k, sigma_k^2), held as log-weights
log_w, means mu and standard deviations sigma, each a tensor (..., K). Every function
broadcasts over the leading dimensions; the target y has shape (...).

Positivity: spacings are > 0 but a Gaussian mixture puts some mass on s <= 0. We do not hide
it: NLL, CDF/PIT and CRPS are those of the density on the whole line (so that mass counts
against the model), `mass_below_zero` reports it, and `sample(..., positive=True)` draws
from the mixture restricted to s > 0 (what a rollout must feed back).

References: Bishop 1994 (mixture density networks); Grimit, Gneiting, Berrocal & Johnson
2006, eq. (5)-(6) (closed-form CRPS of a Gaussian mixture).
"""
import math
from typing import NamedTuple

import torch

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class Mixture(NamedTuple):
    log_w: torch.Tensor   # (..., K) log mixture weights, logsumexp over K is 0
    mu: torch.Tensor      # (..., K) component means (spacing units)
    sigma: torch.Tensor   # (..., K) component standard deviations (> 0)

    def to(self, *args, **kwargs):
        return Mixture(*(t.to(*args, **kwargs) for t in self))

    def at(self, idx):
        """Index the leading dims, keep K: m.at((slice(None), -1)) is the last position."""
        return Mixture(self.log_w[idx], self.mu[idx], self.sigma[idx])

    def flat(self):
        """The same mixtures as one batch dimension: (N, K)."""
        K = self.mu.shape[-1]
        return Mixture(*(t.reshape(-1, K) for t in self))

    @property
    def w(self):
        return self.log_w.exp()


def from_raw(raw, min_sigma=1e-3, mu_offset=0.0):
    """Split a head output (..., 3K) into a Mixture: softmax weights, means, softplus scales.

    min_sigma keeps every component a proper density (no collapse onto one training value).
    """
    logits, mu, s = raw.chunk(3, dim=-1)
    return Mixture(torch.log_softmax(logits, dim=-1), mu + mu_offset,
                   torch.nn.functional.softplus(s) + min_sigma)


def gaussian(mu, sigma):
    """A one-component Mixture N(mu, sigma^2); mu and sigma of shape (...)."""
    mu = torch.as_tensor(mu)
    sigma = torch.as_tensor(sigma, dtype=mu.dtype).expand_as(mu)
    return Mixture(torch.zeros_like(mu)[..., None], mu[..., None], sigma[..., None])


def _z(m, y):
    return (y[..., None] - m.mu) / m.sigma


def log_prob(m, y):
    """log p(y) in nats, shape (...)."""
    z = _z(m, y)
    comp = -0.5 * z * z - torch.log(m.sigma) - LOG_SQRT_2PI
    return torch.logsumexp(m.log_w + comp, dim=-1)


def nll(m, y):
    """Negative log-likelihood -log p(y) in nats per spacing, shape (...)."""
    return -log_prob(m, y)


def cdf(m, y):
    """P(S <= y) under the mixture on the whole line, shape (...). Also the PIT value of y."""
    return (m.w * torch.special.ndtr(_z(m, y))).sum(-1)


def mass_below_zero(m):
    """P(S <= 0): probability the mixture puts on impossible (non-positive) spacings."""
    return cdf(m, torch.zeros(m.mu.shape[:-1], dtype=m.mu.dtype, device=m.mu.device))


def mean(m):
    """E[S] = sum_k w_k mu_k, shape (...)."""
    return (m.w * m.mu).sum(-1)


def weight_entropy(m):
    """Entropy of the mixture weights, -sum_k w_k log w_k, in nats (0: one component used)."""
    return -(m.w * m.log_w).sum(-1)


def _abs_moment(mean_, var):
    """E|X| for X ~ N(mean_, var): 2 s phi(mean_/s) + mean_ (2 Phi(mean_/s) - 1)."""
    s = var.sqrt()
    r = mean_ / s
    phi = torch.exp(-0.5 * r * r) / math.sqrt(2 * math.pi)
    return 2 * s * phi + mean_ * (2 * torch.special.ndtr(r) - 1)


def crps(m, y):
    """Continuous ranked probability score, integral of (F(x) - 1{x >= y})^2 dx, in spacing units.

    Closed form for a Gaussian mixture (Grimit et al. 2006):
        CRPS = sum_k w_k E|N(y - mu_k, s_k^2)| - 1/2 sum_{k,l} w_k w_l E|N(mu_k - mu_l, s_k^2 + s_l^2)|.
    Lower is better; for a point forecast it reduces to the absolute error.
    """
    w = m.w
    first = (w * _abs_moment(y[..., None] - m.mu, m.sigma ** 2)).sum(-1)
    dmu = m.mu[..., :, None] - m.mu[..., None, :]                      # (..., K, K)
    var = m.sigma[..., :, None] ** 2 + m.sigma[..., None, :] ** 2
    second = (w[..., :, None] * w[..., None, :] * _abs_moment(dmu, var)).sum((-1, -2))
    return first - 0.5 * second


def sample(m, generator=None, positive=True):
    """One draw per leading index, shape (...).

    positive=True draws from the mixture restricted to s > 0: the component is picked with
    weight w_k P_k(S > 0), then the value by inverse-CDF sampling of the truncated normal.
    """
    log_w, mu, sigma = (t.double() for t in m)
    lo = torch.special.ndtr(-mu / sigma) if positive else torch.zeros_like(mu)   # P_k(S <= 0)
    pick_w = log_w.exp() * (1 - lo)
    flat = pick_w.reshape(-1, pick_w.shape[-1]).clamp_min(1e-300)
    k = torch.multinomial(flat.cpu(), 1, generator=generator).to(mu.device).view(*mu.shape[:-1], 1)
    mu_k, sig_k, lo_k = (t.gather(-1, k)[..., 0] for t in (mu, sigma, lo))
    u = torch.rand(mu_k.shape, generator=generator, dtype=torch.float64).to(mu.device)
    p = (lo_k + u * (1 - lo_k)).clamp(1e-15, 1 - 1e-15)
    x = mu_k + sig_k * torch.special.ndtri(p)
    if positive:  # guard the far tail where ndtri rounds to exactly 0
        x = x.clamp_min(torch.finfo(torch.float64).tiny)
    return x.to(m.mu.dtype)
