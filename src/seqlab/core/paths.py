"""Paths as outputs show them: relative to the repo root when inside it, so committed figures and
JSON never carry the absolute paths of the machine they ran on."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]  # src/seqlab/core/paths.py -> repo root


def shown(path):
    """`path` relative to the repo root if it lies inside the repo, else as given (a str)."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(REPO_ROOT))
    except (ValueError, OSError):
        return str(path)
