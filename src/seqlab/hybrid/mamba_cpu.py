"""Mamba's selective scan as a C++ loop on the CPU (csrc/mamba_scan.cpp), built on first use.

The exact recurrence of seqlab.hybrid.scan.mamba_sequential with the state of each batch element
kept in cache for the whole sequence (and exp vectorised by the compiler); forward and backward
are written out, the backward recomputing each block of 16 tokens from its start state. Built
with torch.utils.cpp_extension the first time it is needed (a C++ compiler; about a minute, cached
under ~/.cache/torch_extensions); if the build fails, available() is False, one line says why,
and scan.mamba_chunked keeps its pure-PyTorch form. SEQLAB_NO_CPP=1 skips it.
"""
import os
import sys
from pathlib import Path

import torch

_EXT = None
_TRIED = False
REASON = None


def available():
    """True when the C++ scan is built and importable (building it on the first call)."""
    global _EXT, _TRIED, REASON
    if not _TRIED:
        _TRIED = True
        if os.environ.get("SEQLAB_NO_CPP"):
            REASON = "SEQLAB_NO_CPP is set"
        else:
            try:
                from torch.utils import cpp_extension
                src = Path(__file__).with_name("csrc") / "mamba_scan.cpp"
                _EXT = cpp_extension.load("seqlab_mamba_scan", [str(src)], verbose=False,
                                          extra_cflags=["-O3", "-ffast-math", "-march=native", "-fopenmp-simd"],
                                          extra_ldflags=["-lmvec"])
            except Exception as e:  # no compiler, no headers, a failed build: fall back, say so once
                REASON = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                print(f"note: C++ Mamba scan unavailable ({REASON}); using the PyTorch scan", file=sys.stderr)
    return _EXT is not None


class MambaScanCpp(torch.autograd.Function):
    """mamba_sequential's result (y, final state) through the C++ loop; keep (b, T) float or None."""

    @staticmethod
    def forward(ctx, x, dt, A, Bm, Cm, h0, keep):
        x, dt, A, Bm, Cm, h0 = (t.contiguous() for t in (x, dt, A, Bm, Cm, h0))
        k = keep.to(x.dtype).contiguous() if keep is not None else x.new_empty(0)
        y, hT, hs = _EXT.forward(x, dt, A, Bm, Cm, h0, k)
        ctx.save_for_backward(x, dt, A, Bm, Cm, k, hs)
        return y, hT

    @staticmethod
    def backward(ctx, gy, gh):
        x, dt, A, Bm, Cm, k, hs = ctx.saved_tensors
        gy = gy.contiguous() if gy is not None else torch.zeros_like(x)
        gh = gh.contiguous() if gh is not None else torch.zeros_like(hs[:, 0])
        dx, ddt, dA, dB, dC, dh0 = _EXT.backward(gy, gh, x, dt, A, Bm, Cm, k, hs)
        return dx, ddt, dA, dB, dC, dh0, None
