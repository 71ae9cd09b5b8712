"""The telescope scripts end to end on a tiny run: generate_spectra, extract_kernel, ablate_heads
write their outputs with the documented keys, and refuse bad input with one line."""
import json

import pytest

import generate_spectra
import train_mdn
from test_mdn_models import make_dataset

CTX = 64
SIZE = ["--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--n-components", "3", "--batch-size", "8",
        "--eval-every", "3", "--log-every", "1", "--seed", "3", "--warmup", "0", "--context", str(CTX)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = make_dataset(tmp_path_factory.mktemp("tel") / "ar1", n=48 * (CTX + 1), seq_len=CTX + 1)
    out = tmp_path_factory.mktemp("runs") / "E0"
    train_mdn.main(["--data-dir", str(data), "--out-dir", str(out), "--max-steps", "4", *SIZE])
    return out / "best.pt", data


def test_generate_spectra_writes_every_source(run, tmp_path):
    ckpt, data = run
    rep = generate_spectra.main(["--ckpt", str(ckpt), "--data-dir", str(data), "--output-dir", str(tmp_path),
                                 "--n", "256", "--chains", "2", "--block", "64", "--n-boot", "5", "--ar-order", "4",
                                 "--ar-tail", "2000"])
    saved = json.loads((tmp_path / "spectra.json").read_text())
    assert set(saved["sources"]) == {"model", "data", "gue", "wigner_iid", "ar"}
    assert set(saved["distances"]) == {"model", "gue", "wigner_iid", "ar"}
    for src in saved["sources"].values():
        assert set(src["curves"]) == {"nn_density", "r2", "sigma2", "sff", "acf"}
    assert saved["sources"]["model"]["shape"] == [2, 128]
    assert (tmp_path / "spectra.png").stat().st_size > 0
    assert rep["distances"]["model"]["acf"]["value"] >= 0


def test_generate_spectra_refuses_too_short_chains(run, tmp_path, capsys):
    ckpt, data = run
    from seqlab.core.errors import UserError
    with pytest.raises(UserError, match="fewer than one --block"):
        generate_spectra.main(["--ckpt", str(ckpt), "--data-dir", str(data), "--output-dir", str(tmp_path / "x"),
                               "--n", "64", "--chains", "2", "--block", "64"])
    assert not (tmp_path / "x").exists()


def test_extract_kernel_writes_kernels_spectra_and_fits(run, tmp_path):
    import extract_kernel
    ckpt, data = run
    out = extract_kernel.main(["--ckpt", str(ckpt), "--data-dir", str(data), "--output-dir", str(tmp_path),
                               "--max-lag", "16", "--max-windows", "6", "--ar-order", "8", "--ar-tail", "2000", "--n-boot", "5",
                               "--symbolic", "--symbolic-population", "50", "--symbolic-generations", "2"])
    saved = json.loads((tmp_path / "kernel.json").read_text())
    r = saved["checkpoints"][0]
    law = saved["symbolic"]
    assert law["program"] and law["n_heldout"] == 6 * (CTX - 31)        # positions t >= 31 of each window
    assert set(law["heldout_mse"]) == {"symbolic", "linear", "one"} and r["symbolic_model_mse"] > 0
    assert len(r["attention"]) == 2 and len(r["attention"][0]) == 2
    assert len(r["response"]["mean"]["mean"]) == 17
    assert set(r["fits"]) >= {"response_mean", "response_median", "score_L0H0", "score_L1H1"}
    assert r["fits"]["response_mean"][0]["aic"] <= r["fits"]["response_mean"][-1]["aic"]
    assert (tmp_path / "kernel.png").stat().st_size > 0
    assert out["ar"]["order"] == 8


def test_extract_kernel_ckpt_glob_reports_mean_and_std(run, tmp_path):
    import shutil
    import extract_kernel
    ckpt, data = run
    for i in range(2):
        (tmp_path / f"s{i}").mkdir()
        shutil.copy(ckpt, tmp_path / f"s{i}" / "best.pt")
    out = extract_kernel.main(["--ckpt-glob", str(tmp_path / "s*" / "best.pt"), "--data-dir", str(data),
                               "--max-lag", "8", "--max-windows", "4", "--ar-order", "4", "--ar-tail", "2000", "--n-boot", "3"])
    acc = out["across_checkpoints"]
    assert acc["n_checkpoints"] == 2
    assert max(acc["response_mean"]["std"]) == 0.0          # the same model twice: no spread


def test_ablate_heads_writes_every_head_and_the_pruning_curve(run, tmp_path):
    import ablate_heads
    ckpt, data = run
    rep = ablate_heads.main(["--ckpt", str(ckpt), "--data-dir", str(data), "--output-dir", str(tmp_path),
                             "--max-windows", "4", "--n-boot", "20", "--fractions", "0,0.5"])
    saved = json.loads((tmp_path / "heads.json").read_text())
    assert len(saved["heads"]) == 4 and set(saved["pruning"]) == {"attn.qkv", "attn.proj", "mlp.fc", "mlp.proj", "all"}
    assert saved["pruning"]["all"][0]["nll"] == rep["base_nll"]
    assert (tmp_path / "heads.png").stat().st_size > 0


def test_diagnose_memory_ckpt_glob_reports_mean_and_std(run, tmp_path):
    import shutil
    import diagnose_memory
    import train_mdn_memory
    from seqlab.mdn import seeds
    _, data = run
    train_mdn_memory.main(["--data-dir", str(data), "--out-dir", str(tmp_path / "p0"), "--max-steps", "2",
                           "--n-memory-slots", "2", *SIZE])
    (tmp_path / "p1").mkdir()
    shutil.copy(tmp_path / "p0" / "best.pt", tmp_path / "p1" / "best.pt")
    agg = diagnose_memory.main(["--ckpt-glob", str(tmp_path / "p*" / "best.pt"), "--max-windows", "4",
                                "--rollout-windows", "0", "--output-dir", str(tmp_path / "diag")])
    assert len(agg["checkpoints"]) == 2 and agg["across"]
    assert all(v["std"] == 0.0 and v["n"] == 2 for v in agg["across"].values())   # the same model twice
    assert (tmp_path / "diag" / "prefix_diagnostics_seeds.json").is_file()
    assert len((tmp_path / "diag" / "prefix_diagnostics.jsonl").read_text().splitlines()) == 2
    assert seeds.split_glob(["--ckpt-glob=x*", "--seed", "1"]) == ("x*", ["--seed", "1"])


def test_height_aware_models_are_read_at_the_val_height(zeta_set, tmp_path):
    """A +height E0 goes through all three scripts, each run at the mean val height (heights.AtHeight)."""
    import ablate_heads
    import extract_kernel
    import numpy as np
    import torch
    from seqlab.core import checkpoint
    from seqlab.mdn import heights
    from seqlab.zeta import spacings as spacing_data
    data, _ = zeta_set
    out = tmp_path / "h"
    small = [a if a != str(CTX) else "32" for a in SIZE]
    train_mdn.main(["--data-dir", str(data), "--out-dir", str(out), "--max-steps", "2", *small,
                    "--input-features", "spacing+height"])
    model, _ = checkpoint.load_model(out / "best.pt")
    meta = spacing_data.load_meta(data)
    wrapped, L = heights.readable(model, meta, np.arange(100))
    assert L == pytest.approx(np.mean(heights.log_heights(meta, "val", 100)), rel=1e-6)
    x = torch.rand(3, 20) + 0.5
    assert torch.equal(wrapped(x).mu, model(x, height=torch.full((3,), L)).mu)
    assert not torch.equal(wrapped(x).mu, model(x, height=torch.full((3,), L + 1)).mu)   # the height matters
    generate_spectra.main(["--ckpt", str(out / "best.pt"), "--data-dir", str(data), "--output-dir", str(tmp_path / "g"),
                           "--n", "128", "--chains", "2", "--block", "32", "--n-boot", "5", "--ar-order", "4",
                           "--ar-tail", "1000"])
    extract_kernel.main(["--ckpt", str(out / "best.pt"), "--data-dir", str(data), "--output-dir", str(tmp_path / "k"),
                         "--max-lag", "8", "--max-windows", "4", "--ar-order", "4", "--ar-tail", "1000", "--n-boot", "5"])
    rep = ablate_heads.main(["--ckpt", str(out / "best.pt"), "--data-dir", str(data), "--n-boot", "5",
                             "--fractions", "0,0.5"])
    assert np.isfinite(rep["base_nll"])
    assert (tmp_path / "g" / "spectra.json").is_file() and (tmp_path / "k" / "kernel.json").is_file()
