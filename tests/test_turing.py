"""Turing's method past Rosser's limit, and zeros at height against python-flint (certified, 96 bits)."""
import numpy as np
import pytest

from seqlab.zeta import riemann_siegel as zeta_rs, turing, zeros as zeta

ULPS = 4  # the bar: within 4 ulps of float64 at every height


def ulps(got, ref):
    return np.abs(got - ref) / np.spacing(np.abs(ref))


def test_trudgian_bound_and_margins_at_a_gram_point():
    assert turing.integral_bound(1e8) == pytest.approx(2.067 + 0.059 * np.log(1e8))
    j, t, lower, upper = turing.certify_gram(14_000_100)
    assert 14_000_100 <= j < 14_000_100 + turing.SEARCH and lower > 0 and upper > 0
    # both margins are about L - B (L ~ 48 mean gaps of 0.42): far from a knife edge, not a free pass
    assert 5 < lower < 25 and 5 < upper < 25


def test_a_removed_zero_breaks_the_certificate():
    """Remove the found zero just below g_j: N(g_j) >= j + 1 no longer follows (the margin goes negative)."""
    k = 14_000_100
    j, t, _, _ = turing.certify_gram(k)
    zc, ks, g, zg = turing.gram_window(j - 60, j + 60)
    good = np.flatnonzero(np.where(ks % 2 == 0, zg, -zg) > 0)
    a, b, _, _, _ = turing.find_brackets(zc, ks, g, zg, int(good[0]), int(good[-1]), 10)
    p = j - (j - 60)
    args = (zc, j, g[p], g[p - turing.TURING_GRAMS], g[p + turing.TURING_GRAMS])
    lower, upper = turing.turing_margins(*args, a, b)
    assert lower > 0 and upper > 0
    last_below = int(np.flatnonzero(b <= g[p])[-1])
    keep = np.arange(len(a)) != last_below
    lower2, upper2 = turing.turing_margins(*args, a[keep], b[keep])
    assert lower2 < 0 and upper2 == upper
    first_above = int(np.flatnonzero(a >= g[p])[0])
    keep = np.arange(len(a)) != first_above
    assert turing.turing_margins(*args, a[keep], b[keep])[1] < 0


def test_just_past_rossers_limit_certified_with_its_first_exception():
    """n = 13,999,300..13,999,699 holds the first failure of Rosser's rule: Rosser's method refuses it,
    Turing's certifies it, and the zeros agree with flint."""
    with pytest.raises(ValueError, match="Rosser"):
        zeta.compute_zeros(13_999_300, 400, method="rosser")
    g, checks = zeta.compute_zeros(13_999_300, 400)
    assert checks["method"] == "turing" and checks["rosser_exceptions"] >= 1 and checks["turing_margin_min"] > 0
    assert checks["each_index_once"] and (np.diff(g) > 0).all()
    ref = zeta.flint_zeros(13_999_520, 10, prec=96)
    assert ulps(g[220:230], ref).max() <= ULPS


def test_turing_and_rosser_agree_where_both_hold():
    a, ca = zeta.compute_zeros(1_000_000, 2000, method="rosser")
    b, cb = zeta.compute_zeros(1_000_000, 2000, method="turing")
    assert ca["method"] == "rosser" and cb["method"] == "turing"
    assert ulps(b, a).max() <= 2  # two independent counts; the chunk bases differ, so the last bit may


def test_near_1e8_certified_and_matches_flint():
    g, checks = zeta.compute_zeros(100_000_000, 300)
    assert checks["turing_margin_min"] > 0 and len(g) == 300
    ref = zeta.flint_zeros(100_000_000, 4, prec=96)
    assert ulps(g[:4], ref).max() <= ULPS


def test_random_heights_2e7_to_1e9_within_4_ulps():
    rng = np.random.default_rng(15)
    for n in sorted(int(x) for x in rng.integers(20_000_000, 1_000_000_000, size=3)):
        g, _ = zeta.compute_zeros(n, 12)
        ref = zeta.flint_zeros(n + 4, 3, prec=96)
        assert ulps(g[4:7], ref).max() <= ULPS, n


def test_planted_missing_zero_is_refused(monkeypatch):
    """Hide one zero (Z times the sign of t - gamma: |Z| unchanged, no sign change there): the range
    that holds it cannot be certified, and the error names it."""
    n0 = 14_000_000
    g, _ = zeta.compute_zeros(n0, 200)
    hidden = g[100]
    z = zeta_rs.ZChunk.z

    def z_planted(self, h):
        h = np.asarray(h, dtype=np.float64)
        return z(self, h) * np.where(self.t0 + h > hidden, -1.0, 1.0)

    turing.certify_gram.cache_clear()
    monkeypatch.setattr(zeta_rs.ZChunk, "z", z_planted)
    try:
        with pytest.raises(turing.CertificationError, match=r"cannot (certify|be certified)") as e:
            zeta.compute_zeros(n0, 200)
    finally:
        turing.certify_gram.cache_clear()
    assert "t = " in str(e.value)
