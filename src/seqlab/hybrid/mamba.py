"""Mamba (S6) block: in-projection, causal depthwise conv, selective SSM, SiLU gate.

Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", Sec. 3.
Glossary: B batch, T time, C = n_embd, D = expand * C inner channels, N = d_state,
R = dt_rank = ceil(C / 16).
    x, z      the two halves of in_proj (signal and gate), each (B, T, D)
    dt        Delta_t = softplus(dt_proj(x_proj(x)[:R])) > 0, initialised log-uniform in [0.001, 0.1]
    A         -exp(A_log), A_log = log(1..N) per channel (S4D-real init)
    B_t, C_t  input-dependent (B, T, N); D skip connection; the recurrence lives in seqlab.hybrid.scan
State of a block: (last CONV-1 conv inputs (B, D, CONV-1), h (B, D, N)); a reset at t zeroes
both before token t.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from seqlab.hybrid import kernels, scan

CONV = 4
DT_RANGE = (0.001, 0.1)


def causal_conv(x, prev, weight, bias, reset):
    """Depthwise causal conv of width CONV over [prev, x]: x (B, T, D), prev (B, D, CONV-1).

    A tap reaching back past a reset (a document start) reads zero.
    """
    B, T, D = x.shape
    xp = torch.cat([prev.transpose(1, 2), x], 1)                           # (B, CONV-1+T, D)
    if reset is None:
        y = F.conv1d(xp.transpose(1, 2), weight.unsqueeze(1), bias, groups=D).transpose(1, 2)
        return y, xp[:, -(CONV - 1):].transpose(1, 2)
    seen = torch.cat([reset.new_zeros(B, CONV - 1, dtype=torch.int32), reset.to(torch.int32)], 1).cumsum(1)
    y = bias.expand(B, T, D)
    for j in range(CONV):                                                   # tap j reads x_{t-j}
        lo = CONV - 1 - j
        keep = (seen[:, lo:lo + T] == seen[:, CONV - 1:]).unsqueeze(-1).to(x.dtype)
        y = y + weight[:, CONV - 1 - j] * xp[:, lo:lo + T] * keep
    # carried conv inputs: zero those before the last reset of the chunk
    tail = xp[:, -(CONV - 1):] * (seen[:, -(CONV - 1):] == seen[:, -1:]).unsqueeze(-1).to(x.dtype)
    return y, tail.transpose(1, 2)


class Mamba(nn.Module):
    def __init__(self, n_embd, d_state=16, expand=2, chunk=16, scan_mode="auto", kernels="torch"):
        super().__init__()
        C, D = n_embd, expand * n_embd
        self.D, self.N, self.R = D, d_state, math.ceil(C / 16)
        self.chunk, self.scan_mode, self.kernels = chunk, scan_mode, kernels
        self.in_proj = nn.Linear(C, 2 * D, bias=False)
        self.conv_weight = nn.Parameter(torch.empty(D, CONV).uniform_(-1 / CONV ** 0.5, 1 / CONV ** 0.5))
        self.conv_bias = nn.Parameter(torch.zeros(D))
        self.x_proj = nn.Linear(D, self.R + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.R, D)
        nn.init.uniform_(self.dt_proj.weight, -self.R ** -0.5, self.R ** -0.5)
        dt = torch.exp(torch.rand(D) * (math.log(DT_RANGE[1]) - math.log(DT_RANGE[0])) + math.log(DT_RANGE[0]))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))     # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(D, 1))
        self.D_skip = nn.Parameter(torch.ones(D))
        self.out_proj = nn.Linear(D, C, bias=False)

    def selection(self, x):
        """dt (B, T, D), B_t, C_t (B, T, N) from the conv output x."""
        dbc = self.x_proj(x)
        dt, Bm, Cm = dbc.split([self.R, self.N, self.N], -1)
        return F.softplus(self.dt_proj(dt)), Bm, Cm

    def forward(self, u, state, reset=None):
        """u (B, T, C); state (conv inputs (B, D, CONV-1), h (B, D, N)) -> (B, T, C), new state."""
        conv_prev, h = state
        x, z = self.in_proj(u).chunk(2, -1)
        x, conv_prev = causal_conv(x, conv_prev, self.conv_weight, self.conv_bias, reset)
        x = F.silu(x)
        dt, Bm, Cm = self.selection(x)
        self.last_dt = dt.detach()                                         # for the selectivity monitor
        with torch.autocast(u.device.type, enabled=False):   # the scans run in float32 (see seqlab.hybrid.scan)
            A = -torch.exp(self.A_log.float())
            xs, dt, Bm, Cm = x.float(), dt.float(), Bm.float(), Cm.float()
            if u.shape[1] == 1:
                y, h = scan.mamba_step(xs[:, 0], dt[:, 0], A, Bm[:, 0], Cm[:, 0], h, None if reset is None else reset[:, 0])
                y = y.unsqueeze(1)
            elif reset is None and kernels.resolve(self.kernels, u.device)["mamba"] == "mamba_ssm":
                y, h = kernels.mamba_selective_scan(xs, dt, A, Bm, Cm, h)
            elif self.scan_mode == "sequential":
                y, h = scan.mamba_sequential(xs, dt, A, Bm, Cm, h, reset)
            else:
                # blocks of 8 tokens measured fastest on CPU (results/bench/scan.json)
                y, h = scan.mamba_chunked(xs, dt, A, Bm, Cm, h, reset, min(self.chunk, 8))
        y = y.to(x.dtype)
        y = (y + self.D_skip * x) * F.silu(z)
        return self.out_proj(y), (conv_prev, h)


class MambaBlock(nn.Module):
    """Pre-LN Mamba layer: x + gamma * Mamba(ln x)."""
    kind = "M"
    PARTS = ("layer",)

    def __init__(self, n_embd, gamma_init=0.01, d_state=16, chunk=16, scan_mode="auto", kernels="torch"):
        super().__init__()
        self.off = set()       # ablation: {"layer"} drops the update, the state still advances
        self.ln = nn.LayerNorm(n_embd)
        self.mixer = Mamba(n_embd, d_state, chunk=chunk, scan_mode=scan_mode, kernels=kernels)
        self.gamma = nn.Parameter(torch.full((n_embd,), float(gamma_init)))

    def init_state(self, B, device, dtype=torch.float32):
        m = self.mixer
        return (torch.zeros(B, m.D, CONV - 1, device=device, dtype=dtype),
                torch.zeros(B, m.D, m.N, device=device, dtype=dtype))

    def delta(self, x, state, reset=None):
        y, state = self.mixer(self.ln(x), state, reset)
        d = self.gamma * y
        return (torch.zeros_like(d) if self.off else d), state

    def forward(self, x, state, reset=None):
        d, state = self.delta(x, state, reset)
        return x + d, state
