"""Char-level decoder-only transformer (family 1): token + learned position embeddings,
pre-LN causal blocks, a linear head over the 99-id ASCII vocabulary."""
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from seqlab.core.transformer import Block, init_weights


@dataclass
class CharConfig:
    vocab_size: int = 99
    context: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    d_ff: int = 1024
    dropout: float = 0.1
    bias: bool = True


class CharTransformer(nn.Module):
    family = "char"

    def __init__(self, config: CharConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.n_embd)
        self.pos_emb = nn.Embedding(c.context, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c.n_embd, c.n_head, c.d_ff, c.dropout, c.bias) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, bias=c.bias)
        self.head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        init_weights(self, c.n_layer)

    def forward(self, idx, targets=None):
        """idx (B, T) token ids -> logits (B, T, V); with targets, also the mean cross-entropy."""
        B, T = idx.shape
        if T > self.config.context:
            raise ValueError(f"sequence length {T} exceeds the model context {self.config.context}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))  # (B, T, V)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, generator=None):
        """Sample max_new_tokens ids after idx (B, T); top_k=None is pure multinomial sampling.

        A private `generator` keeps sampling from touching the global RNG (so resume stays exact).
        """
        for _ in range(max_new_tokens):
            logits = self(idx[:, -self.config.context:])[:, -1, :] / temperature
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits.float(), dim=-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(idx.device)
            idx = torch.cat([idx, nxt], dim=1)
        return idx
