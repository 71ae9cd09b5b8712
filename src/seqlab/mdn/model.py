"""SpacingMDN (E0): a causal transformer with a Gaussian-mixture head that predicts the next
unfolded spacing of zeta zeros from the previous ones. No memory.

Glossary: B batch, T input spacings per window, C = n_embd, K mixture components.
Input s_0..s_{T-1}; the head at position t gives p(s_{t+1} | s_0..s_t) (teacher forcing on
every position). The spacing enters centred, Linear(1, C)(s - 1), plus a learned position.
input_features "spacing+count" adds a second input channel, c_t = sum_{i<=t} (s_i - 1): how far
the zeros counted since the window start run ahead of the smooth count (a function of the
history only, so causality is kept; attention can only approximate such a running sum).
count_window L > 0 makes it a sum over the last L spacings only (stationary in t).
"+height" adds log(gamma / 2 pi) of each input's zero, normalised as (L - height_center) /
height_scale (the caller passes L; seqlab.mdn.heights computes it): the prime lines of the data
sit at log p / log(gamma / 2 pi) cycles per spacing, so the best filter depends on it.
ar_order P > 0 adds a linear path: sum_{j<q} a[q-1, j] (s_{t-j} - 1), q = min(t+1, P), is added to
every component mean: a learned AR inside the model with its own coefficients for each of the first
P positions (as Levinson's AR(1)..AR(P)), so a short context is never padded with invented values;
zero at init unless set (task.init_ar_path); the transformer models what it misses.
ar_height_scale > 0 lets those coefficients move with the height: a + a_h z, z = (log(gamma/2pi) -
ar_height_center) / ar_height_scale of each position's zero (the prime lines, hence the best linear
filter, drift with log T; fitted across train heights, the slope extrapolates to val's heights).
References: Bishop 1994 (MDN); the shared pre-LN blocks of seqlab/core/transformer.py.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from seqlab.mdn import mixture
from seqlab.core.transformer import Block, init_weights

INPUT_FEATURES = ("spacing", "spacing+count", "spacing+height", "spacing+count+height")


@dataclass
class MDNConfig:
    context: int = 255          # max input spacings per window (a 256-long row = 255 inputs + 1 target)
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 256
    d_ff: int = 1024
    dropout: float = 0.0
    n_components: int = 8       # K, Gaussian components of the head
    min_sigma: float = 1e-3     # floor of each component's std (spacing units)
    entropy_reg: float = 0.005  # loss -= entropy_reg * H(mixture weights): keeps components in use
    bias: bool = True
    input_features: str = "spacing"  # spacing | spacing+count (see the module docstring)
    count_window: int = 0            # spacing+count: sum over the last L spacings (0: since the window start)
    height_center: float = 0.0       # +height: the input is (log(gamma/2pi) - height_center) / height_scale
    height_scale: float = 1.0
    ar_order: int = 0                # P > 0: a linear AR(P) path added to the mixture means (SpacingMDN only)
    ar_height_center: float = 0.0    # ar_height_scale > 0: AR coefficients a + a_h (L - center) / scale
    ar_height_scale: float = 0.0


class SpacingTrunk(nn.Module):
    """Spacing embedding + learned positions + the shared causal blocks + final LayerNorm."""

    def __init__(self, c):
        super().__init__()
        if c.input_features not in INPUT_FEATURES:
            raise ValueError(f"input_features must be one of {INPUT_FEATURES}, got {c.input_features!r}")
        self.count, self.count_window = "+count" in c.input_features, c.count_window
        self.height, self.height_center, self.height_scale = "+height" in c.input_features, c.height_center, c.height_scale
        self.inp = nn.Linear(1 + self.count + self.height, c.n_embd)
        self.pos = nn.Embedding(c.context, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c.n_embd, c.n_head, c.d_ff, c.dropout, c.bias) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.context = c.context

    def embed(self, x, height=None):
        """x (B, T) spacings, height (B, T) or (B,) log(gamma/2pi) (+height only) -> (B, T, C) token states."""
        T = x.size(1)
        if T > self.context:
            raise ValueError(f"{T} input spacings exceed the model context {self.context}")
        d = (x - 1.0).unsqueeze(-1)                                           # (B, T, 1)
        if self.count:
            c = d.cumsum(1)
            if self.count_window:  # c_t - c_{t-L}: the last L spacings only
                c = c - F.pad(c, (0, 0, self.count_window, 0))[:, :T]
            d = torch.cat([d, c], dim=-1)                                     # (B, T, 2)
        if self.height:
            if height is None:
                raise ValueError("this model takes heights (input_features +height): pass height=log(gamma/2pi)")
            h = (height.to(d.dtype) - self.height_center) / self.height_scale
            h = h[:, None].expand(-1, T) if h.dim() == 1 else h[:, :T]
            d = torch.cat([d, h.unsqueeze(-1)], dim=-1)                       # (B, T, 2 or 3)
        return self.inp(d) + self.pos(torch.arange(T, device=x.device))

    def run(self, h, attn_mask=None):
        """The blocks on token states h (B, L, C); attn_mask (L, L) bool, True = may attend."""
        h = self.drop(h)
        for block in self.blocks:
            h = block(h, attn_mask)
        return self.ln_f(h)


class MixtureHead(nn.Module):
    """Linear(C, 3K) -> Mixture; means are offset by 1 (the mean spacing) so init predicts ~1."""

    def __init__(self, c):
        super().__init__()
        self.proj = nn.Linear(c.n_embd, 3 * c.n_components)
        self.min_sigma = c.min_sigma

    def forward(self, h):
        return mixture.from_raw(self.proj(h).float(), self.min_sigma, mu_offset=1.0)


def mixture_loss(m, y, entropy_reg):
    """(loss, parts): mean NLL over all given targets minus entropy_reg * mean weight entropy."""
    nll = mixture.nll(m, y.float()).mean()
    ent = mixture.weight_entropy(m).mean()
    return nll - entropy_reg * ent, {"nll": nll.detach(), "weight_entropy": ent.detach()}


class SpacingMDN(nn.Module):
    """E0: next-spacing mixture density at every position, no memory."""
    family = "mdn"

    def __init__(self, config: MDNConfig):
        super().__init__()
        self.config = config
        self.trunk = SpacingTrunk(config)
        self.head = MixtureHead(config)
        init_weights(self, config.n_layer)
        if config.ar_order:  # after init_weights: the linear path starts at zero (the trunk alone)
            P = config.ar_order
            self.ar = nn.Parameter(torch.zeros(P, P))               # row q-1: AR(q) coefficients, lag 1 first
            self.register_buffer("ar_mask", torch.ones(P, P).tril().bool(), persistent=False)
            if config.ar_height_scale:
                self.ar_h = nn.Parameter(torch.zeros(P, P))         # d coefficients / d z

    @staticmethod
    def scored_positions(T):
        """Positions t whose prediction p(s_{t+1} | s_0..s_t) the model makes: all of them."""
        return torch.arange(T)

    def forward(self, x, height=None):
        """x (B, T) spacings (height: see SpacingTrunk.embed) -> Mixture (B, T, K); entry t predicts s_{t+1}."""
        m = self.head(self.trunk.run(self.trunk.embed(x, height)))
        if self.config.ar_order:
            P = self.config.ar_order
            T = x.size(1)
            lags = F.pad(x - 1.0, (P - 1, 0)).unfold(1, P, 1).flip(-1)      # (B, T, P): s_t, s_{t-1}, .., centred
            rows = torch.clamp(torch.arange(T, device=x.device), max=P - 1)  # position t uses AR(min(t+1, P))
            coef = (self.ar * self.ar_mask)[rows]                            # (T, P), zero beyond lag t+1
            if self.config.ar_height_scale:
                if height is None:
                    raise ValueError("this model's AR path moves with the height: pass height=log(gamma/2pi)")
                c = self.config
                z = (height.to(lags.dtype) - c.ar_height_center) / c.ar_height_scale
                z = z[:, None].expand(-1, T) if z.dim() == 1 else z[:, :T]  # (B, T)
                coef = coef + (self.ar_h * self.ar_mask)[rows] * z.unsqueeze(-1)   # (B, T, P)
            lin = (lags * coef.to(lags.dtype)).sum(-1)                       # (B, T)
            m = mixture.Mixture(m.log_w, m.mu + lin.unsqueeze(-1).to(m.mu.dtype), m.sigma)
        return m

    def loss(self, x, y, step=0, forward=None, height=None):
        """x (B, T) inputs, y (B, T) next spacings (y_t = s_{t+1}); teacher-forced NLL on every position.
        forward: the callable to run (a torch.compile'd or DDP wrapper of this model), default self."""
        # `forward or self` would call bool() on a compiled module, which raises on torch >= 2.9
        forward = self if forward is None else forward
        m = forward(x) if height is None else forward(x, height=height)
        return mixture_loss(m, y, self.config.entropy_reg)
