"""SpacingMDN (E0): a causal transformer with a Gaussian-mixture head that predicts the next
unfolded spacing of zeta zeros from the previous ones. No memory.

Glossary: B batch, T input spacings per window, C = n_embd, K mixture components.
Input s_0..s_{T-1}; the head at position t gives p(s_{t+1} | s_0..s_t) (teacher forcing on
every position). The spacing enters centred, Linear(1, C)(s - 1), plus a learned position.
input_features "spacing+count" adds a second input channel, c_t = sum_{i<=t} (s_i - 1): how far
the zeros counted since the window start run ahead of the smooth count (a function of the
history only, so causality is kept; attention can only approximate such a running sum).
count_window L > 0 makes it a sum over the last L spacings only (stationary in t).
References: Bishop 1994 (MDN); the shared pre-LN blocks of seqlab/core/transformer.py.
"""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from seqlab.mdn import mixture
from seqlab.core.transformer import Block, init_weights

INPUT_FEATURES = ("spacing", "spacing+count")


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


class SpacingTrunk(nn.Module):
    """Spacing embedding + learned positions + the shared causal blocks + final LayerNorm."""

    def __init__(self, c):
        super().__init__()
        if c.input_features not in INPUT_FEATURES:
            raise ValueError(f"input_features must be one of {INPUT_FEATURES}, got {c.input_features!r}")
        self.count, self.count_window = c.input_features == "spacing+count", c.count_window
        self.inp = nn.Linear(2 if self.count else 1, c.n_embd)
        self.pos = nn.Embedding(c.context, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c.n_embd, c.n_head, c.d_ff, c.dropout, c.bias) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.context = c.context

    def embed(self, x):
        """x (B, T) spacings -> (B, T, C) token states."""
        T = x.size(1)
        if T > self.context:
            raise ValueError(f"{T} input spacings exceed the model context {self.context}")
        d = (x - 1.0).unsqueeze(-1)                                           # (B, T, 1)
        if self.count:
            c = d.cumsum(1)
            if self.count_window:  # c_t - c_{t-L}: the last L spacings only
                c = c - F.pad(c, (0, 0, self.count_window, 0))[:, :T]
            d = torch.cat([d, c], dim=-1)                                     # (B, T, 2)
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

    @staticmethod
    def scored_positions(T):
        """Positions t whose prediction p(s_{t+1} | s_0..s_t) the model makes: all of them."""
        return torch.arange(T)

    def forward(self, x):
        """x (B, T) spacings -> Mixture (B, T, K); entry t predicts s_{t+1}."""
        return self.head(self.trunk.run(self.trunk.embed(x)))

    def loss(self, x, y, step=0, forward=None):
        """x (B, T) inputs, y (B, T) next spacings (y_t = s_{t+1}); teacher-forced NLL on every position.
        forward: the callable to run (a torch.compile'd or DDP wrapper of this model), default self."""
        # `forward or self` would call bool() on a compiled module, which raises on torch >= 2.9
        forward = self if forward is None else forward
        return mixture_loss(forward(x), y, self.config.entropy_reg)
