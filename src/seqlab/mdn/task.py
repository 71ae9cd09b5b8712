"""Family 2's task for the engine, and the flags/config/training story the three MDN trainers share.

Training samples are sliding windows over the flattened train stream: a window is T+1
consecutive spacings starting at any offset (about 1.8M distinct windows on the 2M set, not
the 7,035 stored rows). Validation scores the val split's windows, deterministically.
"""
import numpy as np
import torch

from seqlab.core import cli, distributed, engine, paths
from seqlab.mdn import evaluate as mdn_eval
from seqlab.zeta import spacings as spacing_data
from seqlab.core.errors import UserError

FAMILIES = ("mdn", "mdn_prefix", "mdn_postfix")

# The original GPU run (E0): 6 x 256, 8 heads, batch 512, lr 3e-4, warmup + cosine, 20k steps, eval every 500.
GPU_DEFAULTS = dict(max_steps=20000, eval_every=500, batch_size=512, lr=3e-4, n_layer=6, n_head=8, n_embd=256)
PRESETS = {
    "gpu": dict(GPU_DEFAULTS, warmup=500, schedule="cosine"),
    # small enough for a few thousand steps in ~15 minutes on a 2-core CPU
    "cpu": dict(max_steps=3000, eval_every=250, batch_size=32, lr=1e-3, n_layer=2, n_head=4, n_embd=64,
                warmup=100, schedule="cosine"),
}


class StreamSampler:
    """Batches of `length` consecutive values at random offsets of a 1-D stream.

    Batch i's offsets come from a generator seeded with (seed, i), so the only state is the
    number of batches served and resume is exact. Under torchrun every rank draws the same
    global batch of batch_size x world offsets and keeps its own slice.
    """

    def __init__(self, stream, length, batch_size, seed, rank=0, world=1):
        self.stream, self.length, self.batch_size, self.seed = stream, length, batch_size, seed
        self.rank, self.world = rank, world
        self.n_starts = len(stream) - length + 1
        if self.n_starts < 1:
            raise UserError(f"train split has {len(stream)} spacings, fewer than a window of {length}; "
                            "lower --context or use more zeros")
        self.offsets = torch.arange(length)
        self.served = 0

    def next_batch(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.served)
        starts = torch.randint(0, self.n_starts, (self.batch_size * self.world,), generator=g)
        starts = starts[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
        self.served += 1
        w = self.stream[starts[:, None] + self.offsets]   # (B, T+1)
        return w[:, :-1], w[:, 1:]                        # inputs s_0..s_{T-1}, next values s_1..s_T

    def state_dict(self):
        return {"served": self.served}

    def load_state_dict(self, state):
        self.served = int(state["served"])


class MDNTask:
    """Teacher-forced mixture NLL on stream windows; val_nll = mean NLL (nats per spacing) over the
    model's scored positions of the val windows (E0/PREFIX: every position; POSTFIX: the last)."""
    metric = "val_nll"

    def __init__(self, family, data_dir, context, batch_size, seed, val_stride=None, eval_batch_size=64, lr_mults=None,
                 train_fraction=None, train_heights=None):
        self.family, self.data_dir, self.context = family, data_dir, context
        train = spacing_data.load_split(data_dir, "train")
        val = spacing_data.load_split(data_dir, "val")
        full = train.flatten()  # stored rows are consecutive chunks of one sequence
        # the part of the train stream the sampler draws from (--train-fraction / --train-heights)
        self.meta = spacing_data.load_meta(data_dir)
        self.train_range = spacing_data.select_train(len(full), self.meta, train_fraction, train_heights)
        self.stream = full[self.train_range[0]:self.train_range[1]]
        self.sampler = StreamSampler(self.stream, context + 1, batch_size, seed, *distributed.env_rank_world())
        # memory models have parameters a configuration may leave unused (e.g. aux heads without
        # --use-aux-loss); DistributedDataParallel must be told
        self.find_unused_parameters = family != "mdn"
        self.val_stride = val_stride or context + 1
        self.val = mdn_eval.windows(val, context + 1, self.val_stride)
        self.eval_batch_size = eval_batch_size
        if lr_mults:
            self.lr_mults = lr_mults

    def prepare_model(self, model):
        """For a fresh model: z-scoring of the aux targets from 4,096 train windows (fixed draw)."""
        if hasattr(model, "aux_mean"):
            from seqlab.mdn.memory import window_stats
            g = torch.Generator().manual_seed(0)
            starts = torch.randint(0, self.sampler.n_starts, (4096,), generator=g)
            stats = window_stats(self.stream[starts[:, None] + torch.arange(self.context)])
            model.aux_mean.copy_(stats.mean(0))
            model.aux_std.copy_(stats.std(0).clamp_min(1e-6))

    def next_batch(self):
        return self.sampler.next_batch()

    def loss(self, model, batch):
        dev = next(model.parameters()).device
        x, y = (t.to(dev, non_blocking=True) for t in batch)
        core = getattr(model, "module", model)       # under torchrun: the model inside DDP
        core = getattr(core, "_orig_mod", core)      # under --compile, run the compiled forward inside the loss
        loss, self.last_parts = core.loss(x, y, step=self.sampler.served - 1, forward=model)
        return loss

    def on_eval(self, model, step, log, state):
        """Log the parts of the last training loss (nll, weight entropy, aux, ortho)."""
        parts = {k: float(v) for k, v in getattr(self, "last_parts", {}).items()}
        if parts:
            log.event("loss_parts", step=step, **parts)

    def evaluate(self, model):
        return mdn_eval.val_metrics(model, self.val, self.eval_batch_size)

    def state_dict(self):
        return self.sampler.state_dict()

    def load_state_dict(self, state):
        self.sampler.load_state_dict(state)

    def describe(self):
        lo, hi = self.train_range
        heights = {}
        if "gamma_min" in self.meta:
            t = spacing_data.height_of_count(int(self.meta.get("first_zero", 1)) + np.array([lo, hi - 1]))
            heights = {"train_heights": [round(float(t[0]), 3), round(float(t[1]), 3)]}
        return {"data_dir": paths.shown(self.data_dir), "n_train_spacings": len(self.stream),
                "train_range": [lo, hi], **heights,
                "train_windows": f"sliding: {self.sampler.n_starts} offsets of {self.context + 1} spacings",
                "n_val_windows": len(self.val), "val_stride": self.val_stride,
                "meta": self.meta}


# ---- what the three trainers share ------------------------------------------------------------
def build_parser(description, family):
    """Shared flags (cli.add_train_args with the original GPU defaults) + the MDN model flags."""
    p = cli.OneLineParser(description=description, formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    cli.add_train_args(p, **GPU_DEFAULTS)
    p.set_defaults(**PRESETS["gpu"])
    g = p.add_argument_group("SpacingMDN")
    g.add_argument("--preset", choices=sorted(PRESETS), default="gpu",
                   help="defaults for every flag you do not pass: gpu = the original (6x256, 8 heads, batch 512, "
                        "lr 3e-4, warmup 500 + cosine, 20k steps, eval every 500); cpu = 2x64, 4 heads, batch 32, "
                        "lr 1e-3, warmup 100 + cosine, 3k steps, eval every 250")
    g.add_argument("--context", type=cli.positive_int, default=255,
                   help="input spacings per window (255: a stored row of 256 = 255 inputs + the target)")
    g.add_argument("--n-components", type=cli.positive_int, default=8, help="K, Gaussian components of the head")
    g.add_argument("--entropy-reg", type=cli.nonneg_float, default=0.005,
                   help="loss -= this x entropy of the mixture weights (keeps components in use)")
    g.add_argument("--min-sigma", type=cli.positive_float, default=1e-3, help="floor of each component's std")
    g.add_argument("--d-ff", type=cli.positive_int, default=None, help="MLP width (default 4 x n_embd)")
    g.add_argument("--dropout", type=cli.nonneg_float, default=0.0)
    g.add_argument("--input-features", choices=["spacing", "spacing+count"], default="spacing",
                   help="spacing: s - 1 only; spacing+count: also the running sum of (s - 1) since the window start")
    g.add_argument("--count-window", type=cli.nonneg_int, default=0,
                   help="with spacing+count: sum over the last N spacings only (0: since the window start)")
    g.add_argument("--val-stride", type=cli.positive_int, default=None,
                   help="offset between val windows (default: context + 1 = the stored rows, no overlap)")
    g.add_argument("--eval-batch-size", type=cli.positive_int, default=64)
    g = p.add_argument_group("which train data")
    g.add_argument("--train-fraction", type=fraction_or_one, default=None, metavar="F",
                   help="train on the last F of the train stream only (the heights nearest val)")
    g.add_argument("--train-heights", type=height_range, default=None, metavar="LO:HI",
                   help="train on the spacings whose zeros lie at heights LO <= T < HI (either may be empty, "
                        "e.g. 9e5: for T >= 9e5)")
    return p


def fraction_or_one(text):
    value = float(text)
    if not 0 < value <= 1:
        raise cli.argparse.ArgumentTypeError(f"must lie in (0, 1], got {text}")
    return value


def height_range(text):
    """'LO:HI' -> (LO or None, HI or None), heights of zeta zeros (T)."""
    lo, sep, hi = text.partition(":")
    try:
        out = (float(lo) if lo else None, float(hi) if hi else None)
    except ValueError:
        out = None
    if not sep or out is None or out == (None, None) or (None not in out and out[0] >= out[1]):
        raise cli.argparse.ArgumentTypeError(f"expected LO:HI heights with LO < HI (e.g. 9e5:1.2e6 or 9e5:), got {text!r}")
    return out


def parse(parser, argv=None):
    """Parse with the chosen --preset supplying the defaults of flags not given."""
    known, _ = parser.parse_known_args(argv)
    parser.set_defaults(**PRESETS[known.preset])
    return parser.parse_args(argv)


def base_config(args):
    """MDNConfig fields from the shared flags."""
    if args.n_embd % args.n_head:
        raise UserError(f"--n-embd {args.n_embd} must be divisible by --n-head {args.n_head}")
    return dict(context=args.context, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                d_ff=args.d_ff or 4 * args.n_embd, dropout=args.dropout, n_components=args.n_components,
                min_sigma=args.min_sigma, entropy_reg=args.entropy_reg, input_features=args.input_features,
                count_window=args.count_window)


def train(args, model_cls, config_cls, config_fields, lr_mults=None):
    """The training story every MDN trainer tells: resume or build, task, fit. Returns the summary."""
    family = model_cls.family
    resume = engine.begin(args, family)
    config = config_cls(**resume["model_config"]) if resume else config_cls(**config_fields)
    task = MDNTask(family, args.data_dir, config.context, args.batch_size, args.seed, args.val_stride,
                   args.eval_batch_size, lr_mults, args.train_fraction, args.train_heights)
    try:
        model = model_cls(config)
    except ValueError as e:
        raise UserError(str(e)) from None
    if not resume:
        task.prepare_model(model)
    return engine.fit(model, task, args, resume)
