"""Docs that the code reads or promises stay true."""
import re

from conftest import ROOT
from seqlab.core import prices


def test_runpod_price_table_matches_engine_prices():
    text = (ROOT / "docs/runpod_specs.md").read_text().split("## Batch size")[0]
    rows = re.findall(r"^\| ([^|]+?) \| \d+ \| ([\d.]+) \|", text, flags=re.M)
    assert {name: float(p) for name, p in rows} == prices.GPU_PRICE_PER_HR
    assert prices.PRICES_DATE in text
    assert prices.price_for("NVIDIA H100 80GB HBM3") == 2.69
    assert prices.price_for("NVIDIA L40S") == 0.86 and prices.price_for("NVIDIA L40") == 0.99


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    for path in re.findall(r"python ((?:src|scripts)/\w+\.py)", readme):
        assert (ROOT / path).is_file(), path
    assert "make demo" in readme and "make test" in readme
