"""Where benchmark figures go: results/bench/<topic>.json (committed) only with --save, else
out/bench/<topic>.json (scratch, ignored by git), so a quick look never rewrites committed figures."""
import json
import os
from pathlib import Path

from seqlab.core.paths import REPO_ROOT


def add_save_flag(parser):
    parser.add_argument("--save", action="store_true",
                        help="write the figures to results/bench/ (the committed ones); default out/bench/ (scratch)")


def figures_path(topic, save):
    """Path of the figures file of `topic`, relative to the repo root."""
    return Path("results" if save else "out") / "bench" / f"{topic}.json"


def previous(topic):
    """The committed figures of `topic` ({} if none): lets a short run keep a long study's figures."""
    path = REPO_ROOT / figures_path(topic, True)
    return json.loads(path.read_text()) if path.is_file() else {}


def write(topic, result, save):
    """Write `result` (with the machine's load average) and return the relative path written."""
    rel = figures_path(topic, save)
    path = REPO_ROOT / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    result.setdefault("cpu_count", os.cpu_count())
    result.setdefault("load_avg_1min", os.getloadavg()[0])
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    return rel
