"""Zeros files, --from-file validation, the spacing dataset build and the sanity report."""
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import prepare_continuous_2M
import prepare_zeros
from seqlab.zeta import rmt, spacings as spacing_data, report as spacing_report, zeros as zeta, files as zeta_io
from seqlab.core.errors import UserError

N_2M = 2_001_052


@pytest.fixture(scope="module")
def zeros_2600(tmp_path_factory):
    """The first 2600 zeros as a .npy with sidecar, and as an Odlyzko-style text table."""
    d = tmp_path_factory.mktemp("zeros")
    info = prepare_zeros.main(["--count", "2600", "--out", str(d / "z2600.npy"), "--workers", "1", "--quiet"])
    g = np.load(d / "z2600.npy")
    (d / "z2600.txt").write_text("".join(f"{x:15.9f}\n" for x in g))
    return d, g, info


def test_zeros_file_and_sidecar(zeros_2600):
    d, g, info = zeros_2600
    side = json.loads((d / "z2600.json").read_text())
    assert side["start"] == 1 and side["count"] == 2600 and side["sha256"] == zeta_io.sha256(d / "z2600.npy")
    assert side["checks"]["each_index_once"] and "python-flint" in side["versions"]
    assert g.dtype == np.float64 and abs(g[0] - 14.134725141734693) < 1e-12
    got = zeta_io.load_zeros(d / "z2600.npy", need_start=11, need_count=500)
    assert got is not None and np.array_equal(got[0], g[10:510])
    assert zeta_io.load_zeros(d / "z2600.npy", need_start=1, need_count=2601) is None  # not covered
    with pytest.raises(UserError, match="exists"):
        prepare_zeros.main(["--count", "2600", "--out", str(d / "z2600.npy"), "--quiet"])


def test_from_file_accepts_a_valid_table(zeros_2600, tmp_path):
    d, g, _ = zeros_2600
    info = prepare_zeros.main(["--from-file", str(d / "z2600.txt"), "--out", str(tmp_path / "t.npy")])
    assert info["start"] == 1 and info["count"] == 2600
    assert np.abs(np.load(tmp_path / "t.npy") - g).max() < 1e-9
    # a table that starts later: the index is inferred from the Riemann-von Mangoldt formula
    (tmp_path / "late.txt").write_text("".join(f"{x:.9f}\n" for x in g[1300:]))
    assert zeta_io.read_table(tmp_path / "late.txt")[1] == 1301


@pytest.mark.parametrize("edit, message", [
    (lambda L: L[:4] + [L[5], L[4]] + L[6:], "line 6: .* is not greater than"),
    (lambda L: L[:2] + ["nan"] + L[3:], "line 3: nan is not a finite"),
    (lambda L: L[:9] + [""] + L[10:], "line 10 is blank"),
    (lambda L: ["-14.134725142"] + L[1:], "line 1: .* is not positive"),
    (lambda L: L[:7] + ["abc"] + L[8:], "line 8: 'abc' is not a number"),
    (lambda L: L[:200] + L[201:], "line 201: .* a zero is missing before it"),
    (lambda L: L[:300] + [f"{(float(L[299]) + float(L[300])) / 2:.9f}"] + L[300:], "line 301: .* not a zeta zero"),
    (lambda L: L[:1500] + L[1510:], "line 1501: .* missing"),
    (lambda L: L[:2000] + [L[2000]] + L[2000:], "line 2002: .* is not greater"),
])
def test_from_file_rejections_name_the_first_bad_line(zeros_2600, tmp_path, edit, message):
    d, _, _ = zeros_2600
    lines = (d / "z2600.txt").read_text().splitlines()
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(edit(lines)) + "\n")
    with pytest.raises(UserError, match=message):
        prepare_zeros.main(["--from-file", str(bad), "--out", str(tmp_path / "o.npy")])
    assert not (tmp_path / "o.npy").exists()


def test_bad_file_is_one_line_error_and_exit_2(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("14.134725142\n21.022039639\n\n")
    r = subprocess.run([sys.executable, "scripts/prepare_zeros.py", "--from-file", str(bad), "--out",
                        str(tmp_path / "o.npy")], capture_output=True, text=True, cwd=prepare_zeros.Path(__file__).parents[1])
    assert r.returncode == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "line 3 is blank" in r.stderr


def test_small_dataset_shapes_split_meta_and_refusal(zeros_2600, tmp_path):
    d, g, _ = zeros_2600
    out = tmp_path / "zeta600"
    meta = prepare_continuous_2M.main(["--n-zeros", "2600", "--zeros", str(d / "z2600.npy"), "--out-dir", str(out),
                                       "--no-report", "--quiet"])
    train, val = spacing_data.load_split(out, "train"), spacing_data.load_split(out, "val")
    # 2599 spacings -> 10 windows of 256 (the last 39 spacings dropped) -> int(0.1 * 10) = 1 val window
    assert tuple(train.shape) == (9, 256) and tuple(val.shape) == (1, 256)
    s = zeta.unfolded_spacings(g)
    assert torch.equal(torch.cat([train, val]).flatten(), torch.from_numpy(s[:2560]).float())
    assert torch.equal(val[0], torch.from_numpy(s[2304:2560]).float())  # val is the tail
    for key in ("n_zeros", "gamma_min", "gamma_max", "spacing_mean", "spacing_std", "spacing_min", "spacing_max",
                "autocorr", "seq_len", "n_train", "n_val", "val_type", "source", "dtype", "zeros_sha256"):
        assert key in meta, key
    assert spacing_data.load_meta(out)["zeros_sha256"] == zeta_io.sha256(d / "z2600.npy")
    assert meta["val_type"] == "val_tail" and len(meta["autocorr"]) == 5 and meta["n_zeros"] == 2600
    before = (out / "train.pt").stat().st_mtime_ns
    with pytest.raises(UserError, match="--overwrite"):
        prepare_continuous_2M.main(["--n-zeros", "2600", "--zeros", str(d / "z2600.npy"), "--out-dir", str(out)])
    assert (out / "train.pt").stat().st_mtime_ns == before


def test_build_from_nothing_computes_and_then_reuses_zeros(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["--n-zeros", "2600", "--out-dir", "data/z2600", "--no-report", "--workers", "1", "--quiet"]
    meta = prepare_continuous_2M.main(args)
    assert (meta["n_train"], meta["n_val"]) == (9, 1)  # 2599 spacings -> 10 windows, int(1.0) = 1 val
    zfile = tmp_path / "data" / "zeros" / "zeros_1_2600.npy"
    assert zfile.is_file() and meta["zeros_sha256"] == zeta_io.sha256(zfile)
    stamp = zfile.stat().st_mtime_ns
    meta2 = prepare_continuous_2M.main(args + ["--overwrite"])
    assert zfile.stat().st_mtime_ns == stamp and meta2["zeros_sha256"] == meta["zeros_sha256"]
    np.save(zfile, np.load(zfile) + 1e-6)  # corrupt it: the sha256 no longer matches, so it is recomputed
    prepare_continuous_2M.main(args + ["--overwrite"])
    assert zeta_io.load_zeros(zfile) is not None


def test_report_files(zeros_2600, tmp_path):
    _, g, _ = zeros_2600
    r = spacing_report.write_report(zeta.unfolded_spacings(g), tmp_path / "rep", "z2600", {"source": "test"}, gue_matrices=8)
    text = (tmp_path / "rep" / "report.md").read_text()
    assert (tmp_path / "rep" / "spacings.png").stat().st_size > 10_000
    assert "autocorrelation lag 5" in text and f"{r['entropy']:.4f}" in text
    assert -0.45 < r["autocorr"][0] < -0.3 and r["pair_corr"][0] < 0.05  # level repulsion


def test_2M_shapes_by_arithmetic():
    train, val = spacing_data.to_windows(np.ones(N_2M - 1))
    assert tuple(train.shape) == (7035, 256) and tuple(val.shape) == (781, 256)


def test_report_statistics_on_known_processes():
    rng = np.random.default_rng(0)
    poisson = rng.exponential(size=200_000)
    x, r2 = spacing_report.pair_correlation(poisson)
    assert abs(r2[x > 0.1].mean() - 1) < 0.02  # no correlation: R2 = 1
    L = np.array([0.5, 2.0, 5.0])
    assert np.allclose(spacing_report.number_variance(poisson, L), L, rtol=0.06)  # Poisson: Sigma^2 = L
    assert spacing_report.number_variance(np.ones(10_000), L).max() < 0.26  # a lattice is rigid
    assert abs(spacing_report.marginal_entropy(poisson) - 1.0) < 0.01  # exp(1): 1 nat
    wig = rmt.wigner_sample(400_000, rng)
    assert abs(spacing_report.marginal_entropy(wig) - rmt.WIGNER_ENTROPY) < 0.01
    assert spacing_report.ks_wigner(wig) < 0.01 and spacing_report.ks_wigner(poisson) > 0.2


def test_gue_references():
    # exact sine-kernel number variance approaches the large-L formula
    assert abs(rmt.gue_number_variance_exact([20.0])[0] - rmt.gue_number_variance(20.0)) < 5e-3
    assert abs(rmt.gue_number_variance_exact([0.01])[0] - 0.01) < 1e-4  # Sigma^2(L) ~ L for small L
    s = rmt.gue_unfolded_spacings(20, 200, np.random.default_rng(1))
    assert abs(s.mean() - 1) < 0.03 and s.min() > 0
    assert abs(s.std() - math.sqrt(0.18)) < 0.03  # GUE spacing variance about 0.180


def test_from_file_npy_and_range_limits(zeros_2600, tmp_path):
    _, g, _ = zeros_2600
    bad = g.copy()
    bad[41] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(UserError, match="entry 41: nan is not a finite"):
        prepare_zeros.main(["--from-file", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "o.npy")])
    np.save(tmp_path / "good.npy", g[1000:])
    assert prepare_zeros.main(["--from-file", str(tmp_path / "good.npy"), "--out", str(tmp_path / "o.npy")])["start"] == 1001
    # past Rosser's limit the count is certified by Turing's method (the first Rosser exception is here)
    info = prepare_zeros.main(["--start", "13999400", "--count", "200", "--out", str(tmp_path / "x.npy"), "--quiet"])
    assert "turing" in info["method"] and info["checks"]["turing_margin_min"] > 0
    assert info["checks"]["rosser_exceptions"] >= 1
