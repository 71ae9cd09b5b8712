"""Pre-LN causal transformer blocks shared by every family that uses attention.

Glossary: B batch, T time, C = n_embd, nh = n_head, hs = C // nh.
References: Vaswani et al. 2017; GPT-2 pre-LN layout (Radford et al. 2019).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, dropout=0.0, bias=True):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd {n_embd} is not divisible by n_head {n_head}")
        self.n_head, self.dropout = n_head, dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_drop = nn.Dropout(dropout)

    # Analysis switches, off by default (then forward is the fused path, unchanged). Set by
    # seqlab.mdn.attention: keep_attention stores self.attention = (scores, weights), both
    # (B, nh, T, T): the raw q.k/sqrt(hs) before masking and the softmax after it; head_mask (nh,)
    # scales each head's output before the output projection (0 removes the head).
    keep_attention = False
    head_mask = None

    def forward(self, x, attn_mask=None):
        """attn_mask: None for plain causal attention, else a bool mask broadcastable to
        (B, nh, T, T), e.g. (T, T) or (B, 1, T, T); True = may attend."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if self.keep_attention:
            y = self._explicit_attention(q, k, v, attn_mask)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, is_causal=attn_mask is None,
                dropout_p=self.dropout if self.training else 0.0)
        if self.head_mask is not None:
            y = y * self.head_mask.to(y).view(1, -1, 1, 1)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y))

    def _explicit_attention(self, q, k, v, attn_mask):
        """softmax(q k^T / sqrt(hs) + mask) v written out, keeping the scores and weights."""
        T = q.size(-2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))                # (B, nh, T, T)
        if attn_mask is None:
            attn_mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
        w = torch.softmax(scores.masked_fill(~attn_mask, float("-inf")), dim=-1)
        self.attention = (scores.detach(), w.detach())
        return F.dropout(w, self.dropout, self.training) @ v


class MLP(nn.Module):
    def __init__(self, n_embd, d_ff, dropout=0.0, bias=True):
        super().__init__()
        self.fc = nn.Linear(n_embd, d_ff, bias=bias)
        self.proj = nn.Linear(d_ff, n_embd, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, d_ff, dropout=0.0, bias=True):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, d_ff, dropout, bias)

    def forward(self, x, attn_mask=None):
        x = x + self.attn(self.ln1(x), attn_mask)
        return x + self.mlp(self.ln2(x))


def init_weights(module, n_layer):
    """GPT-2 init: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer)."""
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            std = 0.02 / (2 * n_layer) ** 0.5 if name.endswith("proj.weight") else 0.02
            nn.init.normal_(p, 0.0, std)
        elif name.endswith("bias"):
            nn.init.zeros_(p)
