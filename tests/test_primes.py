"""Prime sieve, normalised gaps and the prime-gap dataset."""
import math

import numpy as np
import pytest

import prepare_primes
from seqlab.zeta import primes, spacings as spacing_data
from seqlab.core.errors import UserError


def test_sieve_against_trial_division():
    def is_prime(n):
        return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))
    for limit in (1, 2, 3, 9, 10, 25, 1000):
        assert primes.primes_up_to(limit).tolist() == [n for n in range(limit + 1) if is_prime(n)]
    p = primes.primes_up_to(10_000_000)
    assert len(p) == 664_579 and p[-1] == 9_999_991  # pi(10^7)


def test_bound_and_gaps():
    p = primes.primes_up_to(primes.bound_for(100_000))
    assert len(p) >= 100_000 and p[99_999] == 1_299_709  # the 100,000th prime
    g = primes.normalised_gaps(p[:100_001])
    assert g[0] == pytest.approx(1 / math.log(2)) and g[1] == pytest.approx(2 / math.log(3))
    assert abs(g.mean() - 1) < 0.1  # the mean gap near x is about ln x


def test_dataset_shapes_meta_and_refusal(tmp_path):
    out = tmp_path / "primes"
    meta = prepare_primes.main(["--n-gaps", "5120", "--out-dir", str(out), "--no-report"])
    train, val = spacing_data.load_split(out, "train"), spacing_data.load_split(out, "val")
    assert tuple(train.shape) == (18, 256) and tuple(val.shape) == (2, 256)
    p = primes.primes_up_to(60_000)[:5121]
    g = primes.normalised_gaps(p)
    assert np.allclose(val[-1].numpy(), g[-256:], rtol=1e-6)  # val is the tail, nothing clipped or binned
    assert meta["n_primes"] == 5121 and meta["val_type"] == "val_tail" and len(meta["autocorr"]) == 5
    with pytest.raises(UserError, match="--overwrite"):
        prepare_primes.main(["--n-gaps", "5120", "--out-dir", str(out), "--no-report"])


def test_large_gaps_are_kept_and_load():
    # the maximal gap 210 after 20,831,323 is 12.46 log-units: above the zeta cap of 10, so the
    # dataset records its own cap and load_split honours it
    p = np.array([20_831_323, 20_831_533])
    g = primes.normalised_gaps(p)
    assert 12 < g[0] < primes.MAX_GAP
    with pytest.raises(UserError):
        spacing_data.validate(g)
    spacing_data.validate(g, max_spacing=primes.MAX_GAP)


def test_load_split_uses_the_recorded_cap(tmp_path):
    s = np.ones(2560)
    s[2559] = 12.5  # in the val tail
    spacing_data.prepare(s, tmp_path / "a", source="test", extra_meta={"max_spacing": primes.MAX_GAP})
    assert spacing_data.load_split(tmp_path / "a", "val").max() == 12.5
    with pytest.raises(UserError, match="not a valid unfolded spacing"):
        spacing_data.prepare(s, tmp_path / "b", source="test")  # the zeta cap of 10
