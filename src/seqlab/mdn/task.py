"""Family 2's task for the engine, and the flags/config/training story the three MDN trainers share.

Training samples are sliding windows over the flattened train stream: a window is T+1
consecutive spacings starting at any offset (about 1.8M distinct windows on the 2M set, not
the 7,035 stored rows). Validation scores the val split's windows, deterministically.

Checkpoint selection (--selection-split): `train_tail` (default) holds the last 5% of the train
range (at least one window) out of training and picks best.pt by sel_nll, the NLL on its non-overlapping windows, so the
val split that eval_mdn.py reports never chose the checkpoint; `val` picks by val_nll (the old way).
val_nll is logged at every eval either way.
"""
import numpy as np
import torch

from seqlab.core import cli, distributed, engine, paths
from seqlab.mdn import evaluate as mdn_eval, remedies as drift_remedies
from seqlab.zeta import spacings as spacing_data
from seqlab.core.errors import UserError
from seqlab.mdn.model import INPUT_FEATURES

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

    def __init__(self, stream, length, batch_size, seed, rank=0, world=1, heights=None):
        self.stream, self.length, self.batch_size, self.seed = stream, length, batch_size, seed
        self.heights = heights  # (len(stream),) log(gamma/2pi) per spacing: batches then carry the inputs' heights
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
        idx = starts[:, None] + self.offsets
        w = self.stream[idx]                              # (B, T+1)
        if self.heights is not None:
            return w[:, :-1], w[:, 1:], self.heights[idx[:, :-1]]
        return w[:, :-1], w[:, 1:]                        # inputs s_0..s_{T-1}, next values s_1..s_T

    def state_dict(self):
        return {"served": self.served}

    def load_state_dict(self, state):
        self.served = int(state["served"])


def bare(model):
    """The model inside a DistributedDataParallel (torchrun) and/or torch.compile wrapper."""
    core = getattr(model, "module", model)
    return getattr(core, "_orig_mod", core)


SELECTION_HOLDOUT = 0.05  # the share of the train range that train_tail holds out for checkpoint selection


class MDNTask:
    """Teacher-forced mixture NLL on stream windows; val_nll = mean NLL (nats per spacing) over the
    model's scored positions of the val windows (E0/PREFIX: every position; POSTFIX: the last);
    sel_nll the same on the held-out train tail (selection_split train_tail), which then picks best.pt."""

    def __init__(self, family, data_dir, context, batch_size, seed, val_stride=None, eval_batch_size=64, lr_mults=None,
                 train_fraction=None, train_heights=None, selection_split="train_tail", use_heights=False,
                 remedies=None):
        self.family, self.data_dir, self.context, self.seed = family, data_dir, context, seed
        self.remedies = remedies or drift_remedies.Remedies()
        train = spacing_data.load_split(data_dir, "train")
        val = spacing_data.load_split(data_dir, "val")
        full = train.flatten()  # stored rows are consecutive chunks of one sequence
        # the part of the train stream the sampler draws from (--train-fraction / --train-heights)
        self.meta = spacing_data.load_meta(data_dir)
        self.train_range = spacing_data.select_train(len(full), self.meta, train_fraction, train_heights)
        lo, hi = self.train_range
        self.selection_split, self.metric = selection_split, ("sel_nll" if selection_split == "train_tail" else "val_nll")
        if self.remedies.select_by_rollout:
            self.metric = "rollout_err"     # free-running chains from the selection split (remedies.py)
        cut = hi
        if selection_split == "train_tail":
            cut = hi - max(int(round(SELECTION_HOLDOUT * (hi - lo))), context + 1)  # at least one window
            if cut - lo < context + 1:
                raise UserError(f"the train range holds {hi - lo} spacings: too few to hold out 5% (at least one "
                                f"window of {context + 1}) for --selection-split train_tail and train on the rest; "
                                "use more train data or --selection-split val")
            self.sel = mdn_eval.windows(full[cut:hi], context + 1)
        self.fit_range = (lo, cut)
        self.stream = full[lo:cut]
        self.use_heights = use_heights
        h_train = h_val = None
        if use_heights:
            from seqlab.mdn import heights
            h_run = torch.from_numpy(heights.log_heights(self.meta, "train", hi, start=lo).astype(np.float32))
            h_train = h_run[:cut - lo]                      # the run's range only, not the whole train split
            if selection_split == "train_tail":
                self.sel_heights = mdn_eval.windows(h_run[cut - lo:], context + 1)
            h_val = heights.split_windows(data_dir, "val", context + 1, val_stride or context + 1)
        self.val_heights = h_val
        self.sampler = StreamSampler(self.stream, context + 1, batch_size, seed, *distributed.env_rank_world(),
                                     heights=h_train)
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
        x, y, *h = (t.to(dev, non_blocking=True) for t in batch)
        core = bare(model)                           # the compiled / DDP forward runs inside core.loss
        extra = {"height": h[0]} if h else {}
        r, step = self.remedies, self.sampler.served - 1
        x_in = x
        if r.input_noise:
            x_in = drift_remedies.add_input_noise(x_in, r.input_noise, drift_remedies.generator(self.seed, step, 1))
        if r.self_feed:
            x_in = drift_remedies.self_feed(core, x_in, r.self_feed, drift_remedies.generator(self.seed, step, 2), **extra)
        loss, self.last_parts = core.loss(x_in, y, step=step, forward=model, **extra)
        if r.drift_weight:     # rollouts from the true history
            drift = drift_remedies.drift_loss(core, x, y, r.drift_horizon, r.drift_batch,
                                              drift_remedies.generator(self.seed, step, 3), **extra)
            loss = loss + r.drift_weight * drift
            self.last_parts = dict(self.last_parts, drift=drift.detach())
        return loss

    def on_eval(self, model, step, log, state):
        """Log the parts of the last training loss (nll, weight entropy, aux, ortho)."""
        parts = {k: float(v) for k, v in getattr(self, "last_parts", {}).items()}
        if parts:
            log.event("loss_parts", step=step, **parts)

    def evaluate(self, model):
        out = mdn_eval.val_metrics(model, self.val, self.eval_batch_size, self.val_heights)
        if self.selection_split == "train_tail":
            sel = mdn_eval.val_metrics(model, self.sel, self.eval_batch_size, getattr(self, "sel_heights", None))
            out["sel_nll"] = sel["val_nll"]
        r = self.remedies
        if r.select_by_rollout:
            core = bare(model)
            tail = self.selection_split == "train_tail"
            out.update(drift_remedies.rollout_error(core, self.sel if tail else self.val, r.rollout_chains,
                                                    r.rollout_steps, getattr(self, "sel_heights", None) if tail
                                                    else self.val_heights))
        return out

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
        return {"data_dir": paths.shown(self.data_dir), "n_train_spacings": hi - lo, "n_fit_spacings": len(self.stream),
                "train_range": [lo, hi], **heights, "selection_split": self.selection_split,
                "selection_metric": self.metric, "fit_range": list(self.fit_range),
                **({"selection_windows": len(self.sel)} if self.selection_split == "train_tail" else {}),
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
    g.add_argument("--input-features", choices=list(INPUT_FEATURES), default="spacing",
                   help="spacing: s - 1 only; +count: also the running sum of (s - 1) since the window start; "
                        "+height: also log(gamma/2pi) of each input's zero, normalised (E0 only)")
    g.add_argument("--ar-order", type=cli.nonneg_int, default=0,
                   help="E0 only: add a learned linear AR(P) of the last P inputs to every mixture mean (0: off)")
    g.add_argument("--ar-init", choices=["zero", "fit"], default="zero",
                   help="start of the AR path: zero, or the Yule-Walker AR(P) of the spacings it trains on "
                        "(train data only; the transformer then learns what the linear forecast misses)")
    g.add_argument("--ar-height", action="store_true",
                   help="E0 only: the AR path's coefficients move linearly with log(gamma/2pi) (normalised over "
                        "the spacings the run trains on); with --ar-init fit: least squares on lags and lags x height")
    g.add_argument("--ar-lr-mult", type=cli.nonneg_float, default=1.0,
                   help="LR multiplier of the AR path (0 freezes it: Adam moves each of its P^2 coefficients by "
                        "about lr per step, which overfits a short train range)")
    g.add_argument("--count-window", type=cli.nonneg_int, default=0,
                   help="with spacing+count: sum over the last N spacings only (0: since the window start)")
    g.add_argument("--val-stride", type=cli.positive_int, default=None,
                   help="offset between val windows (default: context + 1 = the stored rows, no overlap)")
    g.add_argument("--eval-batch-size", type=cli.positive_int, default=64)
    g = p.add_argument_group("which train data")
    g.add_argument("--selection-split", choices=["train_tail", "val"], default="train_tail",
                   help="split that picks best.pt: train_tail = the last 5%% of the train range, held out of "
                        "training (sel_nll); val = the val split (val_nll), which eval_mdn.py also reports")
    g.add_argument("--train-fraction", type=fraction_or_one, default=None, metavar="F",
                   help="train on the last F of the train stream only (the heights nearest val)")
    g.add_argument("--train-heights", type=height_range, default=None, metavar="LO:HI",
                   help="train on the spacings whose zeros lie at heights LO <= T < HI (either may be empty, "
                        "e.g. 9e5: for T >= 9e5)")
    g = p.add_argument_group("free-running drift remedies (E0 only; seqlab/mdn/remedies.py)")
    g.add_argument("--input-noise", type=cli.nonneg_float, default=0.0, metavar="S",
                   help="add N(0, S^2) to the input spacings (targets stay true)")
    g.add_argument("--self-feed", type=fraction_or_zero, default=0.0, metavar="P",
                   help="scheduled sampling: replace each input by the model's own draw with probability P")
    g.add_argument("--drift-aux-weight", type=cli.nonneg_float, default=0.0, metavar="W",
                   help="add W x the squared count error of H-step sampled rollouts against the true continuation")
    g.add_argument("--drift-horizon", type=cli.positive_int, default=16, help="H, rollout steps of the drift loss")
    g.add_argument("--drift-batch", type=cli.positive_int, default=8, help="windows of each batch rolled out")
    g.add_argument("--select-by-rollout", action="store_true",
                   help="choose best.pt by rollout_err: free-running chains from the selection split against its "
                        "mean, std and lag-1 (relative errors summed)")
    g.add_argument("--rollout-steps", type=cli.positive_int, default=512, help="length of those chains")
    g.add_argument("--rollout-chains", type=cli.positive_int, default=4, help="how many chains")
    return p


def fraction_or_zero(text):
    value = float(text)
    if not 0 <= value <= 1:
        raise cli.argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def remedies_of(args, family):
    """The Remedies the flags ask for; a one-line error where they cannot apply."""
    r = drift_remedies.Remedies(
        input_noise=args.input_noise, self_feed=args.self_feed, drift_weight=args.drift_aux_weight,
        drift_horizon=args.drift_horizon, drift_batch=args.drift_batch, select_by_rollout=args.select_by_rollout,
        rollout_chains=args.rollout_chains, rollout_steps=args.rollout_steps)
    if family != "mdn" and (r.any_loss or r.select_by_rollout):
        raise UserError("--input-noise, --self-feed, --drift-aux-weight and --select-by-rollout are E0 options "
                        "(train_mdn.py)")
    if r.drift_weight and distributed.env_rank_world()[1] > 1:
        raise UserError("--drift-aux-weight runs the model several times per step, which DistributedDataParallel "
                        "does not allow: train it in one process (python, not torchrun)")
    if r.drift_weight and r.drift_horizon >= args.context:
        raise UserError(f"--drift-horizon {r.drift_horizon} must be below --context {args.context}")
    return r


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
                count_window=args.count_window, ar_order=args.ar_order)


def train(args, model_cls, config_cls, config_fields, lr_mults=None):
    """The training story every MDN trainer tells: resume or build, task, fit. Returns the summary."""
    from seqlab.mdn import heights
    family = model_cls.family
    if not args.resume:
        remedies_of(args, family)       # refuse before anything starts (a resume checks its adopted flags below)
    resume = engine.begin(args, family)
    if resume and "selection_split" not in resume["train_config"]:
        args.selection_split = "val"        # runs started before the split existed chose best.pt on val
    if not resume and family != "mdn" and ("+height" in config_fields["input_features"] or config_fields["ar_order"]):
        raise UserError("--input-features ...+height and --ar-order are E0 options (train_mdn.py)")
    if not resume and "+height" in config_fields["input_features"]:
        center, scale = heights.normaliser(spacing_data.load_meta(args.data_dir))
        config_fields = dict(config_fields, height_center=center, height_scale=scale)
    config = config_cls(**resume["model_config"]) if resume else config_cls(**config_fields)
    if getattr(config, "ar_order", 0) and getattr(args, "ar_lr_mult", 1.0) != 1.0:
        lr_mults = dict(lr_mults or {}, ar=args.ar_lr_mult)      # the one parameter named "ar"
    ar_height = getattr(args, "ar_height", False) and not resume
    if ar_height and not config.ar_order:
        raise UserError("--ar-height needs --ar-order P > 0")
    task = MDNTask(family, args.data_dir, config.context, args.batch_size, args.seed, args.val_stride,
                   args.eval_batch_size, lr_mults, args.train_fraction, args.train_heights,
                   getattr(args, "selection_split", "train_tail"), heights.uses_height(config) or ar_height,
                   remedies_of(args, family))
    if ar_height:  # z spans [-1, 1] over the spacings the run trains on
        lo, hi = task.fit_range
        L = heights.log_heights(task.meta, "train", hi, start=lo)
        config.ar_height_center, config.ar_height_scale = float(L.mean()), float(max((L[-1] - L[0]) / 2, 1e-9))
    try:
        model = model_cls(config)
    except ValueError as e:
        raise UserError(str(e)) from None
    if not resume:
        task.prepare_model(model)
        if getattr(config, "ar_order", 0) and getattr(args, "ar_init", "zero") == "fit":
            init_ar_path(model, task.stream, task.sampler.heights)
    return engine.fit(model, task, args, resume)


def init_ar_path(model, stream, log_heights=None):
    """Set the AR path of a fresh E0 from `stream` (its own training spacings): the model starts as that
    linear forecast. Without a height slope: Yule-Walker AR(1)..AR(P) (Levinson-Durbin). With one
    (ar_height_scale > 0): least squares of s_{t+1} - 1 on the lags (s_{t-j} - 1) and on the lags times
    z_t (the normalised height of the newest input), for each order q = 1..P from one Gram matrix: a
    linear predictor whose coefficients a + a_h z move with log T, as the prime lines do."""
    from seqlab.mdn import baselines
    c = model.config
    P = c.ar_order
    s = stream.double().numpy()
    if not c.ar_height_scale:
        phi, _ = baselines.levinson(baselines.autocovariance(s, P), P)
        with torch.no_grad():
            model.ar.copy_(torch.from_numpy(phi))         # row q-1 = AR(q), lag 1 first
        return
    z = (np.asarray(log_heights, dtype=np.float64) - c.ar_height_center) / c.ar_height_scale
    a, a_h, _ = baselines.height_ar_coefficients(s, z, P)
    with torch.no_grad():
        model.ar.copy_(torch.from_numpy(a))
        model.ar_h.copy_(torch.from_numpy(a_h))
