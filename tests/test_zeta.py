"""The zeta-zero engine against python-flint (certified) and mpmath: Z, theta, Gram points, zeros."""
import math
from pathlib import Path

import mpmath
import numpy as np
import pytest

from seqlab.zeta import zeros as zeta, riemann_siegel as zeta_rs

ODLYZKO = Path(__file__).resolve().parents[2] / "shared" / "data" / "odlyzko_zeros1.txt"
CLOSE_PAIR = 1_115_578  # gamma_n, gamma_{n+1} about 0.0054 mean spacings apart


def test_z_matches_mpmath_siegelz():
    for T in (1000.0, 1.0e4, 1.0e5, 6.0e5):
        t = T + np.array([0.0, 0.37, 1.91, 3.3])
        zc = zeta_rs.ZChunk(T - 1.3).cover(0.0, 6.0)
        with mpmath.workdps(25):
            ref = np.array([float(mpmath.siegelz(mpmath.mpf(x))) for x in t])
        got = zc.z(t - zc.t0)
        assert np.abs(got - ref).max() < 1e-9, (T, got, ref)
        assert np.abs(ref).max() > 0.1  # the points are not all near zeros of Z


def test_cell_expansion_matches_direct_sum():
    zc = zeta_rs.ZChunk(3000.0).cover(0.0, 300.0)  # spans several cells and two N-segments
    h = np.linspace(0.0, 300.0, 257)
    assert np.abs(zc.z(h) - zeta_rs.z_direct(zc.t0 + h)).max() < 5e-11  # the direct sum's own float64 error


def test_theta_against_log_gamma():
    from flint import acb, arb, ctx
    old, ctx.prec = ctx.prec, 128
    try:
        for t in (20.0, 1234.5, 1.0e6):
            ref = acb(arb(0.25), arb(t) / 2).lgamma().imag - arb(t) / 2 * arb.pi().log()
            assert abs(float(zeta_rs.theta(t)) - float(ref)) < 1e-15 * max(1.0, float(ref)) * 8
            m0, r0 = zeta_rs.base_theta(t)
            assert abs(float(ref - m0 * arb.pi()) - r0) < 1e-14 and 0 <= r0 < math.pi
        h = 0.731
        d = acb(arb(0.25), (arb(1.0e6) + h) / 2).lgamma().imag - acb(arb(0.25), arb(1.0e6) / 2).lgamma().imag \
            - arb(h) / 2 * arb.pi().log()
        assert abs(float(zeta_rs.theta_diff(1.0e6, h)) - float(d)) < 1e-13
    finally:
        ctx.prec = old


def test_gram_points_solve_theta():
    zc = zeta_rs.ZChunk(600000.0)
    k = np.array([zc.m0 + 1, zc.m0 + 5, zc.m0 + 40])
    h = zc.gram(k)
    with mpmath.workdps(40):
        for ki, hi in zip(k, h):
            th = mpmath.siegeltheta(mpmath.mpf(zc.t0) + mpmath.mpf(hi))
            assert abs(float(th - ki * mpmath.pi)) < 1e-9


def test_first_100_zeros_match_flint():
    g, checks = zeta.compute_zeros(1, 100)
    assert np.abs(g - zeta.flint_zeros(1, 100, prec=96)).max() <= 1e-9
    assert checks["each_index_once"]


def test_riemann_siegel_from_its_lowest_zero_matches_flint():
    g, _ = zeta.compute_zeros(zeta.RS_FROM, 60)  # all by Riemann-Siegel, where C0..C4 is coarsest
    assert np.abs(g - zeta.flint_zeros(zeta.RS_FROM, 60, prec=96)).max() <= 1e-9


@pytest.mark.parametrize("n", [100_000, 1_000_000])
def test_blocks_near_1e5_and_1e6_match_flint(n):
    g, _ = zeta.compute_zeros(n, 40)
    assert np.abs(g - zeta.flint_zeros(n, 40, prec=80)).max() <= 1e-9


def test_close_pair_is_resolved_and_complete():
    n0 = CLOSE_PAIR - 600
    g, checks = zeta.compute_zeros(n0, 1200)
    assert len(g) == 1200 and (np.diff(g) > 0).all()
    s = zeta.unfolded_spacings(g)
    i = int(np.argmin(s))
    assert n0 + i == CLOSE_PAIR and 0.004 < s[i] < 0.007
    assert checks["subdivided"] > 0 and checks["max_halvings"] >= 5  # found only by splitting a block
    ref = zeta.flint_zeros(CLOSE_PAIR - 2, 5, prec=80)
    assert np.abs(g[CLOSE_PAIR - 2 - n0: CLOSE_PAIR + 3 - n0] - ref).max() <= 1e-9


def test_unresolvable_block_fails_loudly(monkeypatch):
    monkeypatch.setattr(zeta, "MAX_HALVINGS", 2)  # too coarse to separate the close pair
    with pytest.raises(zeta.ZetaError, match="fewer sign changes"):
        zeta.compute_zeros(CLOSE_PAIR - 20, 40)


def test_workers_give_the_same_zeros():
    a, _ = zeta.compute_zeros(50_000, 9000)
    b, _ = zeta.compute_zeros(50_000, 9000, workers=2)
    assert np.array_equal(a, b)


def test_unfolding_is_the_smooth_counting_function():
    g, _ = zeta.compute_zeros(1, 2000)
    x = zeta.unfold(g)
    with mpmath.workdps(30):
        for n in (1, 777, 2000):
            assert abs(x[n - 1] - float(mpmath.siegeltheta(g[n - 1]) / mpmath.pi + 1)) < 1e-12
    assert np.abs(x - (np.arange(1, 2001) - 0.5)).max() < 3  # N(gamma_n) = n - 1/2 up to S(t)
    s = zeta.unfolded_spacings(g)
    assert np.allclose(s, np.diff(x), atol=1e-12)
    assert abs(s.mean() - (x[-1] - x[0]) / 1999) < 1e-12


@pytest.mark.skipif(not ODLYZKO.is_file(), reason="reference table absent")
def test_against_odlyzko_table():
    g, _ = zeta.compute_zeros(1, 3000)
    ref = np.loadtxt(ODLYZKO, max_rows=3000)
    assert np.abs(g - ref).max() < 4e-9  # the table has 9 decimals (stated accuracy 3e-9)
