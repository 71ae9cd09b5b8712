"""What the first pod run depends on: the torch floor, the kernel install commands, GPU prices.

Each of these cost a paid pod hour when it was wrong (issue 16): a floor below what the code needs,
a mamba-ssm install that builds against another torch, an "RTX A4000" priced as an A40.
"""
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from seqlab.core import checkpoint, device, prices
from seqlab.hybrid import kernels

# torch APIs the code might reach for, with the release that added them. Each entry was checked:
# absent from torch 2.1.2 (2.3/2.4 entries) or from 2.4.1 (2.5/2.6 entries), present from its version.
VERSIONED_APIS = {
    r"\bnn\.RMSNorm\b": "2.4",
    r"\brms_norm\b": "2.4",
    r"\btorch\.amp\.GradScaler\b": "2.3",
    r"\badd_safe_globals\b": "2.4",
    r"\btorch\.library\.custom_op\b": "2.4",
    r"\bget_default_device\b": "2.3",
    r"\bcompiler\.is_compiling\b": "2.3",
    r"\bnn\.Buffer\b": "2.5",
    r"\benable_gqa\b": "2.5",
    r"\bget_total_norm\b|\bclip_grads_with_norm_\b": "2.6",
    r"\btorch\.accelerator\b": "2.6",
}


def version(text):
    """'2.10.1+cu128' -> (2, 10): numeric, so that 2.10 > 2.4."""
    return tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", text).groups())


def requirements_floor():
    found = re.findall(r"^torch>=([\d.]+)", (ROOT / "requirements.txt").read_text(), flags=re.M)
    assert len(found) == 1, "requirements.txt must have one line 'torch>=X.Y'"
    return found[0]


def code_lines():
    for folder in ("src", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                yield f"{path.relative_to(ROOT)}:{n}", line.split("#")[0]


# ---- the torch floor (item 1) --------------------------------------------------------------------

def test_torch_floor_is_what_the_code_needs():
    floor = requirements_floor()
    assert floor == device.TORCH_FLOOR
    assert version(torch.__version__) >= version(floor)
    used = {}
    for where, line in code_lines():
        for pattern, v in VERSIONED_APIS.items():
            if re.search(pattern, line):
                used.setdefault(v, []).append(where)
    too_new = {v: w for v, w in used.items() if version(v) > version(floor)}
    assert not too_new, f"torch APIs newer than the floor {floor}: {too_new}; raise the floor or avoid them"
    # no higher than needed: the floor is the newest documented need (the grep's newest find is one of them)
    assert max(used, key=version) in device.TORCH_FLOOR_REASONS, (used, device.TORCH_FLOOR_REASONS)
    assert version(floor) == max(version(v) for v in device.TORCH_FLOOR_REASONS)
    # checkpoints hold no uint32 tensor (NumPy's RNG keys): torch 2.4 can neither save nor load one
    assert checkpoint.rng_state()["numpy"][1].dtype == torch.int64


def fake_torch(tmp_path, ver):
    pkg = tmp_path / f"torch_{ver.replace('+', '_')}" / "torch"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"__version__ = {ver!r}\n"
                                     "class version:\n    cuda = '12.1'\n"
                                     "class cuda:\n    is_available = staticmethod(lambda: False)\n")
    return pkg.parent


@pytest.fixture
def pod(tmp_path):
    """An unpacked package in miniature: the setup script, requirements.txt and its checksum."""
    d = tmp_path / "pod"
    (d / "scripts").mkdir(parents=True)
    for rel in ("scripts/runpod_setup.sh", "requirements.txt"):
        (d / rel).write_text((ROOT / rel).read_text())
    subprocess.run("sha256sum requirements.txt > MANIFEST.sha256", shell=True, cwd=d, check=True)
    return d


def setup_with_torch(pod, tmp_path, ver):
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(fake_torch(tmp_path, ver))}
    return subprocess.run(["bash", "scripts/runpod_setup.sh", "--no-install", "--no-smoke"], capture_output=True,
                          text=True, cwd=pod, env=env, timeout=60)


def test_setup_stops_an_old_torch_before_the_smoke_run(pod, tmp_path):
    floor = requirements_floor()
    old = setup_with_torch(pod, tmp_path, "2.1.0+cu118")
    assert old.returncode == 1 and old.stderr.count("\n") == 1, old.stderr
    assert old.stderr.startswith(f"error: this pod's torch 2.1.0+cu118 is older than {floor} (requirements.txt)")
    assert f"start the pod from a PyTorch >= {floor} template" in old.stderr
    assert "recommended commands" not in old.stdout
    for ok in (f"{floor}.0a0+3bcc3cd", "2.10.1+cu128"):        # an NGC build; 2.10 > 2.4 as numbers
        proc = setup_with_torch(pod, tmp_path, ok)
        assert proc.returncode == 0, proc.stderr
        assert f"torch {ok} >= {floor} (requirements.txt): ok" in proc.stdout and "recommended commands" in proc.stdout


# ---- the kernel install commands (item 7) ------------------------------------------------------------

def install_lines():
    files = [ROOT / "README.md", ROOT / "CLAUDE.md", ROOT / "scripts/runpod_setup.sh", *sorted((ROOT / "docs").glob("*.md"))]
    for path in files:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if "pip install" in line:
                yield f"{path.relative_to(ROOT)}:{n}", line


def test_kernel_install_commands_keep_the_pods_torch():
    mamba = [(w, ln) for w, ln in install_lines() if re.search(r"pip install[^&;#]*\bmamba[-_]ssm", ln)]
    assert mamba, "no documented mamba-ssm install command"
    for where, line in mamba:   # without it pip builds against a fresh torch; the import then fails
        assert re.search(r"pip install --no-build-isolation[^&;#]*\bmamba-ssm", line), where
    for where, line in install_lines():   # flash-linear-attention pulls transformers; fla-core is the kernels alone
        assert "flash-linear-attention" not in line.split("#")[0], where
    assert "--no-build-isolation" in kernels.INSTALL["mamba_ssm"]
    for doc in ("docs/runpod_specs.md", "docs/hybrid.md", "scripts/runpod_setup.sh"):
        text = (ROOT / doc).read_text()
        assert all(cmd in text for cmd in kernels.INSTALL.values()), doc


# ---- prices (item 9) -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, key", [
    ("NVIDIA RTX A4000", None), ("NVIDIA RTX A4500", None), ("NVIDIA A40", "A40"),
    ("NVIDIA L4", None), ("NVIDIA L40", "L40"), ("NVIDIA L40S", "L40S"),
    ("NVIDIA A10", None), ("NVIDIA A10G", None), ("NVIDIA A100-SXM4-80GB", "A100"), ("NVIDIA A100 80GB PCIe", "A100"),
    ("NVIDIA RTX A6000", "A6000"), ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada"), ("Quadro RTX 6000", None),
    ("NVIDIA RTX 4000 Ada Generation", None), ("NVIDIA GeForce RTX 4090", "RTX 4090"),
    ("NVIDIA GeForce RTX 4080", None), ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H200", "H200"),
])
def test_gpu_names_match_whole_words(name, key):
    assert prices.match(name) == key
    assert prices.price_for(name) == (None if key is None else prices.GPU_PRICE_PER_HR[key])


def test_cost_line_says_when_gpus_sat_idle():
    text, usd = prices.cost_line(2.0, 1800, 1, 4)         # python on a 4-GPU pod
    assert usd == pytest.approx(1.0)
    assert text.startswith("$1.00 at $2.00/hr (billed for the 1 GPU(s) used; 3 of 4 GPUs on this pod sat idle")
    assert "the pod costs $4.00" in text and "torchrun --nproc_per_node 4" in text
    assert prices.cost_line(2.0, 1800, 4, 4) == ("$4.00 at $2.00/hr x 4 GPUs", pytest.approx(4.0))
    assert prices.cost_line(2.0, 1800, 1, 1) == ("$1.00 at $2.00/hr", pytest.approx(1.0))
    assert prices.cost_line(None, 1800, 1, 4) == ("unknown GPU price (pass --gpu-price)", None)
    assert prices.cost_line(0.0, 60, 1, 0)[0] == "$0.00 at $0.00/hr"       # a CPU run


# ---- per-step host syncs (item 8) ---------------------------------------------------------------

def test_gradient_monitor_reads_back_once_per_report_not_per_parameter(monkeypatch):
    """accumulate_grads runs every step: no float()/item()/tolist() there (each is a GPU sync); the
    per-component norms are read back in one transfer when the report asks for them."""
    from seqlab.hybrid import monitors
    from test_hybrid import tiny
    model = tiny("RMAP").train()
    x = torch.randint(0, 99, (2, 24))
    model(x)[0].float().square().mean().backward()
    reads = []
    for name in ("__float__", "item", "tolist", "cpu", "numpy"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _n=name, _r=real, **k: reads.append(_n) or _r(self, *a, **k))
    mon = monitors.Monitor()
    mon.accumulate_grads(model)
    mon.accumulate_grads(model)
    assert reads == []
    norms = mon.grad_norms()
    assert reads == ["tolist"]
    monkeypatch.undo()
    for c in monitors.COMPONENTS:     # two identical steps: the mean of the per-step L2 norms is one step's norm
        sq = sum(float(p.grad.square().sum()) for n, p in model.named_parameters()
                 if p.grad is not None and monitors.component_of(model, n) == c)
        assert norms[c] == pytest.approx(sq ** 0.5, rel=1e-5)
    assert norms["rwkv"] > 0 and norms["mamba"] > 0 and norms["attention"] > 0
    state = mon.state_dict()
    assert state["n_steps"] == 2 and state["sq"]["rwkv"] == pytest.approx(2 * norms["rwkv"])
