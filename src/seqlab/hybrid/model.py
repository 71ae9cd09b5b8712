"""Family 3: the RWKV/Mamba hybrid char LM. A layout string picks each layer's block.

    R  RWKV-6 layer (time-mix + channel-mix)              seqlab/hybrid/rwkv.py
    M  Mamba (S6) layer                                   seqlab/hybrid/mamba.py
    A  causal attention layer (the shared Block)          seqlab/core/transformer.py
    P  parallel blend x + alpha * dR + (1 - alpha) * dM (alpha fixed, or learnable)
Default: 12 layers x 256, "RMRMRMARMRMR" (attention at index 6).

The model runs a chunk of tokens with a carried state and returns the next state, so a long
stream can be fed chunk by chunk (state handoff); a chunk of one token is the step mode.
Attention layers are chunk-local: they see the tokens since the current chunk of `context`
tokens began (in step mode the cache empties every `context` tokens), the same in both modes.
`reset` (B, T) bool marks document starts: every state is cleared before such a token.
With kernels "auto" on CUDA, chunks without a reset run the recurrences through fused kernels
(seqlab.hybrid.kernels: fla, mamba_ssm, when importable); everything else runs seqlab.hybrid.scan.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from seqlab.hybrid import kernels
from seqlab.hybrid.mamba import MambaBlock
from seqlab.hybrid.rwkv import RWKVBlock
from seqlab.core.transformer import Block

LAYER_KINDS = "RMAP"
DEFAULT_LAYOUT = "RMRMRMARMRMR"


@dataclass
class HybridConfig:
    vocab_size: int = 99
    context: int = 256             # tokens per chunk (training) = attention window
    n_layer: int = 12
    n_head: int = 4
    n_embd: int = 256
    layout: str = DEFAULT_LAYOUT
    d_state: int = 16
    alpha: float = 0.6             # P layers: share of the RWKV update
    learnable_alpha: bool = False
    gamma_init: float = 0.01       # layer scale of every residual update
    state_norm_groups: int = 0     # StateNorm at each chunk boundary (0: off)
    tie_embeddings: bool = False
    chunk: int = 16                # scan chunk length (seqlab.hybrid.scan)
    scan: str = "auto"             # auto = chunked (the fast exact forms) | chunked | sequential (the reference)
    kernels: str = "torch"         # torch | auto = fla / mamba_ssm on CUDA when importable (seqlab.hybrid.kernels)
    pos_emb: bool = False          # learned chunk-relative positions (the attention-only baseline)


def check_layout(layout, n_layer):
    """The error text for a bad layout, or None."""
    bad = sorted(set(layout) - set(LAYER_KINDS))
    if bad:
        return f"layout {layout!r} has unknown layer kinds {''.join(bad)}; use R (RWKV), M (Mamba), A (attention), P (R+M blend)"
    if len(layout) != n_layer:
        return f"layout {layout!r} has {len(layout)} layers but --n-layer is {n_layer}"
    return None


class AttentionLayer(nn.Module):
    """The shared causal Block with a layer scale, over the chunk-so-far cache (its state)."""
    kind = "A"
    PARTS = ("layer",)

    def __init__(self, n_embd, n_head, gamma_init):
        super().__init__()
        self.block = Block(n_embd, n_head, 4 * n_embd)
        self.gamma = nn.Parameter(torch.full((n_embd,), float(gamma_init)))
        self.off = set()       # ablation: {"layer"} drops the update (seqlab.hybrid.ablation)

    def init_state(self, B, device, dtype=torch.float32):
        return (torch.zeros(B, 0, self.gamma.numel(), device=device, dtype=dtype),
                torch.zeros(B, 0, dtype=torch.int32, device=device))

    def delta(self, x, state, reset=None):
        cache, seg = state
        T = x.shape[1]
        new_seg = (reset.to(torch.int32).cumsum(1) if reset is not None else x.new_zeros(x.shape[:2], dtype=torch.int32))
        new_seg = new_seg + (seg[:, -1:] if seg.shape[1] else 0)
        full, fseg = torch.cat([cache, x], 1), torch.cat([seg, new_seg], 1)
        if reset is None and not seg.shape[1]:
            out = self.block(x)                                              # plain causal attention
        else:
            # rows of the cache are recomputed (cheap at these sizes) so the shared Block is used as is
            L = full.shape[1]
            mask = torch.ones(L, L, dtype=torch.bool, device=x.device).tril() & (fseg.unsqueeze(-1) == fseg.unsqueeze(-2))
            out = self.block(full, mask.unsqueeze(1))[:, -T:]                  # (B, 1, L, L) mask
        d = self.gamma * (out - x)
        return (torch.zeros_like(d) if self.off else d), (full, fseg)


class ParallelLayer(nn.Module):
    """x + alpha * dR(x) + (1 - alpha) * dM(x): an RWKV and a Mamba layer reading the same input."""
    kind = "P"
    PARTS = ("rwkv", "mamba", "layer")

    def __init__(self, c, layer_id=0):
        super().__init__()
        self.r = RWKVBlock(c.n_embd, c.n_head, c.gamma_init, c.chunk, c.scan, c.kernels, layer_id, c.n_layer)
        self.m = MambaBlock(c.n_embd, c.gamma_init, c.d_state, c.chunk, c.scan, c.kernels)
        logit = math.log(c.alpha / (1 - c.alpha))
        if c.learnable_alpha:
            self.alpha_logit = nn.Parameter(torch.tensor(logit))
        else:
            self.register_buffer("alpha_logit", torch.tensor(logit))
        self.off = set()       # ablation: any of PARTS (seqlab.hybrid.ablation)

    def init_state(self, B, device, dtype=torch.float32):
        return (self.r.init_state(B, device, dtype), self.m.init_state(B, device, dtype))

    def delta(self, x, state, reset=None):
        a = torch.sigmoid(self.alpha_logit)
        dr, sr = self.r.delta(x, state[0], reset)
        dm, sm = self.m.delta(x, state[1], reset)
        d = a * dr * float(not self.off & {"rwkv", "layer"}) + (1 - a) * dm * float(not self.off & {"mamba", "layer"})
        return d, (sr, sm)


def state_norm(t, groups, eps=1e-6):
    """Grouped RMS norm of a state tensor: each of `groups` slices of every row scaled to RMS 1."""
    B = t.shape[0]
    g = t.reshape(B, groups, -1)
    return (g * torch.rsqrt(g.square().mean(-1, keepdim=True) + eps)).reshape(t.shape)


class HybridLM(nn.Module):
    family = "hybrid"

    def __init__(self, config: HybridConfig):
        super().__init__()
        self.config = c = config
        err = check_layout(c.layout, c.n_layer)
        if err:
            raise ValueError(err)
        if c.kernels not in kernels.KINDS:
            raise ValueError(f"kernels {c.kernels!r}: use one of {', '.join(kernels.KINDS)}")
        self.tok_emb = nn.Embedding(c.vocab_size, c.n_embd)
        self.pos_emb = nn.Embedding(c.context, c.n_embd) if c.pos_emb else None
        layers = []
        for i, kind in enumerate(c.layout):
            if kind == "R":
                layers.append(RWKVBlock(c.n_embd, c.n_head, c.gamma_init, c.chunk, c.scan, c.kernels, i, c.n_layer))
            elif kind == "M":
                layers.append(MambaBlock(c.n_embd, c.gamma_init, c.d_state, c.chunk, c.scan, c.kernels))
            elif kind == "A":
                layers.append(AttentionLayer(c.n_embd, c.n_head, c.gamma_init))
            else:
                layers.append(ParallelLayer(c, i))
        self.layers = nn.ModuleList(layers)
        self.ln_f = nn.LayerNorm(c.n_embd)
        self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        nn.init.normal_(self.tok_emb.weight, 0.0, 0.02)
        if self.pos_emb is not None:
            nn.init.normal_(self.pos_emb.weight, 0.0, 0.02)
        nn.init.normal_(self.head.weight, 0.0, 0.02)
        if c.tie_embeddings:
            self.head.weight = self.tok_emb.weight

    # ---- state ---------------------------------------------------------------------------------
    def init_state(self, batch_size, device=None):
        """Fresh state: chunk position 0 and every layer's zero state."""
        device = device or self.tok_emb.weight.device
        return {"pos": 0, "layers": [l.init_state(batch_size, device) for l in self.layers]}

    def _end_of_chunk(self, state):
        """At a chunk boundary: attention caches empty, StateNorm (if on) applied to recurrent states."""
        layers = []
        for layer, s in zip(self.layers, state["layers"]):
            if layer.kind == "A":
                s = layer.init_state(s[0].shape[0], s[0].device, s[0].dtype)
            elif self.config.state_norm_groups:
                s = _map_recurrent(layer, s, lambda t: state_norm(t, self.config.state_norm_groups))
            layers.append(s)
        return {"pos": 0, "layers": layers}

    # ---- forward -------------------------------------------------------------------------------
    def forward(self, idx, state=None, reset=None, targets=None):
        """idx (B, T) -> logits (B, T, V), next state [, mean cross-entropy if targets].

        state None means fresh; pos + T may not cross a chunk boundary (feed chunk by chunk).
        """
        B, T = idx.shape
        c = self.config
        state = state if state is not None else self.init_state(B, idx.device)
        pos = state["pos"]
        if pos + T > c.context:
            raise ValueError(f"{T} tokens at chunk position {pos} cross the chunk of {c.context} tokens")
        if reset is not None and set(kernels.resolve(c.kernels, idx.device).values()) != {"torch"} and not reset.any():
            reset = None          # no document start: the fused kernels may run (one check here, none per layer)
        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(pos, pos + T, device=idx.device))
        new_layers = []
        for layer, s in zip(self.layers, state["layers"]):
            d, s = layer.delta(x, s, reset)
            x = x + d
            new_layers.append(s)
        logits = self.head(self.ln_f(x))
        new = {"pos": pos + T, "layers": new_layers}
        if new["pos"] == c.context:
            new = self._end_of_chunk(new)
        if targets is None:
            return logits, new
        return logits, new, F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))

    def forward_stream(self, idx, state=None, reset=None):
        """Any length: chunk by chunk (at the chunk boundaries) -> logits (B, T, V), final state."""
        B, T = idx.shape
        state = state if state is not None else self.init_state(B, idx.device)
        out, t = [], 0
        while t < T:
            n = min(T - t, self.config.context - state["pos"])
            logits, state = self(idx[:, t:t + n], state, None if reset is None else reset[:, t:t + n])
            out.append(logits)
            t += n
        return torch.cat(out, 1), state

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None, state=None, return_state=False):
        """Read idx (B, T) as a stream (after `state`, None: fresh), then sample max_new_tokens ids one
        step at a time. Returns the ids (B, T + max_new_tokens), and the final state if asked."""
        logits, state = self.forward_stream(idx, state)
        out = [idx]
        for _ in range(max_new_tokens):
            lg = logits[:, -1].float() / temperature
            if top_k is not None:
                kth = torch.topk(lg, min(top_k, lg.size(-1))).values[:, [-1]]
                lg = lg.masked_fill(lg < kth, float("-inf"))
            nxt = torch.multinomial(F.softmax(lg, -1).cpu(), 1, generator=generator).to(idx.device)
            out.append(nxt)
            logits, state = self(nxt, state)
        return (torch.cat(out, 1), state) if return_state else torch.cat(out, 1)

    def flat_states(self, state):
        """Per layer, its recurrent state as one (B, n) tensor (None for attention layers)."""
        out = []
        for layer, s in zip(self.layers, state["layers"]):
            if layer.kind in "RM":
                out.append(s[1].flatten(1))
            elif layer.kind == "P":
                out.append(torch.cat([s[0][1].flatten(1), s[1][1].flatten(1)], 1))
            else:
                out.append(None)
        return out

    # ---- parameter groups ------------------------------------------------------------------------
    def recurrent_names(self):
        """Decay / dt / A parameters (the --recurrent-lr-mult group; no weight decay)."""
        keys = (".decay", ".decay_w1", ".decay_w2", ".dt_proj.", ".A_log", ".bonus")
        return [n for n, _ in self.named_parameters() if any(k in n for k in keys)]

    def no_decay_names(self):
        """No weight decay: decays, dt, A, layer scales, token-shift mixes (and their low rank), skip, alpha."""
        keys = (".decay", ".dt_proj.", ".A_log", ".bonus", ".gamma", ".mu", ".mix_w", ".D_skip", "alpha_logit",
                ".conv_bias")
        return [n for n, _ in self.named_parameters() if any(k in n for k in keys)]


def _map_recurrent(layer, s, fn):
    """Apply fn to the matrix/SSM states of an R, M or P layer's state tuple."""
    if layer.kind == "R":
        return (s[0], fn(s[1]), s[2])
    if layer.kind == "M":
        return (s[0], fn(s[1]))
    return (_map_recurrent(layer.r, s[0], fn), _map_recurrent(layer.m, s[1], fn))


def detach_state(state):
    """The same state cut from the graph (state handoff carries values, not gradients)."""
    def d(x):
        if isinstance(x, torch.Tensor):
            return x.detach()
        if isinstance(x, (list, tuple)):
            return type(x)(d(v) for v in x)
        return x
    return {"pos": state["pos"], "layers": d(state["layers"])}
