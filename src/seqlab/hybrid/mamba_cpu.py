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
                _register_ops()
            except Exception as e:  # no compiler, no headers, a failed build: fall back, say so once
                REASON = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                print(f"note: C++ Mamba scan unavailable ({REASON}); using the PyTorch scan", file=sys.stderr)
    return _EXT is not None


BLOCK = 16   # tokens per saved start state; csrc/mamba_scan.cpp's BLOCK


def scan(x, dt, A, Bm, Cm, h0, keep=None):
    """mamba_sequential's (y, final state) through the C++ loop; `keep` is (b, T) bool/float or None.
    available() must be True."""
    k = keep.to(x.dtype) if keep is not None else x.new_empty(0)
    y, hT, _ = torch.ops.seqlab.mamba_scan(x, dt, A, Bm, Cm, h0, k)
    return y, hT


def _register_ops():
    """The C++ calls as torch.library custom ops (with shapes for tracing and a backward), so
    torch.compile keeps the scan inside its graph: a bare pybind call is a graph break that splits
    every Mamba layer in two and leaves the element-wise work around the scan unfused."""
    Tensor = torch.Tensor

    @torch.library.custom_op("seqlab::mamba_scan", mutates_args=())
    def mamba_scan(x: Tensor, dt: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor, h0: Tensor,
                   keep: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        y, hT, hs = _EXT.forward(*(t.contiguous() for t in (x, dt, A, Bm, Cm, h0, keep)))
        return y, hT, hs

    @mamba_scan.register_fake
    def _(x, dt, A, Bm, Cm, h0, keep):
        (b, T, D), N = x.shape, A.shape[1]
        return x.new_empty(b, T, D), x.new_empty(b, D, N), x.new_empty(b, (T + BLOCK - 1) // BLOCK, D, N)

    @torch.library.custom_op("seqlab::mamba_scan_backward", mutates_args=())
    def mamba_scan_backward(gy: Tensor, gh: Tensor, x: Tensor, dt: Tensor, A: Tensor, Bm: Tensor,
                            Cm: Tensor, keep: Tensor, hs: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        return tuple(_EXT.backward(*(t.contiguous() for t in (gy, gh, x, dt, A, Bm, Cm, keep, hs))))

    @mamba_scan_backward.register_fake
    def _(gy, gh, x, dt, A, Bm, Cm, keep, hs):
        # contiguous like the C++ results, whatever the strides of the inputs (empty_like would copy them)
        return (*(t.new_empty(t.shape) for t in (x, dt, A, Bm, Cm)), hs.new_empty(hs.shape[0], *hs.shape[2:]))

    def setup_context(ctx, inputs, output):
        x, dt, A, Bm, Cm, h0, keep = inputs
        ctx.save_for_backward(x, dt, A, Bm, Cm, keep, output[2])
        ctx.mark_non_differentiable(output[2])

    def backward(ctx, gy, gh, _ghs):
        x, dt, A, Bm, Cm, keep, hs = ctx.saved_tensors
        gy = gy if gy is not None else torch.zeros_like(x)
        gh = gh if gh is not None else hs.new_zeros(hs.shape[0], *hs.shape[2:])
        dx, ddt, dA, dB, dC, dh0 = torch.ops.seqlab.mamba_scan_backward(gy, gh, x, dt, A, Bm, Cm, keep, hs)
        return dx, ddt, dA, dB, dC, dh0, None

    mamba_scan.register_autograd(backward, setup_context=setup_context)
