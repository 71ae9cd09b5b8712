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
