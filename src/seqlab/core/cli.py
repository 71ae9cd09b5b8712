"""Argparse pieces every script shares: flag names, numeric validation, the error wrapper."""
import argparse
import sys

from seqlab.core.errors import UserError


def positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def nonneg_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def nonneg_float(text):
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def fraction(text):
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (no usage dump) and exits with 2.

    parse_args also records which flags were given explicitly (`args._explicit`), so that
    --resume can tell "not given: use the run's value" from "given: the user changes it".
    """

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        ns = super().parse_args(args, namespace)
        defaults, parser_defaults = [(a, a.default) for a in self._actions], self._defaults
        try:  # parse again with every default suppressed (set_defaults ones too, e.g. a --preset's)
            for a, _ in defaults:
                a.default = argparse.SUPPRESS
            self._defaults = {}
            ns._explicit = set(vars(super().parse_args(args))) - {"help"}
        finally:
            for a, d in defaults:
                a.default = d
            self._defaults = parser_defaults
        return ns


def add_train_args(p, *, max_steps, eval_every, batch_size, lr, n_layer, n_head, n_embd):
    """The flags every train script shares, with the family's defaults."""
    g = p.add_argument_group("run")
    g.add_argument("--data-dir", default=None, help="prepared dataset folder (required for a new run; --resume uses the run's own)")
    g.add_argument("--out-dir", required=True, help="run folder (out/<name>): config.json, metrics.jsonl, train.log, best.pt, last.pt")
    g.add_argument("--seed", type=int, default=1337)
    g.add_argument("--resume", action="store_true", help="continue the run in --out-dir from its last.pt, with its own flags "
                   "(`--out-dir X --resume` alone is enough)")
    g.add_argument("--overwrite", action="store_true", help="replace the run already in --out-dir")
    g.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    amp = g.add_mutually_exclusive_group()
    amp.add_argument("--use-amp", dest="amp", action="store_true", default=None,
                     help="mixed precision (default: on for CUDA, off elsewhere)")
    amp.add_argument("--no-amp", dest="amp", action="store_false", help="full precision")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--gpu-price", type=nonneg_float, default=None,
                   help="$/hr for the end-of-run cost estimate (default: the table in seqlab/core/prices.py)")
    g.add_argument("--hook", dest="hooks", action="append", default=[], metavar="NAME[:k=v,...]",
                   help="enable a hook (repeatable); see seqlab/core/hooks.py for the registry")
    g.add_argument("--tensorboard", action="store_true",
                   help="also write the logged scalars to <out-dir>/tb/ (needs the optional tensorboard package)")

    g = p.add_argument_group("optimisation")
    g.add_argument("--max-steps", type=positive_int, default=max_steps)
    g.add_argument("--eval-every", type=positive_int, default=eval_every)
    g.add_argument("--log-every", type=positive_int, default=10, help="train-loss rows in metrics.jsonl every N steps")
    g.add_argument("--save-every", type=nonneg_int, default=0,
                   help="also write ckpt_<step>.pt every N steps (0: never); same format as last.pt")
    g.add_argument("--keep-last", type=nonneg_int, default=0, help="keep only the newest K ckpt_<step>.pt (0: all)")
    g.add_argument("--batch-size", type=positive_int, default=batch_size, help="per micro-batch (and per rank under torchrun)")
    g.add_argument("--grad-accum", type=positive_int, default=1,
                   help="micro-batches per optimizer step: the effective batch is batch-size x grad-accum (x ranks)")
    g.add_argument("--lr", type=positive_float, default=lr)
    g.add_argument("--weight-decay", type=nonneg_float, default=0.1)
    g.add_argument("--beta1", type=fraction, default=0.9)
    g.add_argument("--beta2", type=fraction, default=0.95)
    g.add_argument("--grad-clip", type=nonneg_float, default=1.0, help="max global grad norm (0: off)")
    g.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                   help="constant LR, or linear warmup then cosine decay to --min-lr")
    g.add_argument("--warmup", type=nonneg_int, default=0, help="warmup steps")
    g.add_argument("--min-lr", type=nonneg_float, default=None, help="cosine floor (default lr/10)")
    g.add_argument("--early-stop", action="store_true", help="stop when the val metric has not improved for --patience steps")
    g.add_argument("--patience", type=positive_int, default=2000, help="early-stop patience, in steps (not evals)")
    g.add_argument("--plateau-patience", type=nonneg_int, default=None,
                   help="steps without improvement that count as a plateau (default 10 evals; 0: off)")
    g.add_argument("--plateau-lr-factor", type=fraction, default=None,
                   help="multiply the LR by this at each plateau (default: only report it)")

    g = p.add_argument_group("model size")
    g.add_argument("--n-layer", type=positive_int, default=n_layer)
    g.add_argument("--n-head", type=positive_int, default=n_head)
    g.add_argument("--n-embd", type=positive_int, default=n_embd)
    return p


def add_eval_args(p, data_help="data folder (default: the one the run trained on)", ckpt_required=True):
    """The flags every eval / diagnose script shares: --ckpt --data-dir --output-dir --device."""
    p.add_argument("--ckpt", required=ckpt_required, default=None)
    p.add_argument("--data-dir", default=None, help=data_help)
    p.add_argument("--output-dir", default=None)
    p.add_argument("--device", default="cpu")


def add_track_args(p):
    """Hybrid evals: parallel val tracks and how many chunks each streams."""
    p.add_argument("--batch-size", type=positive_int, default=8, help="parallel val tracks")
    p.add_argument("--eval-chunks", type=nonneg_int, default=0, help="val chunks per track (0: the whole split)")


def run(main):
    """Call main(); a UserError becomes one line on stderr and exit status 2."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except FloatingPointError as e:
        print(f"error: training diverged: {e}", file=sys.stderr)
        sys.exit(3)
