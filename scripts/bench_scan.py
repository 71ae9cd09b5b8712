"""Benchmark of family 3's recurrences and models, reference measured in the same run.

    python scripts/bench_scan.py              # under 2 minutes on 2 CPU cores, all cores (torch's default)
    python scripts/bench_scan.py --threads 1  # one core (both forms get the same threads)

(a) forward+backward time of each recurrence (seqlab.hybrid.scan) at T=256, batch 8, the sizes
    the default model (n_embd 256) runs: RWKV with 4 heads of 64 (state 64x64 per head), Mamba
    with D = 2 n_embd = 512 channels and N=16; the sequential reference (a loop over time,
    vectorised over everything else; RWKV's step is the lean r^T S + (r . u k) v) against the
    chunked form (the default: hand-written backward; RWKV chunks of 16, Mamba blocks of 8),
    best of --repeats interleaved runs; the max |difference| of the outputs. On a CPU Mamba's
    chunked form is the C++ loop (seqlab.hybrid.mamba_cpu) when it builds; the pure-PyTorch
    blocked form (_MambaBlocked) and the autograd-recorded chunked forms (*_chunked_autograd) are
    timed too, for reference.
(b) training tokens/s (forward+backward+AdamW step) of the default hybrid (12 x 256,
    RMRMRMARMRMR) against the attention-only model of equal width and depth (AAAAAAAAAAAA),
    context 256, batch 8: their ratio is `hybrid_vs_attention` (what a user feels).
    --compiled adds the same pair under torch.compile (hybrid_vs_attention_compiled).
(c) the profile of (b): forward+backward ms of one layer of each kind and of its parts
    (time-mix, its ddlerp + decay low rank, channel-mix; Mamba without its scan; the scans alone).
Both forms always run with the same number of torch threads (--threads, default torch's own
choice: all cores). With one thread the times are CPU seconds of this process
(time.process_time), which on a machine shared with other jobs measure the work done rather than
the waiting; with more threads CPU seconds add up over threads, so the times are wall seconds
(then run it on an idle machine). Both clocks are recorded.
Figures go to out/bench/scan.json (results/bench/scan.json, the committed ones, with --save); the last line
printed is a one-line summary.
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from seqlab.core import bench  # noqa: E402
from seqlab.hybrid import mamba_cpu, scan  # noqa: E402
from seqlab.hybrid.model import DEFAULT_LAYOUT, HybridConfig, HybridLM  # noqa: E402

B, T, D = 8, 256, 256          # D = n_embd; Mamba's scan runs at 2 D
CLOCKS = ("CPU", "wall")


def rwkv_inputs(g):
    H, K = 4, D // 4
    r, k, v = (torch.randn(B, T, H, K, generator=g) * 0.5 for _ in range(3))
    logw = -torch.exp(torch.randn(B, T, H, K, generator=g) - 2)
    u = torch.randn(H, K, generator=g) * 0.5
    return [t.requires_grad_() for t in (r, k, v, logw, u)]


def mamba_inputs(g, N=16, D=2 * D):
    x = torch.randn(B, T, D, generator=g)
    dt = torch.nn.functional.softplus(torch.randn(B, T, D, generator=g) - 3)
    A = -torch.arange(1, N + 1, dtype=torch.float32).repeat(D, 1)
    Bm, Cm = torch.randn(B, T, N, generator=g), torch.randn(B, T, N, generator=g)
    return [t.requires_grad_() for t in (x, dt, A, Bm, Cm)]


def fwd_bwd_seconds(fn, inputs):
    """(CPU seconds, wall seconds) of forward + backward of sum(y^2) + sum(state^2)."""
    for t in inputs:
        t.grad = None
    c0, w0 = time.process_time(), time.perf_counter()
    y, s = fn(*inputs)
    (y.square().sum() + s.square().sum()).backward()
    return time.process_time() - c0, time.perf_counter() - w0


def compare(name, seq, chunked, inputs, repeats, clock):
    with torch.no_grad():
        diff = float((seq(*inputs)[0] - chunked(*inputs)[0]).abs().max())
    seq_t, chk_t = [], []
    for _ in range(repeats):          # interleaved, so machine noise hits both alike
        seq_t.append(fwd_bwd_seconds(seq, inputs))
        chk_t.append(fwd_bwd_seconds(chunked, inputs))
    t_seq, t_chk = (min(ts, key=lambda t: t[clock]) for ts in (seq_t, chk_t))   # best run on the chosen clock
    print(f"(a) {name}: sequential {t_seq[clock] * 1e3:.1f} ms, chunked {t_chk[clock] * 1e3:.1f} ms "
          f"{CLOCKS[clock]} fwd+bwd -> {t_seq[clock] / t_chk[clock]:.2f}x; max |diff| {diff:.2e}")
    return t_seq, t_chk, diff


def train_tokens_per_s(layouts, steps, clock, context=256, batch=8, compiled=False):
    """[(training tokens/s, params)] of each layout. The models take their steps in turn (hybrid,
    attention, hybrid, ...) so that both see the same machine: timed one after the other, a drift of
    the machine's speed over the minutes between them moved the ratio by 0.1. Best step of each."""
    runs = []
    for layout in layouts:
        torch.manual_seed(0)
        cfg = HybridConfig(context=context, layout=layout, pos_emb=set(layout) == {"A"})
        model = HybridLM(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        runs.append((model, opt, torch.compile(model) if compiled else model))   # as train_hybrid.py --compile does
    x = torch.randint(0, HybridConfig.vocab_size, (batch, context))
    times = [[] for _ in runs]
    for i in range(steps + 1 + compiled):        # the first step warms up allocators (compiled: two, they compile)
        for (model, opt, run), t in zip(runs, times):
            t0 = (time.process_time, time.perf_counter)[clock]()
            loss = run(x, targets=x)[2]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            t.append((time.process_time, time.perf_counter)[clock]() - t0)
    return [(batch * context / min(t[1 + compiled:]), sum(p.numel() for p in m.parameters()))
            for (m, _, _), t in zip(runs, times)]


def layer_profile(clock, repeats=3):
    """Forward+backward ms (best of `repeats`, loss mean(y^2)) of one layer of each kind of the default
    hybrid and of its parts, on a (8, 256, 256) input: where a hybrid training step spends its time."""
    import torch.nn.functional as F
    from seqlab.hybrid.mamba import causal_conv
    torch.manual_seed(0)
    m = HybridLM(HybridConfig(context=T))
    R, M, A = (m.layers[DEFAULT_LAYOUT.index(k)] for k in "RMA")
    x = torch.randn(B, T, D, requires_grad=True)

    def ms(fn):
        best = []
        for _ in range(repeats):
            x.grad = None
            c0, w0 = time.process_time(), time.perf_counter()
            fn(x).square().mean().backward()
            best.append((time.process_time() - c0, time.perf_counter() - w0)[clock])
        return min(best) * 1e3

    def ddlerp(x):
        zs = R.att.mixes(x, torch.cat([x[:, :1] * 0, x[:, :-1]], 1) - x)
        return sum(zs) + R.att.log_retention(zs[3])

    def mamba_without_scan(u):
        mx = M.mixer
        xx, z = mx.in_proj(u).chunk(2, -1)
        xx = F.silu(causal_conv(xx, u.new_zeros(B, mx.D, 3), mx.conv_weight, mx.conv_bias, None)[0])
        dt, Bm, Cm = mx.selection(xx)
        return mx.out_proj((xx * dt + Bm.sum(-1, keepdim=True) + Cm.sum(-1, keepdim=True)) * F.silu(z))

    s = lambda layer: layer.init_state(B, "cpu")
    out = {"R_layer": ms(lambda x: R.delta(x, s(R))[0]), "R_time_mix": ms(lambda x: R.att(R.ln1(x), s(R)[:2])[0]),
           "R_ddlerp_and_decay_lora": ms(ddlerp), "R_channel_mix": ms(lambda x: R.ffn(R.ln2(x), s(R)[2])[0]),
           "M_layer": ms(lambda x: M.delta(x, s(M))[0]), "M_without_scan": ms(mamba_without_scan),
           "A_layer": ms(lambda x: A.delta(x, s(A))[0])}
    g = torch.Generator().manual_seed(1)
    ri, mi = rwkv_inputs(g), mamba_inputs(g)
    out["rwkv_scan"] = min(fwd_bwd_seconds(scan.rwkv_chunked, ri)[clock] for _ in range(repeats)) * 1e3
    out["mamba_scan"] = min(fwd_bwd_seconds(scan.mamba_chunked, mi)[clock] for _ in range(repeats)) * 1e3
    n = {k: DEFAULT_LAYOUT.count(k) for k in "RMA"}
    out["step_estimate"] = sum(n[k] * out[f"{k}_layer"] for k in "RMA")
    out["scan_share_of_layers"] = (n["R"] * out["rwkv_scan"] + n["M"] * out["mamba_scan"]) / out["step_estimate"]
    print("(c) fwd+bwd ms per layer: " + ", ".join(f"{k} {v:.1f}" for k, v in out.items() if k != "scan_share_of_layers")
          + f"; scans {out['scan_share_of_layers']:.0%} of the layers' time")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all cores)")
    p.add_argument("--repeats", type=int, default=6)
    bench.add_save_flag(p)
    p.add_argument("--model-steps", type=int, default=3, help="timed training steps per model in (b)")
    p.add_argument("--compiled", action="store_true",
                   help="also (b) under torch.compile (inductor), key hybrid_vs_attention_compiled: a longer study, "
                        "the compile takes minutes on 2 cores")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    clock = 0 if args.threads == 1 else 1
    g = torch.Generator().manual_seed(0)
    res = {"device": "cpu", "threads": args.threads, "torch": str(torch.__version__),
           "time_basis": ("CPU seconds of this process (time.process_time)" if clock == 0 else
                          "wall seconds (time.perf_counter); more than one thread") + "; *_ms_cpu_wall give both",
           "shape": {"batch": B, "T": T, "d": D, "rwkv_heads": 4, "mamba_channels": 2 * D, "mamba_d_state": 16,
                     "chunk": 16, "mamba_block": 8},
           "rwkv_reference": "rwkv_sequential with the lean step y = r^T S + (r . u k) v"}
    ri, mi = rwkv_inputs(g), mamba_inputs(g)
    for name, seq, chunked, inputs in (("rwkv", scan.rwkv_sequential, scan.rwkv_chunked, ri),
                                       ("mamba", scan.mamba_sequential, scan.mamba_chunked, mi)):
        ts, tc, diff = compare(f"{'RWKV' if name == 'rwkv' else 'Mamba':5s}", seq, chunked, inputs, args.repeats, clock)
        res.update({f"{name}_sequential_ms": ts[clock] * 1e3, f"{name}_chunked_ms": tc[clock] * 1e3,
                    f"{name}_speedup": ts[clock] / tc[clock], f"{name}_max_diff": diff,
                    f"{name}_sequential_ms_cpu_wall": [ts[0] * 1e3, ts[1] * 1e3],
                    f"{name}_chunked_ms_cpu_wall": [tc[0] * 1e3, tc[1] * 1e3]})
    res["mamba_backend"] = "C++ (seqlab.hybrid.mamba_cpu)" if mamba_cpu.available() else f"torch ({mamba_cpu.REASON})"
    blocked = lambda *a: scan._MambaBlocked.apply(*a, torch.zeros(B, a[0].shape[2], a[2].shape[1]), None, 8)
    res["mamba_blocked_torch_ms"] = min(fwd_bwd_seconds(blocked, mi)[clock] for _ in range(args.repeats)) * 1e3
    print(f"    Mamba backend {res['mamba_backend']}; pure-PyTorch blocked form {res['mamba_blocked_torch_ms']:.1f} ms")
    for name, fn, inputs in (("rwkv", scan.rwkv_chunked_autograd, ri), ("mamba", scan.mamba_chunked_autograd, mi)):
        res[f"{name}_chunked_autograd_ms"] = min(fwd_bwd_seconds(fn, inputs)[clock] for _ in range(2)) * 1e3
    print(f"    autograd-recorded chunked forms (before the hand-written backward): RWKV "
          f"{res['rwkv_chunked_autograd_ms']:.1f} ms, Mamba {res['mamba_chunked_autograd_ms']:.1f} ms {CLOCKS[clock]}")

    (hyb, n_hyb), (att, n_att) = train_tokens_per_s((DEFAULT_LAYOUT, "A" * 12), args.model_steps, clock)
    print(f"(b) training tokens per {CLOCKS[clock]} second, 12 x 256, context 256, batch 8: hybrid {DEFAULT_LAYOUT} "
          f"{hyb:,.0f} ({n_hyb / 1e6:.2f}M params) vs attention-only {att:,.0f} ({n_att / 1e6:.2f}M params)")
    res.update(hybrid_tokens_per_s=hyb, attention_tokens_per_s=att, hybrid_params=n_hyb, attention_params=n_att,
               hybrid_layout=DEFAULT_LAYOUT, hybrid_vs_attention=hyb / att, hybrid_vs_attention_target=0.8)
    print(f"    hybrid_vs_attention = {hyb / att:.2f} (target 0.8)")
    if args.compiled:
        (hc, _), (ac, _) = train_tokens_per_s((DEFAULT_LAYOUT, "A" * 12), args.model_steps, clock, compiled=True)
        res.update(hybrid_tokens_per_s_compiled=hc, attention_tokens_per_s_compiled=ac, hybrid_vs_attention_compiled=hc / ac)
        print(f"    under torch.compile: hybrid {hc:,.0f} vs attention-only {ac:,.0f} tokens/s, "
              f"hybrid_vs_attention_compiled = {hc / ac:.2f}")
    res["profile_ms"] = layer_profile(clock)
    rd, md = res["rwkv_max_diff"], res["mamba_max_diff"]
    written = bench.write("scan", res, args.save)
    print(f"bench_scan ({args.threads} thread{'s' * (args.threads > 1)}): RWKV chunked {res['rwkv_speedup']:.1f}x "
          f"(max diff {rd:.1e}), Mamba chunked "
          f"{res['mamba_speedup']:.1f}x (max diff {md:.1e}) vs sequential | hybrid {hyb:,.0f} vs attention "
          f"{att:,.0f} tokens/s -> {written}")


if __name__ == "__main__":
    main()
