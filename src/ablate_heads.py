"""Remove each attention head of an MDN checkpoint and measure the NLL it costs; prune by magnitude.

    python src/ablate_heads.py --ckpt checkpoints/E0_count32_cpu8k_best.pt --data-dir data/continuous_2M \
        --output-dir results/telescope_E0_count32_cpu8k

On --max-windows val windows (evenly spaced; 0 = all), at the model's scored positions: Delta NLL
(nats per spacing) of zeroing each head's output before the output projection, with a paired 95%
bootstrap interval over windows; and the NLL after zeroing the smallest-|w| share of each layer type's
weights (attn.qkv, attn.proj, mlp.fc, mlp.proj, all). Definitions: src/seqlab/mdn/ablation.py.
Writes heads.json and heads.png.
"""
import json
from pathlib import Path

import numpy as np
import torch

from seqlab.core import checkpoint, cli, paths
from seqlab.core.errors import UserError
from seqlab.mdn import ablation, evaluate as mdn_eval, heights
from seqlab.mdn.task import FAMILIES
from seqlab.zeta import spacings as spacing_data


def main(argv=None):
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="an MDN checkpoint (E0, PREFIX or POSTFIX)")
    p.add_argument("--data-dir", default=None, help="spacing dataset (default: the one the run trained on)")
    p.add_argument("--output-dir", default=None, help="where heads.json / heads.png go (default: print only)")
    p.add_argument("--max-windows", type=cli.nonneg_int, default=0, help="val windows used, evenly spaced (0: all)")
    p.add_argument("--fractions", default="0,0.1,0.2,0.3,0.5,0.7,0.9", help="pruned shares of the pruning curve")
    p.add_argument("--n-boot", type=cli.positive_int, default=1000)
    p.add_argument("--batch-size", type=cli.positive_int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    fractions = _floats(args.fractions)
    model, ckpt, data_dir = checkpoint.open_for_eval(args.ckpt, FAMILIES, args.device, args.data_dir)
    val = spacing_data.load_split(data_dir, "val")
    wins = mdn_eval.windows(val, model.config.context + 1)
    model, _ = heights.readable(model, spacing_data.load_meta(data_dir), np.arange(val.numel()))
    if args.max_windows:
        wins = wins[np.linspace(0, len(wins) - 1, min(args.max_windows, len(wins))).astype(int)]
    torch.manual_seed(args.seed)
    rep = ablation.head_ablation(model, wins, args.batch_size, args.n_boot, args.seed)
    rep["pruning"] = ablation.magnitude_pruning(model, wins, fractions, batch_size=args.batch_size)
    rep.update({"ckpt": paths.shown(args.ckpt), "step": ckpt["step"], "family": ckpt["family"],
                "data_dir": paths.shown(data_dir), "n_windows": len(wins),
                "positions": mdn_eval.describe_positions(model.scored_positions(wins.size(1) - 1), wins.size(1) - 1)})
    print(f"{rep['ckpt']} step {rep['step']}: base NLL {rep['base_nll']:.4f} nats/spacing on {len(wins)} val windows, "
          f"positions {rep['positions']}")
    for r in rep["heads"]:
        print(f"  layer {r['layer']} head {r['head']}: Delta NLL {r['delta']:+.4f} [{r['lo']:+.4f}, {r['hi']:+.4f}]")
    for kind, curve in rep["pruning"].items():
        print(f"  prune {kind:>9}: " + "  ".join(f"{c['fraction']:.1f}->{c['nll']:.4f}" for c in curve))
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "heads.json").write_text(json.dumps(rep, indent=1))
        ablation.plot(rep, out / "heads.png", f"{rep['ckpt']} step {rep['step']}: {len(wins)} val windows")
        print(f"wrote {out / 'heads.json'}, {out / 'heads.png'}")
    return rep


def _floats(text):
    try:
        vals = [float(v) for v in text.split(",") if v]
    except ValueError:
        raise UserError(f"--fractions must be comma-separated numbers in [0, 1), got {text!r}") from None
    if not vals or any(not 0 <= v < 1 for v in vals):
        raise UserError(f"--fractions must be comma-separated numbers in [0, 1), got {text!r}")
    return vals


if __name__ == "__main__":
    cli.run(main)
