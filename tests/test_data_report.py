"""The data report's prime-line table, periodogram figure and height-transfer matrix, on real zeros."""
import json

import numpy as np

from seqlab.zeta import report, zeros as zeta


def test_report_prime_lines_and_transfer_on_computed_zeros(tmp_path):
    """Zeros 500,001..580,000 (T ~ 3.3e5): every block's p = 2, 3, 5, 7 lines within 0.2% of
    log p / log(T/2pi); linear prediction transfers worse to other heights than it fits its own."""
    first = 500_001
    gamma, _ = zeta.compute_zeros(first, 80_000)
    s = zeta.unfolded_spacings(gamma)
    meta = {"first_zero": first, "n_zeros": len(gamma), "gamma_min": float(gamma[0]), "gamma_max": float(gamma[-1])}
    report.write_report(s, tmp_path, "z80k", meta, gue_matrices=10)
    js = json.loads((tmp_path / "report.json").read_text())
    rows = js["prime_lines"]
    assert {"block", "t_mid", "p", "f_pred", "f_meas"} <= set(rows[0])
    assert len({r["block"] for r in rows}) >= 4
    assert {2, 3, 4, 5, 7, 8, 9, 11, 13} == {r["p"] for r in rows}
    for r in rows:
        assert gamma[0] < r["t_mid"] < gamma[-1]
        assert r["f_pred"] == np.log(r["p"]) / np.log(r["t_mid"] / (2 * np.pi))
        if r["p"] in (2, 3, 5, 7):
            assert abs(r["f_meas"] / r["f_pred"] - 1) < 2e-3, r
    nll = np.array(js["ar_transfer"]["nll"])
    assert np.all(nll.diagonal() < -0.4)                       # measured about -0.6 on its own block
    assert np.all(np.diagonal(nll, 4) > nll.diagonal()[:-4])   # four blocks away it is worse
    for png in ("spacings.png", "prime_lines.png", "ar_transfer.png"):
        assert (tmp_path / png).stat().st_size > 10_000
    md = (tmp_path / "report.md").read_text()
    assert "## Prime lines" in md and "## Height transfer" in md
