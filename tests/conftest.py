import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from seqlab.text import data as text_data  # noqa: E402

TINY = ["--n-layer", "2", "--n-head", "2", "--n-embd", "32", "--context", "16", "--batch-size", "4",
        "--eval-every", "10", "--log-every", "1", "--sample-tokens", "8", "--seed", "3"]


def tiny_text(n_sentences=400):
    words = "the quick brown fox jumps over a lazy dog while seven wise owls watch quietly".split()
    lines = [" ".join(words[(i * 7 + j) % len(words)] for j in range(5 + i % 4)) + "." for i in range(n_sentences)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def text_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data") / "tiny"
    text_data.prepare(tiny_text(), d, val_fraction=0.1, source="generated")
    return d


@pytest.fixture
def train_char(text_dir, tmp_path):
    """Run src/train_char.py in-process on the tiny dataset; returns (summary, out_dir)."""
    import train_char as script

    def run(*extra, out="run", max_steps=20):
        out_dir = tmp_path / out
        argv = ["--data-dir", str(text_dir), "--out-dir", str(out_dir), "--max-steps", str(max_steps), *TINY, *extra]
        return script.main(argv), out_dir
    return run


@pytest.fixture(scope="session")
def zeta_set(tmp_path_factory):
    """A real zeta spacing set: zeros 1..3,301 in windows of 33, gamma recorded in meta. (folder, gamma)."""
    from seqlab.zeta import spacings as spacing_data, zeros as zeta
    gamma, _ = zeta.compute_zeros(1, 3301)
    d = tmp_path_factory.mktemp("z") / "z3k"
    spacing_data.prepare(zeta.unfolded_spacings(gamma), d, source="test", seq_len=33,
                         extra_meta={"n_zeros": 3301, "gamma_min": float(gamma[0]), "gamma_max": float(gamma[-1])})
    return d, gamma
