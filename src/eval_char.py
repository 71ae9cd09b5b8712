"""Evaluate a char-transformer checkpoint: loss, bits per char, perplexity; and generate text.

    python src/eval_char.py --ckpt out/char_base/best.pt --output-dir results/char_base
    python src/eval_char.py --ckpt checkpoints/char_best.pt --prompt "ROMEO:" --top-k 20

Writes eval.json and sample.txt to --output-dir; when the checkpoint sits in a run folder,
also that run's loss curve (loss_curve.png).
"""
import torch

from seqlab.core import checkpoint, cli, paths, runs
from seqlab.text import data as text_data
from seqlab.text.task import evaluate_split, sample
from seqlab.core.errors import UserError


def main(argv=None):
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint (best.pt / last.pt / checkpoints/*.pt)")
    p.add_argument("--data-dir", default=None, help="prepared text folder (default: the one the run trained on)")
    p.add_argument("--output-dir", default=None, help="where eval.json, sample.txt, loss_curve.png go")
    p.add_argument("--split", choices=["val", "train"], default="val")
    p.add_argument("--batch-size", type=cli.positive_int, default=32)
    p.add_argument("--prompt", default="The ")
    p.add_argument("--temperature", type=cli.positive_float, default=1.0)
    p.add_argument("--top-k", type=cli.positive_int, default=None, help="sample from the k most likely chars (default: all)")
    p.add_argument("--max-new-tokens", type=cli.nonneg_int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    model, ckpt, data_dir = checkpoint.open_for_eval(args.ckpt, "char", args.device, args.data_dir)
    ids = text_data.load_split(data_dir, args.split)
    context = model.config.context
    if len(ids) < context + 1:
        raise UserError(f"{args.split} split of {data_dir} has {len(ids)} tokens, fewer than the model context {context} + 1")
    with torch.no_grad():
        metrics = evaluate_split(model, ids, context, args.batch_size)
    metrics = {k.replace("val_", f"{args.split}_"): v for k, v in metrics.items()}
    text = sample(model, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.seed) if args.max_new_tokens else ""
    m = ckpt["manifest"]
    row = {"ckpt": paths.shown(args.ckpt), "data_dir": paths.shown(data_dir), "split": args.split, "step": ckpt["step"], **metrics,
           "run_id": m["run_id"], "git_commit": m["git_commit"], "config_hash": m["config_hash"], "hook_list": m["hook_list"]}
    print(f"{args.split}: loss {metrics[f'{args.split}_loss']:.4f} nats/char | {metrics[f'{args.split}_bpc']:.4f} bits/char | "
          f"perplexity {metrics[f'{args.split}_ppl']:.3f} | {metrics[f'{args.split}_tokens']:,} chars scored "
          f"(step {ckpt['step']}, run {m['run_id']})")
    print(f"--- sample (prompt {args.prompt!r}, T={args.temperature}, top_k={args.top_k}) ---\n{args.prompt}{text}\n---")
    if args.output_dir:
        runs.write_eval(args.output_dir, args.ckpt, row, args.prompt + text + "\n")
    return row


if __name__ == "__main__":
    cli.run(main)
