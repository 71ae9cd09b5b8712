"""SpacingMDN models: causality (the original leak must be impossible), PREFIX blindness, POSTFIX
slot semantics, deterministic evaluation."""
import numpy as np
import pytest
import torch

from seqlab.mdn import evaluate as mdn_eval, mixture
from seqlab.zeta import spacings as spacing_data
from seqlab.mdn.task import StreamSampler
from seqlab.mdn.model import MDNConfig, SpacingMDN
from seqlab.mdn.memory import PostfixConfig, PostfixMDN, PrefixConfig, PrefixMDN, window_stats

TINY = dict(context=32, n_layer=2, n_head=2, n_embd=16, d_ff=32, n_components=3)


def make_dataset(path, n=40 * 33, seq_len=33, seed=0):
    """A positive AR(1) spacing stream (mean ~1) written as a spacing dataset folder."""
    rng = np.random.default_rng(seed)
    s = np.empty(n)
    s[0] = 1.0
    for i in range(1, n):
        s[i] = 1 + 0.5 * (s[i - 1] - 1) + 0.2 * rng.standard_normal()
    s = np.clip(s, 0.05, 3.0)
    train, val = spacing_data.to_windows(s, seq_len, 0.25)
    spacing_data.write(path, train, val, {"source": "test AR(1)"})
    return path


def models():
    torch.manual_seed(0)
    return [SpacingMDN(MDNConfig(**TINY)), PrefixMDN(PrefixConfig(**TINY, n_memory_slots=4)),
            PostfixMDN(PostfixConfig(**TINY, n_memory_slots=4, slot_id_mode="permute_per_batch")),
            SpacingMDN(MDNConfig(**TINY, input_features="spacing+count")),
            SpacingMDN(MDNConfig(**TINY, input_features="spacing+count", count_window=4))]


def prediction_at(model, x, t):
    """The model's forecast for s_{t+1} given x: position t of E0/PREFIX, or POSTFIX run on x[:, :t+1]."""
    if isinstance(model, PostfixMDN):
        return model(x[:, : t + 1]).mu[:, 0]
    return model(x).mu[:, t]


@pytest.mark.parametrize("model", models(), ids=["E0", "PREFIX", "POSTFIX", "E0+count", "E0+count4"])
def test_causality_perturbing_the_future_changes_nothing(model):
    model.eval()
    g = torch.Generator().manual_seed(1)
    x = 0.5 + torch.rand(3, 32, generator=g)
    for t in (0, 7, 20):
        x2 = x.clone()
        x2[:, t + 1:] = 0.5 + 3 * torch.rand(3, 31 - t, generator=g)
        with torch.no_grad():
            assert torch.equal(prediction_at(model, x, t), prediction_at(model, x2, t)), t
    # and the inputs up to t do matter (the test could fail)
    x3 = x.clone()
    x3[:, 5] += 1.0
    with torch.no_grad():
        assert not torch.allclose(prediction_at(model, x, 20), prediction_at(model, x3, 20))


def test_postfix_data_states_never_see_slots_or_the_future():
    model = models()[2].eval()
    T, M = 32, 4
    mask = model.attn_mask(T)
    assert not mask[:T, T:].any()                              # data never attends to slots
    assert torch.equal(mask[:T, :T], torch.ones(T, T, dtype=torch.bool).tril())
    assert mask[T:, :T].all()                                  # every slot reads every data token
    # the target is not an input: training batches are (s_0..s_{T-1}) -> s_T, and changing the
    # target in the stream leaves the forecast unchanged while changing the loss
    stream = 0.5 + torch.rand(500, generator=torch.Generator().manual_seed(2))
    sampler = StreamSampler(stream, T + 1, 4, seed=3)
    x, y = sampler.next_batch()
    start = int(torch.nonzero((stream.unfold(0, T, 1) == x[0]).all(1))[0])
    assert torch.equal(y[0, -1], stream[start + T])
    stream2 = stream.clone()
    stream2[start + T] += 1.0
    sampler2 = StreamSampler(stream2, T + 1, 4, seed=3)
    x2, y2 = sampler2.next_batch()
    with torch.no_grad():
        assert torch.equal(model(x).mu, model(x2).mu)
        assert model.loss(x, y)[0] != model.loss(x2, y2)[0]


def test_prefix_slots_are_blind_to_the_data():
    model = models()[1].eval()
    with torch.no_grad():
        _, s1 = model(0.5 + torch.rand(2, 32), return_slots=True)
        _, s2 = model(0.5 + 2 * torch.rand(2, 32), return_slots=True)
    assert torch.equal(s1, s2)


def test_aux_targets_come_from_the_inputs_only():
    x = 0.5 + torch.rand(5, 32)
    stats = window_stats(x)
    assert stats.shape == (5, 8) and torch.isfinite(stats).all()
    assert torch.allclose(stats[:, 0], x.mean(1) - 1)


def test_ablation_removes_a_slot_from_the_readout_exactly():
    """Dropping slot j == a model built without slot j (same weights): not a zeroed input kept in play."""
    torch.manual_seed(4)
    c = PostfixConfig(**TINY, n_memory_slots=4)
    full = PostfixMDN(c).eval()
    with torch.no_grad():
        full.memory["readout"].copy_(torch.tensor([0.3, -0.2, 0.5, 0.1]))
    small = PostfixMDN(PostfixConfig(**TINY, n_memory_slots=3)).eval()
    state = full.state_dict()
    keep = [0, 2, 3]
    for k in ("memory.content", "memory.slot_id", "memory.readout"):
        state[k] = state[k][keep]
    small.load_state_dict(state)
    x = 0.5 + torch.rand(3, 32)
    with torch.no_grad():
        a, b = full(x, drop_slots=(1,)), small(x)
        assert torch.allclose(a.mu, b.mu, atol=1e-6) and torch.allclose(a.sigma, b.sigma, atol=1e-6)
        assert not torch.allclose(full(x).mu, a.mu)


def test_postfix_evaluation_is_deterministic_and_training_permutes():
    model = models()[2]
    x = 0.5 + torch.rand(4, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x).mu, model(x).mu)
        fixed = model(x, id_perm=torch.arange(4)).mu
        assert torch.equal(model(x).mu, fixed)
    model.train()
    torch.manual_seed(5)
    with torch.no_grad():
        outs = [model(x).mu for _ in range(4)]
    assert any(not torch.equal(o, fixed) for o in outs)


def test_val_metrics_state_their_positions():
    e0, _, post, _, _ = models()
    wins = 0.5 + torch.rand(6, 33)
    a = mdn_eval.val_metrics(e0.eval(), wins)
    b = mdn_eval.val_metrics(post.eval(), wins)
    assert a["val_positions"] == "all (0..31)" and a["val_scored"] == 6 * 32
    assert b["val_positions"] == "last (31)" and b["val_scored"] == 6 and "val_nll_last" not in b
    m, y, _ = mdn_eval.predict(e0, wins)
    assert a["val_nll_last"] == pytest.approx(float(mixture.nll(m, y)[:, -1].mean()), rel=1e-9)


def test_windowed_count_is_the_sum_of_the_last_L_inputs():
    torch.manual_seed(0)
    model = SpacingMDN(MDNConfig(**TINY, input_features="spacing+count", count_window=4))
    x = 0.5 + torch.rand(2, 32)
    seen = {}
    model.trunk.inp.register_forward_hook(lambda mod, inp, out: seen.update(x=inp[0]))  # returns None: read-only
    model(x)
    d = x - 1
    assert torch.allclose(seen["x"][:, 10, 1], d[:, 7:11].sum(1), atol=1e-6)
    assert torch.allclose(seen["x"][:, 2, 1], d[:, :3].sum(1), atol=1e-6)
