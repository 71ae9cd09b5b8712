"""Context curves and needle-in-a-haystack (seqlab.hybrid.context), checked on planted truth."""
import math

import numpy as np
import pytest
import torch

from seqlab.hybrid import context
from seqlab.text import tokenizer


class Oracle(torch.nn.Module):
    """Predicts the true next token (shift=1) or repeats the current one (shift=0)."""
    def __init__(self, shift):
        super().__init__()
        self.p, self.shift, self.target = torch.nn.Parameter(torch.zeros(1)), shift, None

    def forward_stream(self, x):
        nxt = torch.cat([self.target[:, 1:x.shape[1] + 1]], 1) if self.shift else x
        return torch.nn.functional.one_hot(nxt, 99).float() * 20, None


def test_context_curve_on_planted_losses():
    rng = np.random.default_rng(0)
    losses = np.full((30, 4 * 16), 1.0) + rng.normal(0, 0.01, (30, 64))
    losses[:, :16] += 1.0                                              # chunk 0 is 1 nat/char worse
    r = context.context_curve(losses, context=16, bin_size=16)
    assert r["later_minus_first_chunk_bpc"] == pytest.approx(-1 / math.log(2), abs=0.01)
    assert r["ci95"][0] < r["later_minus_first_chunk_bpc"] < r["ci95"][1] < 0
    assert r["bin_start"] == [0, 16, 32, 48] and r["bpc"][0] == pytest.approx(2 / math.log(2), abs=0.01)


def test_carried_minus_fresh_is_zero_for_a_chunk_local_model_and_negative_with_memory():
    from seqlab.hybrid.model import HybridConfig, HybridLM
    torch.manual_seed(0)
    ids = torch.randint(2, 99, (6 * 64 + 1,))
    for layout, zero in (("AA", True), ("RM", False)):
        model = HybridLM(HybridConfig(context=16, n_layer=2, n_head=2, n_embd=32, layout=layout, gamma_init=0.5,
                                      pos_emb=layout == "AA")).eval()
        carried = context.loss_by_position(model, ids, 64)
        fresh = context.loss_by_position(model, ids, 64, carry=False)
        assert np.allclose(carried[:, :16], fresh[:, :16])               # chunk 0 is the same either way
        r = context.context_curve(carried, 16, bin_size=16, fresh=fresh)
        assert (abs(r["carried_minus_fresh_bpc"]) < 1e-6) == zero         # attention is chunk-local: exactly equal


def test_niah_document_places_the_needle_and_the_answer():
    hay = np.full(600, tokenizer.encode("x")[0], dtype=np.int64)
    for depth in (0.1, 0.5, 0.9):
        doc, a = context.niah_document("12345", hay, depth, 512)
        text = tokenizer.decode(doc)
        assert len(doc) == 512 + 5 and a == 512 and text[a:] == "12345" and text[:a].endswith(context.QUESTION)
        at = text.index("The pass key is 12345")
        room = 512 - len(context.NEEDLE.format(key="12345")) - len(context.QUESTION)
        assert at == round(depth * room)


@pytest.mark.parametrize("shift, expect", [(1, 1.0), (0, 0.0)])
def test_niah_scores_an_oracle_and_a_copier(shift, expect, monkeypatch):
    ids = torch.from_numpy(tokenizer.encode("abc def ghi. " * 200).astype(np.int64))
    model = Oracle(shift)
    orig = context.niah_document

    def remember(*a):                                                  # the oracle sees the document it scores
        doc, n = orig(*a)
        docs.append(doc)
        return doc, n
    docs = []
    monkeypatch.setattr(context, "niah_document", remember)
    real_fs = model.forward_stream

    def fs(x):
        model.target = torch.from_numpy(np.stack(docs[-len(x):]))
        return real_fs(x)
    model.forward_stream = fs
    r = context.niah(model, ids, contexts=(256, 512), depths=(0.2, 0.8), trials=3)
    assert np.array(r["accuracy"]).shape == (2, 2) and (np.array(r["accuracy"]) == expect).all()
