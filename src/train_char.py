"""Train the char-level transformer (family 1) on a folder made by scripts/prepare_text.py.

    python src/train_char.py --data-dir data/pydoc --out-dir out/char_base

Defaults are the decision log's: 4 layers, d_model 256, 4 heads, d_ff 1024, dropout 0.1,
context 256, batch 16, AdamW 3e-4 / wd 0.1 / betas (0.9, 0.95), constant LR, eval every
200 steps with a sample from a fixed prompt at temperature 1.0.
"""
from seqlab.core import cli, distributed, engine
from seqlab.text.task import CharTask
from seqlab.core.errors import UserError
from seqlab.text.model import CharConfig, CharTransformer

FAMILY = "char"


def build_parser():
    p = cli.OneLineParser(description=__doc__, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    cli.add_train_args(p, max_steps=5000, eval_every=200, batch_size=16, lr=3e-4, n_layer=4, n_head=4, n_embd=256)
    g = p.add_argument_group("char model")
    g.add_argument("--context", type=cli.positive_int, default=256, help="tokens per window (windows do not overlap)")
    g.add_argument("--stride", type=cli.positive_int, default=None,
                   help="start a training window every N tokens (default: the context, i.e. non-overlapping)")
    g.add_argument("--d-ff", type=cli.positive_int, default=None, help="MLP width (default 4 x n_embd)")
    g.add_argument("--dropout", type=cli.nonneg_float, default=0.1)
    g.add_argument("--eval-windows", type=cli.nonneg_int, default=0,
                   help="score only the first N val windows (0: the whole val split)")
    g.add_argument("--prompt", default="The ", help="fixed prompt of the sample printed at each eval")
    g.add_argument("--sample-tokens", type=cli.nonneg_int, default=200, help="length of that sample (0: none)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    resume = engine.begin(args, FAMILY)
    if resume:
        config = CharConfig(**resume["model_config"])
    else:
        config = CharConfig(context=args.context, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                            d_ff=args.d_ff or 4 * args.n_embd, dropout=args.dropout)
        if config.n_embd % config.n_head:
            raise UserError(f"--n-embd {config.n_embd} must be divisible by --n-head {config.n_head}")
    task = CharTask(args.data_dir, config.context, args.batch_size, args.seed, args.eval_windows,
                    args.prompt, args.sample_tokens, *distributed.env_rank_world(), stride=args.stride)
    model = CharTransformer(config)
    return engine.fit(model, task, args, resume)


if __name__ == "__main__":
    cli.run(main)
