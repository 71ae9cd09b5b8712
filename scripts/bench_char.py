"""Benchmark of family 1: engine overhead, throughput, and (behind --shakespeare) quality.

    python scripts/bench_char.py                 # (a) + (b), under 2 minutes on 2 CPU cores
    python scripts/bench_char.py --shakespeare   # + (c): 2000 steps on Tiny Shakespeare (~3 min)

(a) steps/s of the whole engine (train_char.py's main: logging, metrics.jsonl, one eval and the
    checkpoint writes included) against a bare forward/backward/clip/step loop on the same
    model, data and batches, measured in the same run: the ratio should be close to 1.
(b) training tokens/s through the engine at the decision-log config (4x256, d_ff 1024, context
    256, batch 16) and at the small CPU config (4x128, context 64, batch 12).
(c) nanoGPT's CPU Shakespeare setting (4x128, context 64, batch 12, lr 1e-3 cosine to 1e-4,
    warmup 100, beta2 0.99, windows at every offset, 2000 steps, dropout 0, 90/10 split): the
    val loss reached on the whole val split.
Figures go to out/bench/char.json (results/bench/char.json, the committed ones, with --save); the last line
printed is a one-line summary.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

import train_char  # noqa: E402
from seqlab.core import bench, engine  # noqa: E402
from seqlab.text import data as text_data  # noqa: E402
from seqlab.text.model import CharConfig, CharTransformer  # noqa: E402

SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
SMALL = dict(n_layer=4, n_head=4, n_embd=128, context=64, batch=12)
DECISION_LOG = dict(n_layer=4, n_head=4, n_embd=256, context=256, batch=16)


def engine_run(data_dir, out, cfg, steps, *extra):
    argv = ["--data-dir", str(data_dir), "--out-dir", str(out), "--max-steps", str(steps), "--eval-every", str(steps),
            "--n-layer", str(cfg["n_layer"]), "--n-head", str(cfg["n_head"]), "--n-embd", str(cfg["n_embd"]),
            "--context", str(cfg["context"]), "--batch-size", str(cfg["batch"]), "--device", "cpu", *extra]
    return train_char.main(argv)


def bare_loop(data_dir, cfg, steps, seed=1337, dropout=0.1, lr=3e-4):
    """The reference: the same model and batches, nothing but forward/backward/clip/step."""
    engine.seed_everything(seed)
    model = CharTransformer(CharConfig(context=cfg["context"], n_layer=cfg["n_layer"], n_head=cfg["n_head"],
                                       n_embd=cfg["n_embd"], d_ff=4 * cfg["n_embd"], dropout=dropout))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    sampler = text_data.WindowSampler(text_data.load_split(data_dir, "train"), cfg["context"], cfg["batch"], seed)
    model.train()
    t0 = time.time()
    for _ in range(steps):
        x, y = sampler.next_batch()
        loss = model(x, y)[1]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps / (time.time() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shakespeare", action="store_true", help="also run (c), about 3 minutes")
    p.add_argument("--steps", type=int, default=300, help="steps for (a) and the small config of (b)")
    bench.add_save_flag(p)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_char_"))
    data = tmp / "pydoc"
    text_data.prepare(text_data.default_corpus(), data, source="embedded pydoc")
    result = {"device": "cpu", "threads": torch.get_num_threads(), "torch": str(torch.__version__)}

    # (a) engine overhead, interleaved twice to average out machine noise
    bare, eng = [], []
    for i in range(2):
        bare.append(bare_loop(data, SMALL, args.steps))
        s = engine_run(data, tmp / f"a{i}", SMALL, args.steps, "--eval-windows", "32", "--sample-tokens", "0")
        eng.append(s["steps_per_s"])
    bare_rate, eng_rate = max(bare), max(eng)
    result["engine_overhead"] = {"config": SMALL, "steps": args.steps, "bare_steps_per_s": bare_rate,
                                 "engine_steps_per_s": eng_rate, "ratio": eng_rate / bare_rate}
    print(f"(a) engine {eng_rate:.2f} steps/s vs bare loop {bare_rate:.2f} steps/s: ratio {eng_rate / bare_rate:.3f}")

    # (b) tokens/s through the engine
    tput = {}
    for name, cfg, steps in [("small_cpu", SMALL, args.steps), ("decision_log", DECISION_LOG, 20)]:
        s = engine_run(data, tmp / f"b_{name}", cfg, steps, "--eval-windows", "8", "--sample-tokens", "0")
        tput[name] = {"config": cfg, "steps_per_s": s["steps_per_s"], "tokens_per_s": s["steps_per_s"] * cfg["batch"] * cfg["context"]}
        print(f"(b) {name}: {tput[name]['tokens_per_s']:,.0f} tokens/s ({s['steps_per_s']:.2f} steps/s)")
    result["throughput"] = tput

    summary = (f"engine/bare {result['engine_overhead']['ratio']:.3f} | "
               f"{tput['small_cpu']['tokens_per_s']:,.0f} tok/s small, {tput['decision_log']['tokens_per_s']:,.0f} tok/s decision-log")
    if args.shakespeare:
        if not SHAKESPEARE.is_file():
            print(f"(c) skipped: {SHAKESPEARE} not found")
        else:
            shk = tmp / "shakespeare"
            text_data.prepare(text_data.read_utf8(SHAKESPEARE), shk, val_fraction=0.1, source=str(SHAKESPEARE))
            t0 = time.time()
            s = engine_run(shk, tmp / "c", SMALL, 2000, "--eval-every", "500", "--dropout", "0", "--lr", "1e-3",
                           "--schedule", "cosine", "--warmup", "100", "--min-lr", "1e-4", "--sample-tokens", "0",
                           "--stride", "1", "--beta2", "0.99")
            result["shakespeare"] = {"config": SMALL, "steps": 2000, "lr": "1e-3 cosine -> 1e-4, warmup 100",
                                     "windows": "every offset (stride 1), as nanoGPT's random crops", "beta2": 0.99,
                                     "val_loss": s["best"], "best_step": s["best_step"], "wall_s": time.time() - t0,
                                     "nanogpt_reference": 1.88}
            print(f"(c) Tiny Shakespeare val loss {s['best']:.4f} at step {s['best_step']} (nanoGPT: about 1.88)")
            summary += f" | shakespeare val {s['best']:.4f} (nanoGPT 1.88)"
    prev = bench.previous("char")
    if "shakespeare" in prev and "shakespeare" not in result:
        result["shakespeare"] = prev["shakespeare"]  # keep the last long-study figure
    print(f"bench_char: {summary} -> {bench.write('char', result, args.save)}")


if __name__ == "__main__":
    main()
