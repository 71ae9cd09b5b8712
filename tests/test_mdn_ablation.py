"""Head ablation and pruning (seqlab/mdn/ablation.py): a head whose output weights are zero costs
exactly nothing; a used head costs something; pruning restores the model after each point."""
import numpy as np
import torch

from seqlab.mdn import ablation, attention
from seqlab.mdn.model import MDNConfig, SpacingMDN
from test_mdn_models import TINY


def _model_and_windows():
    torch.manual_seed(0)
    model = SpacingMDN(MDNConfig(**TINY)).eval()
    for p in model.parameters():      # a larger init so that every head matters
        p.data.mul_(5.0)
    wins = 0.5 + torch.rand(12, 33, generator=torch.Generator().manual_seed(1))
    return model, wins


def test_a_head_with_zero_output_weights_ablates_to_exactly_zero():
    model, wins = _model_and_windows()
    a = attention.attention_layers(model)[1]
    hs = a.proj.weight.shape[1] // a.n_head
    a.proj.weight.data[:, hs:2 * hs] = 0.0                 # layer 1, head 1 writes nothing
    rep = ablation.head_ablation(model, wins, n_boot=50)
    by = {(r["layer"], r["head"]): r for r in rep["heads"]}
    assert by[(1, 1)]["delta"] == 0.0 and by[(1, 1)]["lo"] == 0.0 and by[(1, 1)]["hi"] == 0.0
    assert any(abs(r["delta"]) > 1e-4 for k, r in by.items() if k != (1, 1))


def test_paired_interval_brackets_a_known_shift():
    d = np.random.default_rng(0).normal(0.1, 0.05, size=400)
    m, lo, hi = ablation.paired_interval(d)
    assert lo < 0.1 < hi and lo < m < hi and hi - lo < 0.02


def test_pruning_curve_starts_at_the_intact_model_and_restores_it():
    model, wins = _model_and_windows()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    base = float(ablation.window_nll(model, wins).mean())
    curve = ablation.magnitude_pruning(model, wins, fractions=(0.0, 0.5, 0.99), kinds=("mlp.fc", "all"))
    assert curve["mlp.fc"][0]["nll"] == base and curve["all"][0]["nll"] == base
    assert curve["all"][2]["nll"] != base
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert len(ablation.layer_weights(model, "all")) == 4 * TINY["n_layer"]
