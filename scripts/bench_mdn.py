"""Benchmark of family 2 (SpacingMDN E0): training speed and the data loader's share of a step.

    python scripts/bench_mdn.py          # under 2 minutes on 2 CPU cores
    python scripts/bench_mdn.py --full   # + one real step of the GPU default at batch 512 (minutes on CPU)

(a) steps/s of the whole engine (train_mdn.py's main: logging, metrics.jsonl, one eval and the
    checkpoint writes included) at --preset cpu, against a bare forward/backward/clip/step loop
    on the same model and batches, measured in the same run.
(b) the data loader's share of step time: time in StreamSampler.next_batch (sliding windows over
    the flattened train stream) over total step time, in the bare loop. Target: under 5%.
(c) the GPU default model (6x256, 8 heads, K=8) on this CPU: steps/s at batch 16, and the batch-512
    step time extrapolated linearly in batch size (--full measures it).
Data: 500k i.i.d. Wigner-surmise spacings generated in a temp folder (speed does not depend on
the values). Figures go to out/bench/mdn.json (results/bench/mdn.json, the committed ones, with --save);
the last line printed is a one-line summary.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import train_mdn  # noqa: E402
from seqlab.core import bench, engine  # noqa: E402
from seqlab.zeta import rmt, spacings as spacing_data  # noqa: E402
from seqlab.mdn.task import PRESETS, StreamSampler  # noqa: E402
from seqlab.mdn.model import MDNConfig, SpacingMDN  # noqa: E402

GPU = dict(n_layer=6, n_head=8, n_embd=256)


def make_data(d, n=500_000):
    s = rmt.wigner_sample(n, np.random.default_rng(0))
    train, val = spacing_data.to_windows(s, 256, 0.02)
    spacing_data.write(d, train, val, {"source": "bench: i.i.d. Wigner surmise"})
    return d


def bare_loop(data_dir, size, batch, steps, lr=1e-3, seed=7):
    """Forward/backward/clip/step on StreamSampler batches; returns (steps/s, loader share of time)."""
    engine.seed_everything(seed)
    model = SpacingMDN(MDNConfig(context=255, d_ff=4 * size["n_embd"], **size))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    sampler = StreamSampler(spacing_data.load_split(data_dir, "train").flatten(), 256, batch, seed)
    model.train()
    t_load = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        t1 = time.perf_counter()
        x, y = sampler.next_batch()
        t_load += time.perf_counter() - t1
        loss, _ = model.loss(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    total = time.perf_counter() - t0
    return steps / total, t_load / total


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=12, help="timed steps per measurement")
    p.add_argument("--full", action="store_true", help="also time one GPU-default step at batch 512")
    bench.add_save_flag(p)
    args = p.parse_args()
    cpu = {k: PRESETS["cpu"][k] for k in ("n_layer", "n_head", "n_embd")}
    res = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "wigner")
        bare_loop(data, cpu, PRESETS["cpu"]["batch_size"], 2)  # warm-up
        bare_sps, share = bare_loop(data, cpu, PRESETS["cpu"]["batch_size"], args.steps)
        t0 = time.perf_counter()
        summary = train_mdn.main(["--data-dir", str(data), "--out-dir", str(Path(tmp) / "run"), "--preset", "cpu",
                                  "--max-steps", str(args.steps), "--eval-every", str(args.steps), "--device", "cpu"])
        res["cpu_preset"] = {"config": {**cpu, "batch": PRESETS["cpu"]["batch_size"], "context": 255},
                             "engine_steps_per_s": summary["steps_per_s"], "bare_steps_per_s": bare_sps,
                             "engine_over_bare": summary["steps_per_s"] / bare_sps,
                             "engine_wall_s_incl_eval_and_checkpoints": time.perf_counter() - t0,
                             "loader_share": share, "loader_share_target": 0.05}
        gpu_sps, gpu_share = bare_loop(data, GPU, 16, 2)
        res["gpu_default_on_cpu"] = {"config": {**GPU, "context": 255}, "batch16_steps_per_s": gpu_sps,
                                     "batch16_loader_share": gpu_share,
                                     "batch512_step_s_extrapolated": 512 / 16 / gpu_sps}
        if args.full:
            sps, sh = bare_loop(data, GPU, 512, 1)
            res["gpu_default_on_cpu"].update(batch512_step_s_measured=1 / sps, batch512_loader_share=sh)
    written = bench.write("mdn", res, args.save)
    c, g = res["cpu_preset"], res["gpu_default_on_cpu"]
    print(json.dumps(res, indent=2))
    print(f"E0 --preset cpu: {c['engine_steps_per_s']:.2f} steps/s through the engine ({c['engine_over_bare']:.2f}x bare loop), "
          f"loader {100 * c['loader_share']:.2f}% of step time (target < 5%) | GPU default on CPU: "
          f"{g['batch16_steps_per_s']:.2f} steps/s at batch 16, ~{g['batch512_step_s_extrapolated']:.0f} s per batch-512 step -> {written}")


if __name__ == "__main__":
    main()
