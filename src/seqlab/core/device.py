"""Device choice, a human description of it, and the autocast/GradScaler pair for AMP."""
import contextlib
import os
import platform

import torch

from seqlab.core.errors import UserError

# The oldest torch the code runs on; requirements.txt says the same (tests/test_pod_setup.py reads both
# and greps the code for known APIs newer than it; scripts/runpod_setup.sh stops an older pod torch
# before its smoke run). Why 2.5, measured by running the tests on 2.1.2, 2.4.1 and 2.5.1 (CPU):
#   2.4: nn.RMSNorm (optim.py), torch.amp.GradScaler("cuda") (2.3)
#   2.5: --compile of the hybrid (2.4's dynamo fails on the out= ops inside scan.py's autograd.Function)
# Checkpoints written before commit addf2d6 (those in checkpoints/ too) hold NumPy's RNG keys as uint32,
# which 2.4.1 and 2.5.1 cannot load (2.13 can); checkpoint.rng_state now writes int64.
TORCH_FLOOR = "2.5"
TORCH_FLOOR_REASONS = {"2.4": "nn.RMSNorm", "2.5": "hybrid --compile (dynamo through scan.py's autograd.Function)"}


def pick(name="auto"):
    """'auto' -> cuda > mps > cpu; otherwise the named device, checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name} is not a device name; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    return dev


def describe(dev):
    """(name, memory in GiB or None) of the device, for the start-of-run log."""
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        return props.name, props.total_memory / 2**30
    if dev.type == "mps":
        return "Apple MPS", None
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else None
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)", mem


def amp_setup(dev, use_amp):
    """(autocast context factory, GradScaler or None, dtype name) for the AMP flag pair.

    use_amp None means the default: on for CUDA, off elsewhere. CUDA uses bf16 when the GPU
    supports it (no scaler needed), else fp16 with a GradScaler; CPU AMP is bf16.
    """
    on = dev.type == "cuda" if use_amp is None else use_amp
    if not on:
        return contextlib.nullcontext, None, "float32"
    if dev.type == "cuda":
        # bf16 natively from Ampere (sm80) on; older GPUs emulate it slowly, so they get fp16 + scaler
        dtype = torch.bfloat16 if torch.cuda.get_device_capability(dev)[0] >= 8 else torch.float16
    else:
        dtype = torch.bfloat16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast(dev.type, dtype=dtype)), scaler, str(dtype).replace("torch.", "")
