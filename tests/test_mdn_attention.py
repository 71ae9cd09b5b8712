"""Attention on request (seqlab.mdn.attention + the switches of core/transformer.py): outputs unchanged
when not asked, the recorded weights are the ones the model used, heads removed before the projection."""
import numpy as np
import pytest
import torch

from seqlab.core.transformer import CausalSelfAttention
from seqlab.mdn import attention
from seqlab.mdn.memory import PostfixConfig, PostfixMDN, PrefixConfig, PrefixMDN
from seqlab.mdn.model import MDNConfig, SpacingMDN

TINY = dict(context=32, n_layer=2, n_head=2, n_embd=16, d_ff=32, n_components=3)


def models():
    torch.manual_seed(0)
    return [SpacingMDN(MDNConfig(**TINY, input_features="spacing+count", count_window=4)),
            PrefixMDN(PrefixConfig(**TINY, n_memory_slots=4)),
            PostfixMDN(PostfixConfig(**TINY, n_memory_slots=4))]


@pytest.mark.parametrize("model", models(), ids=["E0", "PREFIX", "POSTFIX"])
def test_recording_leaves_outputs_unchanged_and_returns_every_layer(model):
    model.eval()
    x = 0.5 + torch.rand(3, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = model(x)
        with attention.recorded(model) as maps:
            rec = model(x)
        again = model(x)
    for a, b, c in zip(plain, rec, again):
        assert torch.equal(a, c)                           # switched off again: the fused path, bit-identical
        assert torch.allclose(a, b, atol=1e-5)             # the explicit path is the same maths
    assert len(maps) == 2
    scores, weights = maps[0]
    L = weights.size(-1)
    assert scores.shape == weights.shape == (3, 2, L, L)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 2, L), atol=1e-5)
    if isinstance(model, SpacingMDN):                      # causal: nothing above the diagonal
        assert float(weights.triu(1).abs().max()) == 0.0
    assert not any(a.keep_attention for a in attention.attention_layers(model))


def test_recorded_weights_are_the_ones_used():
    """Rebuild layer 0's attention output from its recorded weights and the value projection."""
    torch.manual_seed(0)
    blk = CausalSelfAttention(8, 2)
    x = torch.randn(2, 5, 8)
    blk.keep_attention = True
    y = blk(x)
    _, w = blk.attention
    v = blk.qkv(x)[..., 16:].view(2, 5, 2, 4).transpose(1, 2)
    manual = blk.proj((w @ v).transpose(1, 2).reshape(2, 5, 8))
    assert torch.allclose(y, manual, atol=1e-6)


def test_kernels_by_lag_finds_a_planted_lag():
    """A single-head layer whose scores are q.k = big when j = t - 3: the weight kernel peaks at lag 3."""
    from seqlab.mdn.attention import by_lag
    L, N = 20, 2
    scores = torch.full((N, 1, L, L), -5.0)
    t = torch.arange(3, L)
    scores[:, 0, t, t - 3] = 5.0
    w = torch.softmax(scores.masked_fill(~torch.ones(L, L, dtype=torch.bool).tril(), float("-inf")), -1)
    k = by_lag(w, L, 8)
    assert k.shape == (N, 1, 9)
    assert int(k[0, 0].argmax()) == 3 and float(k[0, 0, 3]) > 0.9


def test_heads_removed_zeroes_exactly_that_head():
    torch.manual_seed(0)
    model = SpacingMDN(MDNConfig(**TINY)).eval()
    x = 0.5 + torch.rand(2, 32)
    with torch.no_grad():
        base = model(x).mu
        with attention.heads_removed(model, [(1, 0)]):
            cut = model(x).mu
        # the same as zeroing head 0's columns of layer 1's output projection
        a = attention.attention_layers(model)[1]
        saved = a.proj.weight.data.clone()
        a.proj.weight.data[:, :8] = 0
        manual = model(x).mu
        a.proj.weight.data.copy_(saved)
    assert not torch.allclose(base, cut)
    assert torch.allclose(cut, manual, atol=1e-6)
    assert all(a.head_mask is None for a in attention.attention_layers(model))


def test_bootstrap_band_brackets_the_mean():
    x = np.random.default_rng(0).normal(size=(200, 5)) + np.arange(5)
    m, lo, hi = attention.bootstrap_band(x)
    assert np.all(lo < m) and np.all(m < hi)
    assert np.all(hi - lo < 0.5) and np.all(np.abs(m - np.arange(5)) < hi - lo)
