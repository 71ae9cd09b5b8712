"""Run manifest: what makes a run reproducible and identifiable (decision log 5.1/5.2)."""
import hashlib
import json
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import torch

from seqlab.core.paths import REPO_ROOT

# Operational flags that do not change what is computed, so they stay out of the hash.
NOT_HASHED = {"out_dir", "resume", "overwrite", "device", "compile", "gpu_price", "log_every",
              "tensorboard", "save_every", "keep_last"}


def _git(*args):
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state():
    """(commit, dirty). Outside a git checkout (e.g. an unpacked pod tarball) the commit comes
    from the GIT_COMMIT file the packager writes, else 'unknown'."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        f = REPO_ROOT / "GIT_COMMIT"
        return (f.read_text().strip() if f.is_file() else "unknown"), None
    return commit, bool(_git("status", "--porcelain", "--untracked-files=no"))


def config_hash(config):
    """sha256 (first 16 hex) of the canonical JSON of the config, operational flags left out."""
    def strip(d):
        return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if k not in NOT_HASHED}
    blob = json.dumps(strip(config), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make(config, hook_list, device_name, seed):
    commit, dirty = git_state()
    return {
        "run_id": time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6],
        "git_commit": commit,
        "git_dirty": dirty,
        "config_hash": config_hash(config),
        "hook_list": list(hook_list),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "versions": {"python": platform.python_version(), "torch": str(torch.__version__), "numpy": np.__version__},
        "device": device_name,
        "seed": seed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
