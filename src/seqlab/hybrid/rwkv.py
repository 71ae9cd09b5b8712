"""RWKV-6 ("Finch") blocks: time-mix with data-dependent decay, and channel-mix.

Peng et al. 2024, "Eagle and Finch: RWKV with Matrix-Valued States and Dynamic Recurrence".
Glossary: B batch, T time, C = n_embd, H heads, K = C // H head size.
    mu_*      token-shift mix: each projection reads x_t + mu * (x_{t-1} - x_t)
    w_t       per-channel retention exp(-exp(d_t)), d_t = decay + tanh(x_w W1) W2 (low rank)
    u         bonus of the current token
    S         matrix state per head (K x K); the recurrence itself lives in seqlab.hybrid.scan
State of a block: (x_{t-1} of time-mix, S, x_{t-1} of channel-mix); a reset at t (a new
document) zeroes x_{t-1} and S before token t.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from seqlab.hybrid import kernels, scan

# Initial retention per token of the decay channels, spread log-uniformly in -log w from
# short memory (half-life 1 token) to long memory (half-life ~700 tokens); see init_decay().
RETENTION_INIT = (0.5, 0.999)


def token_shift(x, prev, reset):
    """x_{t-1} for every t: the previous token, `prev` (B, C) before the first, zero after a reset."""
    shifted = torch.cat([prev.unsqueeze(1), x[:, :-1]], 1)
    if reset is not None:
        shifted = shifted * (~reset).unsqueeze(-1).to(x.dtype)
    return shifted


def init_decay(n):
    """Per-channel decay parameter d with exp(-exp(d)) spread over RETENTION_INIT (geometric in -log w)."""
    lo, hi = (-math.log(w) for w in RETENTION_INIT)          # -log w: 0.693 (short) .. 0.001 (long)
    return torch.linspace(math.log(lo), math.log(hi), n)


class TimeMix(nn.Module):
    def __init__(self, n_embd, n_head, decay_rank=32, chunk=16, scan_mode="auto", kernels="torch"):
        super().__init__()
        C, H = n_embd, n_head
        if C % H:
            raise ValueError(f"n_embd {C} is not divisible by n_head {H}")
        self.H, self.K, self.chunk, self.scan_mode, self.kernels = H, C // H, chunk, scan_mode, kernels
        self.mu = nn.Parameter(torch.full((5, C), 0.5))      # r, k, v, w, g
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.gate = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        # decay: d_t = decay + tanh(x_w W1) W2; channels interleaved so every head gets short and long memory
        d = init_decay(C).view(self.K, H).t().reshape(C)
        self.decay = nn.Parameter(d)
        self.decay_w1 = nn.Parameter(torch.empty(C, decay_rank).uniform_(-0.01, 0.01))
        self.decay_w2 = nn.Parameter(torch.empty(decay_rank, C).uniform_(-0.01, 0.01))
        self.bonus = nn.Parameter(torch.full((H, self.K), 0.5))
        self.ln_x = nn.GroupNorm(H, C, eps=64e-5)             # per-head norm of the readout

    def log_retention(self, xw):
        """log w_t = -exp(d_t) per channel (B, T, C); retention w near 1 = long memory."""
        return -torch.exp(self.decay + torch.tanh(xw @ self.decay_w1) @ self.decay_w2)

    def forward(self, x, state, reset=None):
        """x (B, T, C); state (x_prev (B, C), S (B, H, K, K)) -> (B, T, C), new state."""
        B, T, C = x.shape
        prev, S = state
        xx = token_shift(x, prev, reset) - x
        xr, xk, xv, xw, xg = (x + xx * m for m in self.mu)
        r, k, v = (lin(z).view(B, T, self.H, self.K) for lin, z in
                   ((self.receptance, xr), (self.key, xk), (self.value, xv)))
        logw = self.log_retention(xw).view(B, T, self.H, self.K)
        self.last_logw = logw.detach()                                   # for the decay monitor
        with torch.autocast(x.device.type, enabled=False):   # the scans run in float32 (see seqlab.hybrid.scan)
            r, k, v, logw = r.float(), k.float(), v.float(), logw.float()
            if T == 1:
                y, S = scan.rwkv_step(r[:, 0], k[:, 0], v[:, 0], logw[:, 0], self.bonus.float(), S,
                                      None if reset is None else reset[:, 0])
                y = y.unsqueeze(1)
            elif reset is None and kernels.resolve(self.kernels, x.device)["rwkv"] == "fla":
                y, S = kernels.rwkv_fla(r, k, v, logw, self.bonus.float(), S)
            elif self.scan_mode == "sequential":
                y, S = scan.rwkv_sequential(r, k, v, logw, self.bonus.float(), S, reset)
            else:
                y, S = scan.rwkv_chunked(r, k, v, logw, self.bonus.float(), S, reset, self.chunk)
        y = y.to(x.dtype)
        y = self.ln_x(y.reshape(B * T, C)).view(B, T, C)
        return self.output(y * F.silu(self.gate(xg))), (x[:, -1], S)


class ChannelMix(nn.Module):
    def __init__(self, n_embd, hidden):
        super().__init__()
        self.mu = nn.Parameter(torch.full((2, n_embd), 0.5))  # k, r
        self.key = nn.Linear(n_embd, hidden, bias=False)
        self.value = nn.Linear(hidden, n_embd, bias=False)
        self.receptance = nn.Linear(n_embd, n_embd, bias=False)

    def forward(self, x, prev, reset=None):
        xx = token_shift(x, prev, reset) - x
        xk, xr = x + xx * self.mu[0], x + xx * self.mu[1]
        k = torch.relu(self.key(xk)).square()                 # squared ReLU
        return torch.sigmoid(self.receptance(xr)) * self.value(k), x[:, -1]


class RWKVBlock(nn.Module):
    """Pre-LN RWKV layer: x + g1 * TimeMix(ln1 x), then + g2 * ChannelMix(ln2 x) (g = layer scale)."""
    kind = "R"

    def __init__(self, n_embd, n_head, gamma_init=0.01, chunk=16, scan_mode="auto", kernels="torch"):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.att = TimeMix(n_embd, n_head, chunk=chunk, scan_mode=scan_mode, kernels=kernels)
        self.ffn = ChannelMix(n_embd, int(3.5 * n_embd))
        self.gamma = nn.Parameter(torch.full((2, n_embd), float(gamma_init)))

    def init_state(self, B, device, dtype=torch.float32):
        C, H, K = self.ln1.normalized_shape[0], self.att.H, self.att.K
        return (torch.zeros(B, C, device=device, dtype=dtype), torch.zeros(B, H, K, K, device=device, dtype=dtype),
                torch.zeros(B, C, device=device, dtype=dtype))

    def delta(self, x, state, reset=None):
        """The block's residual update and new state (so a parallel R+M layer can blend updates)."""
        a, (p1, S) = self.att(self.ln1(x), state[:2], reset)
        h = x + self.gamma[0] * a
        f, p2 = self.ffn(self.ln2(h), state[2], reset)
        return h - x + self.gamma[1] * f, (p1, S, p2)

    def forward(self, x, state, reset=None):
        d, state = self.delta(x, state, reset)
        return x + d, state
