"""Zero sets in shards: resumable after a kill, no shard computed twice, the same windows as a one-file
build, and memory-mapped loading of the splits."""
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import prepare_continuous_2M
from seqlab.core.paths import REPO_ROOT
from seqlab.zeta import files as zeta_io, shards, spacings as spacing_data, zeros as zeta

START, COUNT, SHARD = 1000, 16_000, 2000


def test_plan_and_reuse(tmp_path):
    assert shards.plan(10, 25, 10) == [(10, 10), (20, 10), (30, 5)]
    first = shards.build(START, 9000, tmp_path, 3000, log=None)
    assert first["computed"] == 3 and first["reused"] == 0
    g = np.concatenate([np.load(p) for p in first["paths"]])
    ref, _ = zeta.compute_zeros(START, 9000)
    assert np.abs(g - ref).max() < 1e-9 and (np.diff(g) > 0).all()
    again = shards.build(START, 9000, tmp_path, 3000, log=None)
    assert again["computed"] == 0 and again["reused"] == 3
    # a damaged shard (its sha256 no longer matches) is the only one computed again
    p = first["paths"][1]
    arr = np.load(p)
    arr[5] += 1e-3
    np.save(p, arr)
    fixed = shards.build(START, 9000, tmp_path, 3000, log=None)
    assert fixed["computed"] == 1 and zeta_io.load_zeros(p, START + 3000, 3000) is not None


def _run(out, *extra):
    cmd = [sys.executable, "scripts/prepare_continuous_2M.py", "--start", str(START), "--n-zeros", str(COUNT),
           "--out-dir", str(out), "--workers", "1", "--no-report", *extra]
    return cmd


def test_killed_build_resumes_without_recomputing(tmp_path):
    out, cache = tmp_path / "set", tmp_path / "cache"
    sdir = cache / f"shards_{START}_{START + COUNT - 1}"
    cmd = _run(out, "--shard-zeros", str(SHARD), "--cache-dir", str(cache))
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t = time.time()
    while len(list(sdir.glob("*.json"))) < 2 and proc.poll() is None and time.time() - t < 300:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in sdir.glob("*.npy")}
    assert 2 <= len(done) < COUNT // SHARD, "the build was not caught mid-way"
    assert not (out / "meta.pt").exists()
    r = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(done)} of {COUNT // SHARD} shards already complete" in r.stdout
    assert r.stdout.count("shard ") == COUNT // SHARD - len(done)  # one line per shard computed now
    assert {p: sdir.joinpath(p).stat().st_mtime_ns for p in done} == done  # finished shards untouched
    # the same windows as one file of zeros (unsharded build): equal to float32 rounding
    one = tmp_path / "one"
    prepare_continuous_2M.main(_run(one, "--cache-dir", str(tmp_path / "cache1"), "--quiet")[2:])
    for split in ("train", "val"):
        a, b = spacing_data.load_split(out, split), spacing_data.load_split(one, split)
        assert a.shape == b.shape and (a - b).abs().max() < 1e-6
    ma, mb = spacing_data.load_meta(out), spacing_data.load_meta(one)
    assert ma["first_zero"] == mb["first_zero"] == START and ma["zeros_shards"] == COUNT // SHARD
    for k in ("n_train", "n_val", "n_spacings"):
        assert ma[k] == mb[k]
    for k in ("spacing_mean", "spacing_std"):
        assert abs(ma[k] - mb[k]) < 1e-6
    assert np.allclose(ma["autocorr"], mb["autocorr"], atol=1e-6)


def test_streamed_statistics_match_in_memory(monkeypatch):
    rng = np.random.default_rng(0)
    s = rng.gamma(4.0, 0.25, size=10 * 256 + 17).astype(np.float32).astype(np.float64)
    train, val = spacing_data.to_windows(s)
    rest = s[10 * 256:]  # the 17 spacings past the last window
    monkeypatch.setattr(shards, "STAT_BLOCK", 1000)  # blocks that cut windows and lag pairs anywhere
    got = shards.statistics([train.numpy(), val.numpy(), rest])
    ref = spacing_data.statistics(np.concatenate([train.numpy().ravel(), val.numpy().ravel(), rest]).astype(np.float64))
    for k in ("mean", "std", "min", "max"):
        assert got[k] == pytest.approx(ref[k], rel=1e-12)
    assert np.allclose(got["autocorr"], ref["autocorr"], atol=1e-12)


def test_memory_mapped_split_is_the_file(tmp_path):
    """load_split(mmap=True) returns the same windows, and reads them from the file itself: bytes changed
    in place on disk show through the mapped tensor (pages not yet touched), never through a loaded copy."""
    s = 1 + 0.1 * np.sin(np.arange(20 * 256 + 1))
    spacing_data.prepare(s, tmp_path, source="test")
    a = spacing_data.load_split(tmp_path, "val", mmap=True)
    b = spacing_data.load_split(tmp_path, "val", mmap=False)
    assert torch.equal(a, b)
    f = tmp_path / "val.pt"
    raw = f.read_bytes()
    key = b.numpy().ravel()[-4:].tobytes()
    at = raw.find(key)
    assert at > 0 and raw.find(key, at + 1) == -1
    mapped = spacing_data.load_split(tmp_path, "val", mmap=True)
    copied = spacing_data.load_split(tmp_path, "val", mmap=False)
    with open(f, "r+b") as fh:
        fh.seek(at)
        fh.write(np.full(4, 2.5, dtype=np.float32).tobytes())
    assert float(mapped.ravel()[-1]) == 2.5 and float(copied.ravel()[-1]) != 2.5


def test_sharded_build_refuses_shuffle_before_writing(tmp_path):
    from seqlab.core.errors import UserError
    with pytest.raises(UserError, match="--shuffle"):
        prepare_continuous_2M.main(["--n-zeros", "6000", "--shard-zeros", "3000", "--shuffle", "--out-dir",
                                    str(tmp_path / "d"), "--cache-dir", str(tmp_path / "c")])
    assert not (tmp_path / "d").exists() and not (tmp_path / "c").exists()
