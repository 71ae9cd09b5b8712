"""Periodogram and prime-line code, validated on planted truth and on real zeros."""
import numpy as np
import pytest

from seqlab.zeta import spacings as spacing_data, spectra, zeros as zeta


def test_planted_sinusoids_are_found_to_sub_bin_accuracy():
    rng = np.random.default_rng(0)
    n = 2 ** 14
    f1, f2 = 0.05731, 0.1337
    i = np.arange(n)
    x = 1 + 0.05 * np.cos(2 * np.pi * f1 * i) + 0.03 * np.cos(2 * np.pi * f2 * i + 1) + 0.3 * rng.standard_normal(n)
    freqs, power = spectra.periodogram(x)
    for f0 in (f1, f2):
        f, ratio = spectra.peak_near(freqs, power, f0 * 1.004)        # searched off-centre
        assert abs(f / f0 - 1) < 2e-4 and ratio > 20
    # pure noise: no line
    _, ratio = spectra.peak_near(*spectra.periodogram(rng.standard_normal(n)), 0.1)
    assert ratio < 15


def test_prime_lines_in_real_zeros_near_t_3e5():
    """Zeros 500,001..700,000 (T ~ 3.5e5): the p = 2, 3, 5, 7 lines sit within 0.2% of
    log p / log(T / 2 pi) in each of two blocks of 2^16 spacings."""
    gamma, _ = zeta.compute_zeros(500_001, 140_000)
    s = zeta.unfolded_spacings(gamma)
    rows = spectra.prime_line_table(s, gamma[:-1], block=2 ** 16, n_blocks=2, primes=(2, 3, 5, 7), min_height=0)
    assert len(rows) == 8
    for r in rows:
        assert abs(r["rel_err"]) < 2e-3, r
    assert min(r["peak_over_median"] for r in rows if r["p"] == 2) > 20


def test_height_helpers_agree_with_the_zeros():
    gamma, _ = zeta.compute_zeros(1, 2000)
    t = spacing_data.height_of_count(np.arange(1, 2001))
    assert np.max(np.abs(t - gamma)[20:]) < 2.0
    assert spectra.prime_line(2, 2 * np.pi * np.e) == pytest.approx(np.log(2))
