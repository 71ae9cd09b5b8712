"""Family 3's task for the engine: state-handoff training on parallel tracks of one text stream.

The train stream is cut into `batch_size` equal tracks; step i feeds each track's i-th chunk of
`context` tokens, with the recurrent state the previous chunk left behind (detached: values
are carried, gradients are not). States start fresh at every epoch and for validation, which
streams contiguous val tracks the same way. A reset flag at token t (a document starts after
a `doc_sep` occurrence) clears every state before t. With `passkey_mix` p, each track's chunk
is replaced with probability p by a passkey document (seqlab.hybrid.streams.passkey_text), so the
passkey test of eval_hybrid measures learned memory rather than luck.

Under torchrun the stream is cut into batch_size x world tracks and each rank trains its own
batch_size of them (rank r: tracks r*B .. (r+1)*B - 1), so N ranks compute what one process with
the global batch computes. Validation and the monitors' probes use batch_size val tracks on every
rank (rank 0's numbers are reported).
"""
import numpy as np
import torch

from seqlab.core import distributed, paths
from seqlab.core.errors import UserError
from seqlab.hybrid import kernels, mamba_cpu, monitors
from seqlab.hybrid.model import detach_state
from seqlab.hybrid.probes import evaluate_stream
from seqlab.hybrid.streams import PASSKEY_MIN_DIST, PASSKEY_OVERHEAD, doc_starts, move_state, passkey_text
from seqlab.text import data as text_data, tokenizer


class HybridTask:
    family, metric = "hybrid", "val_loss"

    def __init__(self, data_dir, context, batch_size, seed, doc_sep="", passkey_mix=0.0, eval_chunks=0,
                 monitor_cfg=None, prompt="The ", sample_tokens=200, rank=0, world=1):
        self.data_dir, self.context, self.batch_size, self.seed = data_dir, context, batch_size, seed
        self.rank, self.world, self.n_tracks = rank, world, batch_size * world   # global tracks
        self.doc_sep, self.passkey_mix, self.eval_chunks = doc_sep, passkey_mix, eval_chunks
        self.prompt, self.sample_tokens = prompt, sample_tokens
        train, self.val = text_data.load_split(data_dir, "train"), text_data.load_split(data_dir, "val")
        self.track_len = len(train) // self.n_tracks
        if self.track_len < context + 1:
            raise UserError(f"train split has {len(train)} tokens: {self.n_tracks} tracks of at least context {context} + 1 "
                            "need more; lower --batch-size or --context")
        if len(self.val) // batch_size < context + 1:
            raise UserError(f"val split has {len(self.val)} tokens, fewer than {batch_size} tracks x (context {context} + 1); "
                            "lower --batch-size/--context or prepare with a larger --val-fraction")
        if passkey_mix and context < PASSKEY_OVERHEAD + PASSKEY_MIN_DIST:
            raise UserError(f"--passkey-mix needs --context >= {PASSKEY_OVERHEAD + PASSKEY_MIN_DIST} (a passkey document fits in one chunk)")
        tracks = train[:self.track_len * self.n_tracks].view(self.n_tracks, self.track_len)
        resets = torch.from_numpy(doc_starts(tracks.reshape(-1).numpy(), doc_sep)).view(self.n_tracks, -1)
        mine = slice(rank * batch_size, (rank + 1) * batch_size)          # this rank's tracks
        self.tracks, self.resets = tracks[mine], resets[mine]
        self.n_train_tokens, self.n_doc_starts = tracks.numel(), int(resets.sum())   # global, for describe()
        self.chunks_per_epoch = (self.track_len - 1) // context
        self.served, self.state = 0, None           # chunks served; the carried model state
        self.monitor = monitors.Monitor(**(monitor_cfg or {}))

    # ---- training data -------------------------------------------------------------------------
    def next_batch(self):
        epoch, i = divmod(self.served, self.chunks_per_epoch)
        if i == 0:
            self.state = None                       # fresh states at every epoch start
        s = i * self.context
        x = self.tracks[:, s:s + self.context].clone()
        y = self.tracks[:, s + 1:s + self.context + 1].clone()
        reset = self.resets[:, s:s + self.context].clone()
        if self.passkey_mix:
            self._mix_passkeys(x, y, reset)
        self.served += 1
        return x, y, reset

    def _mix_passkeys(self, x, y, reset):
        """Replace some tracks' chunks by a passkey document (whole, inside the chunk) followed by
        the stream; resets before and after the document. Drawn from (seed, chunk index): resumable."""
        rng = np.random.default_rng([self.seed, self.served])
        T = self.context
        # drawn for every global track, in order, so each rank sees the documents one process would
        for g in np.nonzero(rng.random(self.n_tracks) < self.passkey_mix)[0]:
            key = f"{int(rng.integers(10000, 100000))}"
            dist = int(rng.integers(PASSKEY_MIN_DIST, T - PASSKEY_OVERHEAD + 1))
            text, _ = passkey_text(key, dist, rng)
            b = g - self.rank * self.batch_size
            if not 0 <= b < self.batch_size:
                continue
            ids = torch.from_numpy(tokenizer.encode(text).astype(np.int64))
            n = len(ids)
            x[b, :n], y[b, :n - 1] = ids, ids[1:]
            y[b, n - 1] = x[b, n] if n < T else y[b, n - 1]
            reset[b, 0] = True
            if n < T:
                reset[b, n] = True

    def loss(self, model, batch):
        dev = next(model.parameters()).device
        x, y, reset = (t.to(dev) for t in batch)
        state = move_state(self.state, dev) if self.state is not None else None
        _, new_state, loss = model(x, state, reset, targets=y)
        self.state = detach_state(new_state)
        return loss

    # ---- evaluation -----------------------------------------------------------------------------
    def evaluate(self, model):
        metrics = evaluate_stream(model, self.val, self.batch_size, self.context, self.eval_chunks, self.doc_sep)
        self.last_val = metrics["val_loss"]       # the monitors' overfit rule reads it in on_eval
        return metrics

    def on_start(self, model, device, log):
        log.line(kernels.describe(model.config.kernels, device))
        if torch.device(device).type == "cpu" and set(model.config.layout) & {"M", "P"} and model.config.scan != "sequential":
            # build the C++ scan now: built inside a torch.compile trace, the build is a graph break
            log.line("Mamba scan on CPU: " + ("C++ (seqlab.hybrid.mamba_cpu)" if mamba_cpu.available()
                                              else f"PyTorch blocked form ({mamba_cpu.REASON})"))

    def after_backward(self, model, step):
        self.monitor.accumulate_grads(model)

    def on_eval(self, model, step, log, state):
        stop = self.monitor.report(model, self.val, step, log, state, self.context, self.batch_size,
                                   self.last_val)
        if self.sample_tokens:
            from seqlab.text.task import sample
            text = sample(model, self.prompt, self.sample_tokens, seed=self.seed)
            log.line(f"Sample @ {step}: {text!r}")
            log.event("sample", step=step, prompt=self.prompt, text=text)
        return stop

    # ---- resume ---------------------------------------------------------------------------------
    def state_dict(self):
        """Chunks served, monitors, and the carried state of all n_tracks global tracks (under torchrun
        every rank calls this: the ranks' states are gathered, in rank order)."""
        state = self.state
        if self.world > 1:
            parts = distributed.all_gather(None if state is None else move_state(state, "cpu"))
            state = None if parts[0] is None else {"pos": parts[0]["pos"], "layers": _join([p["layers"] for p in parts])}
        return {"served": self.served, "state": state, "monitor": self.monitor.state_dict()}

    def load_state_dict(self, d):
        self.served, state = int(d["served"]), d["state"]
        if state is not None and self.world > 1:   # keep this rank's tracks of the global state
            n_saved = _tensors(state["layers"])[0].shape[0]
            if n_saved != self.n_tracks:   # e.g. written before ranks had their own tracks (rank 0's only)
                raise UserError(f"--resume: last.pt carries the state of {n_saved} tracks, this run trains {self.n_tracks} "
                                f"({self.batch_size} per rank x {self.world}); start a new run")
            lo = self.rank * self.batch_size
            state = {"pos": state["pos"], "layers": _rows(state["layers"], slice(lo, lo + self.batch_size))}
        self.state = state
        self.monitor.load_state_dict(d.get("monitor", {}))

    def describe(self):
        return {"data_dir": paths.shown(self.data_dir), "n_train_tokens": self.n_train_tokens, "n_val_tokens": len(self.val),
                "tracks": self.n_tracks, "track_len": self.track_len, "chunks_per_epoch": self.chunks_per_epoch,
                "doc_sep": self.doc_sep, "doc_starts_train": self.n_doc_starts, "passkey_mix": self.passkey_mix}


def _join(parts):
    """Per-rank nested lists/tuples of (B, ...) state tensors -> one structure of (world*B, ...)."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts, 0)
    if isinstance(first, (list, tuple)):
        return type(first)(_join(list(p)) for p in zip(*parts))
    return first


def _tensors(x):
    """The tensors of a nested state structure, in order."""
    if isinstance(x, torch.Tensor):
        return [x]
    return [t for v in x for t in _tensors(v)] if isinstance(x, (list, tuple)) else []


def _rows(x, rows):
    """The same nested structure with every tensor cut to `rows` of its track dimension."""
    if isinstance(x, torch.Tensor):
        return x[rows]
    if isinstance(x, (list, tuple)):
        return type(x)(_rows(v, rows) for v in x)
    return x
