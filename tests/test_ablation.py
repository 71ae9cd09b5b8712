"""Component ablation (seqlab.hybrid.ablation): switches, the bootstrap interval, planted truth."""
import numpy as np
import torch

from seqlab.hybrid import ablation
from seqlab.hybrid.model import HybridConfig, HybridLM


def tiny(layout="RMAP"):
    torch.manual_seed(0)
    cfg = HybridConfig(context=16, n_layer=len(layout), n_head=2, n_embd=32, layout=layout, gamma_init=0.5, chunk=8)
    return HybridLM(cfg).eval()


def test_a_branch_whose_output_projection_is_zero_ablates_to_nothing():
    model = tiny()
    with torch.no_grad():
        model.layers[1].mixer.out_proj.weight.zero_()          # Mamba layer 1 writes nothing
        model.layers[0].att.output.weight.zero_()              # RWKV time-mix of layer 0 writes nothing
    ids = torch.randint(2, 99, (4 * (3 * 16 + 1),))                # 4 tracks of 3 chunks + 1
    res = ablation.ablate(model, ids, n_tracks=4, context=16, n_boot=200)
    rows = {r["name"]: r for r in res["rows"]}
    for name in ("1:M Mamba layer", "0:R RWKV time-mix"):
        assert rows[name]["delta_bpc"] == 0 and rows[name]["ci95"] == [0, 0], rows[name]
    for name in ("0:R RWKV layer", "2:A attention layer", "3:P R+M blend rwkv", "3:P R+M blend layer"):
        assert rows[name]["delta_bpc"] != 0 and rows[name]["ci95"][0] < rows[name]["ci95"][1]
    assert res["chars"] == 4 * 16 * 3 and res["blocks"] == 12
    assert all(not layer.off for layer in model.layers)         # every switch restored


def test_kind_wide_rows_and_switch_restore_on_error():
    model = tiny("RMRM")
    names = [n for n, _ in ablation.components(model)]
    assert "all R (RWKV) layers" in names and "all M (Mamba) layers" in names
    try:
        with ablation.switched_off(model, [(0, "layer"), (1, "layer")]):
            raise RuntimeError
    except RuntimeError:
        pass
    assert all(not layer.off for layer in model.layers)


def test_bootstrap_interval_on_planted_truth():
    w = np.ones(400)
    assert ablation.bootstrap_mean(np.full(400, 0.25), w, 200) == (0.25, 0.25, 0.25)
    rng = np.random.default_rng(0)
    covered = 0
    for seed in range(40):                                     # true mean 1.0: the 95% interval covers it ~95%
        d = rng.normal(1.0, 2.0, 400)
        _, lo, hi = ablation.bootstrap_mean(d, w, 300, seed)
        covered += lo <= 1.0 <= hi
        assert hi - lo < 4 * 2.0 * 1.96 / 20                    # width about 2 x 1.96 sigma / sqrt(n)
    assert covered >= 34
