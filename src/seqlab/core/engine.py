"""The one training loop of every family.

A family supplies a model and a task; the engine does the rest: device, AMP, compile,
AdamW groups, LR schedule, grad clip, hooks, evaluation cadence, best tracking, early stop,
plateau detection, logging rules, the run folder, checkpoints, exact resume, and
SIGTERM/SIGINT handling (pods get stopped: last.pt is saved before exit).

A task is any object with:
    family, metric            e.g. "char", "val_loss" (lower is better)
    next_batch()              the next training batch (the task owns the data order)
    loss(model, batch)        scalar loss tensor
    evaluate(model)           dict of metrics including `metric` (called under no_grad, eval mode)
    state_dict() / load_state_dict(state)     data position, for exact resume
    describe()                dict describing the data, for config.json
optional:
    on_start(model, device, log)  extra lines at the start of the run (e.g. which kernels run)
    after_backward(model, step)   look at gradients (after AMP unscaling, before clipping), e.g.
                                  to accumulate per-component gradient norms for monitors
    on_eval(model, step, log, state)  extra reporting at each eval (a text sample, monitors);
                                  `state` holds this eval's metrics, best, best_step, n_plateaus,
                                  lr_scale, max_steps, train_loss; a returned non-empty string
                                  stops the run (the reason)
    lr_mults                      {param-name prefix: LR multiplier}
"""
import contextlib
import json
import math
import random
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from seqlab.core import checkpoint, device, distributed, hooks as hooks_mod, manifest, optim, plots, prices, runfolder
from seqlab.core import sweep_link
from seqlab.core.errors import UserError


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def begin(args, family):
    """Validate the run-level flags, seed every RNG, and return the checkpoint to resume (or None).

    Call before building the model, so that initialisation is seeded.
    """
    dist = distributed.init(device.pick(args.device).type)
    runfolder.check(args.out_dir, args.resume, args.overwrite)
    dist.barrier()  # every rank has checked the folder before rank 0 may create it
    try:
        hooks_mod.HookSet(args.hooks)
    except ValueError as e:
        raise UserError(f"--hook: {e}") from None
    if not args.resume and args.data_dir is None:
        raise UserError("--data-dir is required to start a run (with --resume the run's own data dir is used)")
    ck = None
    if args.resume:
        ck = checkpoint.load(f"{args.out_dir}/last.pt", family)
        n_rng = len(ck["rng"]) if isinstance(ck["rng"], list) else 1
        if n_rng != dist.world:
            raise UserError(f"--resume: last.pt was written by {n_rng} process(es), this run has {dist.world}; "
                            "resume with the same number of processes")
        adopt_run_flags(args, ck["train_config"])
    seed_everything(args.seed)
    return ck


# Flags a resumed run may change; any other flag given with a different value is refused.
RESUME_MUTABLE = {"max_steps", "eval_every", "log_every", "early_stop", "patience", "plateau_patience",
                  "plateau_lr_factor", "hooks", "data_dir", "kernels", "tensorboard", "compile", "gpu_price",
                  "save_every", "keep_last"}
# Flags of this invocation only (where and how this process runs): never taken from the saved run.
NOT_ADOPTED = {"out_dir", "resume", "overwrite", "device"}


def adopt_run_flags(args, saved):
    """On --resume, flags not given on the command line take the run's own values (so a bare
    `--resume` continues the same experiment); given flags may only change RESUME_MUTABLE ones."""
    explicit = getattr(args, "_explicit", set(vars(args)))
    refused = []
    for key, value in saved.items():
        if key.startswith("_") or key in NOT_ADOPTED or not hasattr(args, key):
            continue
        if key not in explicit:
            setattr(args, key, value)
        elif getattr(args, key) != value and key not in RESUME_MUTABLE:
            refused.append(f"--{key.replace('_', '-')} {value} -> {getattr(args, key)}")
    if refused:
        raise UserError("--resume cannot change " + ", ".join(refused) + "; drop those flags or start a new run")


def resume_command(out_dir, world=1):
    """The exact command that continues this run: the same script, its run folder, --resume."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(Path.cwd())
    except ValueError:
        pass
    launcher = f"torchrun --nproc_per_node {world}" if world > 1 else "python"
    return f"{launcher} {script} --out-dir {out_dir} --resume"


def _fmt_minutes(seconds):
    return f"{seconds / 3600:.1f}h" if seconds >= 3600 else f"{seconds / 60:.1f}m"


def fit(model, task, args, resume=None):
    """Train `model` on `task` as the flags in `args` say. Returns a summary dict."""
    return Trainer(model, task, args, resume).run()


class Trainer:
    def __init__(self, model, task, args, resume):
        self.model, self.task, self.args, self.resume = model, task, args, resume
        self.dev = device.pick(args.device)
        self.dist = distributed.init(self.dev.type)
        if self.dist.active and self.dev.type == "cuda":
            self.dev = torch.device("cuda", self.dist.local_rank)
        self.dev_name, self.dev_mem = device.describe(self.dev)
        self.hooks = hooks_mod.HookSet(args.hooks)
        self.stop_signal = None
        self.last_train_loss = None

    # ---- setup -------------------------------------------------------------------------------
    def _config(self):
        train = {k: v for k, v in vars(self.args).items() if not k.startswith("_")}
        return {"family": self.task.family, "model": asdict(self.model.config),
                "train": train, "data": self.task.describe()}

    def _setup(self):
        a, model = self.args, self.model
        if self.dist.is_main:
            self.out = runfolder.create(a.out_dir, a.resume, a.overwrite)
        self.dist.barrier()
        self.out = Path(a.out_dir)
        model.to(self.dev)
        self.opt = optim.make_adamw(model, a.lr, a.weight_decay, (a.beta1, a.beta2),
                                    getattr(self.task, "lr_mults", None), self.dev.type)
        self.autocast, self.scaler, self.amp_dtype = device.amp_setup(self.dev, a.amp)
        self.step, self.best, self.best_step = 0, math.inf, 0
        self.lr_scale, self.last_plateau_step, self.n_plateaus = 1.0, 0, 0
        self.loss_sum, self.n_loss = 0.0, 0  # the running train-loss interval, checkpointed
        self.config = self._config()
        if self.resume:
            ck = self.resume
            model.load_state_dict(ck["model"])
            self.opt.load_state_dict(ck["optimizer"])
            if self.scaler is not None and ck.get("scaler"):
                self.scaler.load_state_dict(ck["scaler"])
            self.step = ck["step"]
            self.best, self.best_step = ck["best"]["value"], ck["best"]["step"]
            t = ck["trainer"]
            self.lr_scale, self.last_plateau_step, self.n_plateaus = t["lr_scale"], t["last_plateau_step"], t["n_plateaus"]
            self.task.load_state_dict(ck["data"])
            self.manifest = ck["manifest"]
            self.loss_sum, self.n_loss = t.get("loss_sum", 0.0), t.get("n_loss", 0)
            rngs = ck["rng"] if isinstance(ck["rng"], list) else [ck["rng"]]
            self.rng_note = checkpoint.set_rng_state(rngs[self.dist.rank], self.dev)  # logged by _log_start
        else:
            self.manifest = manifest.make(self.config, self.hooks.specs, self.dev_name, a.seed)
            self.config["manifest"] = self.manifest
            if self.dist.is_main:
                (self.out / "config.json").write_text(json.dumps(self.config, indent=2, default=str))
        self.hooks.attach(model)
        self.compiled = torch.compile(model) if a.compile else model
        self.train_model = self.compiled
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel as DDP
            self.train_model = DDP(self.compiled, device_ids=[self.dev.index] if self.dev.type == "cuda" else None,
                                   find_unused_parameters=getattr(self.task, "find_unused_parameters", False))
        self.bar = tqdm(total=a.max_steps, initial=self.step, dynamic_ncols=True, leave=False,
                        disable=not (sys.stderr.isatty() and self.dist.is_main))
        self.log = runfolder.RunLog(self.out, enabled=self.dist.is_main, echo=tqdm.write)
        self.log = sweep_link.tensorboard_log(self.log, a, self.out)   # --tensorboard: scalars to <out>/tb/

    def _log_start(self):
        a, log = self.args, self.log
        mem = f", {self.dev_mem:.1f} GiB" if self.dev_mem else ""
        n_params = sum(p.numel() for p in self.model.parameters())
        if self.resume:
            log.line(f"Resuming {self.manifest['run_id']} from step {self.step} (best {self.task.metric}="
                     f"{self.best:.4f} at step {self.best_step})")
            log.event("resume", step=self.step, argv=sys.argv[1:])
            if getattr(self, "rng_note", None):
                log.line(f"Note: {self.rng_note}")
        log.line(f"Device: {self.dev_name}{mem} | AMP: {self.amp_dtype} | compile: {a.compile}")
        world = self.dist.world
        batch = f"{a.batch_size}" if world == 1 else f"{a.batch_size} per rank x {world} ranks"
        if a.grad_accum > 1:
            batch += f" x {a.grad_accum} accumulated"
        if world > 1 or a.grad_accum > 1:
            batch += f" = {a.batch_size * world * a.grad_accum} global"
        log.line(f"Batch size: {batch} | params: {n_params:,} | run_id: {self.manifest['run_id']} | "
                 f"config_hash: {self.manifest['config_hash']} | git: {str(self.manifest['git_commit'])[:10]}"
                 f"{' (dirty)' if self.manifest.get('git_dirty') else ''}")
        log.line("Config: " + json.dumps({k: v for k, v in self.config.items() if k != "manifest"}, default=str))
        if hasattr(self.task, "on_start"):
            self.task.on_start(self.model, self.dev, log)
        log.event("start", step=self.step, device=self.dev_name, device_memory_gib=self.dev_mem,
                  batch_size=a.batch_size, world_size=world, grad_accum=a.grad_accum,
                  global_batch_size=a.batch_size * world * a.grad_accum,
                  n_params=n_params, amp=self.amp_dtype)

    # ---- checkpoints -------------------------------------------------------------------------
    def _save(self, name, metrics=None):
        """Write a checkpoint (rank 0). Every rank must call it: RNG states are gathered from all."""
        ck = self._checkpoint(metrics)
        if self.dist.is_main:
            checkpoint.save_atomic(ck, self.out / name)

    def _save_periodic(self):
        """ckpt_<step>.pt (the format of last.pt, so eval, diagnose and --resume read it), keeping
        the newest --keep-last of them (0: all)."""
        self._save(f"ckpt_{self.step}.pt")
        if self.dist.is_main and self.args.keep_last:
            for old in checkpoint.periodic(self.out)[:-self.args.keep_last]:
                old.unlink()

    def _checkpoint(self, metrics=None):
        rng = self.dist.gather(checkpoint.rng_state(self.dev))
        return {
            "format_version": checkpoint.FORMAT_VERSION,
            "family": self.task.family,
            "model_config": asdict(self.model.config),
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "step": self.step,
            "best": {"metric": self.task.metric, "value": self.best, "step": self.best_step},
            "metrics": metrics or {},
            "trainer": {"lr_scale": self.lr_scale, "last_plateau_step": self.last_plateau_step,
                        "n_plateaus": self.n_plateaus, "loss_sum": float(self.dist.mean(self.loss_sum_t)),
                        "n_loss": self.n_loss},
            "rng": rng if self.dist.active else rng[0],
            "data": self.task.state_dict(),
            "hooks": self.hooks.specs,
            "train_config": json.loads(json.dumps(self.config["train"], default=str)),
            "data_info": json.loads(json.dumps(self.task.describe(), default=str)),
            "manifest": self.manifest,
        }

    # ---- the loop ----------------------------------------------------------------------------
    def _set_lr(self):
        a = self.args
        min_ratio = (a.min_lr / a.lr) if a.min_lr is not None else 0.1
        f = optim.lr_factor(self.step, a.schedule, a.max_steps, a.warmup, min_ratio) * self.lr_scale
        for g in self.opt.param_groups:
            g["lr"] = a.lr * f * g["lr_mult"]
        return a.lr * f

    def _train_step(self):
        """One optimizer step over --grad-accum micro-batches: each loss is divided by their number, so
        the gradient is that of one batch N times larger (for tasks whose loss is a mean over
        equal-sized batches); under DDP the N - 1 inner backwards skip the gradient all-reduce.
        Checkpoints (and so --resume) fall between optimizer steps, never mid-accumulation."""
        a = self.args
        lr = self._set_lr()
        n = a.grad_accum
        total = 0.0
        for i in range(n):
            sync = i == n - 1 or not self.dist.active
            with (contextlib.nullcontext() if sync else self.train_model.no_sync()):
                batch = self.task.next_batch()
                with self.autocast():
                    loss = self.task.loss(self.train_model, batch)
                self.hooks.after_forward()
                scaled = loss / n if n > 1 else loss
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            total = total + loss.detach()
        loss = total / n
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)
        self.hooks.apply_update(self.model, self.step)
        if hasattr(self.task, "after_backward"):
            self.task.after_backward(self.model, self.step)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), a.grad_clip if a.grad_clip > 0 else math.inf)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        return loss.detach(), grad_norm.detach(), lr

    def _evaluate(self):
        self.model.eval()
        with torch.no_grad(), self.autocast():
            metrics = self.task.evaluate(self.compiled)
        self.model.train()
        return {k: float(v) if isinstance(v, (int, float, torch.Tensor)) else v for k, v in metrics.items()}

    def _on_eval(self, t0, step0):
        a, log, metric = self.args, self.log, self.task.metric
        # ranks decide from rank 0's numbers, so they always reach the same collectives
        metrics = self.dist.broadcast(self._evaluate())
        value = metrics[metric]
        if not math.isfinite(value):
            raise FloatingPointError(f"{metric} is {value} at step {self.step}")
        improved = value < self.best
        if improved:
            self.best, self.best_step = value, self.step
            self._save("best.pt", metrics)
        elapsed = time.time() - t0
        rate = (self.step - step0) / max(elapsed, 1e-9)
        eta = (a.max_steps - self.step) / max(rate, 1e-9)
        log.line(f"Step {self.step}/{a.max_steps} | {metric}={value:.4f} (best={self.best:.4f}) | "
                 f"{rate:.1f} steps/s | ETA: {_fmt_minutes(eta)} | elapsed: {_fmt_minutes(elapsed)}")
        log.event("eval", step=self.step, **metrics, best=self.best, best_step=self.best_step,
                  steps_per_s=rate, elapsed_s=elapsed)
        stop = None
        if hasattr(self.task, "on_eval"):
            state = {"metrics": metrics, "best": self.best, "best_step": self.best_step, "n_plateaus": self.n_plateaus,
                     "lr_scale": self.lr_scale, "max_steps": a.max_steps, "train_loss": self.last_train_loss}
            stop = self.task.on_eval(self.model, self.step, self.log, state) or None
        if stop is None and self.dist.is_main:   # in a sweep: report to the trial; its pruner may stop the run
            stop = sweep_link.report_to_trial(self.step, metrics, self.out)
        report = self.hooks.report()
        if report:
            log.event("hook", step=self.step, **report)
        since_best = self.step - self.best_step
        if stop is None and a.early_stop and since_best >= a.patience:
            stop = f"early stop: no {metric} improvement for {since_best} steps (patience {a.patience})"
        plateau = a.plateau_patience if a.plateau_patience is not None else 10 * a.eval_every
        if plateau and self.step - max(self.best_step, self.last_plateau_step) >= plateau:
            self.last_plateau_step, self.n_plateaus = self.step, self.n_plateaus + 1
            if a.plateau_lr_factor:
                self.lr_scale *= a.plateau_lr_factor
            log.line(f"Plateau: no {metric} improvement for {since_best} steps"
                     + (f"; LR scale now {self.lr_scale:.3g}" if a.plateau_lr_factor else ""))
            log.event("plateau", step=self.step, since_best=since_best, lr_scale=self.lr_scale, n_plateaus=self.n_plateaus)
        self._save("last.pt", metrics)
        return stop

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return {}
        def handler(signum, frame):
            self.stop_signal = signum
        return {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

    def run(self):
        a = self.args
        self._setup()
        self._log_start()
        previous = self._install_signals()
        t0, step0 = time.time(), self.step
        self.loss_sum_t, stop = torch.full((), self.loss_sum, device=self.dev), None
        clean = False   # set once every rank is past its last collective
        self.model.train()
        try:
            while self.step < a.max_steps and stop is None:
                loss, grad_norm, lr = self._train_step()
                self.loss_sum_t += loss.float()
                self.n_loss += 1
                self.bar.update(1)
                if self.step % a.log_every == 0 or self.step == a.max_steps:
                    mean = self.last_train_loss = float(self.dist.mean(self.loss_sum_t)) / self.n_loss
                    if not math.isfinite(mean):
                        raise FloatingPointError(f"training loss is {mean} at step {self.step}; lower --lr or check the data")
                    self.log.event("train", step=self.step, loss=mean, lr=lr, grad_norm=float(grad_norm))
                    self.bar.set_postfix(loss=f"{mean:.4f}")
                    self.loss_sum_t.zero_()
                    self.n_loss = 0
                if self.step % a.eval_every == 0 or self.step == a.max_steps:
                    stop = self._on_eval(t0, step0)
                if a.save_every and self.step % a.save_every == 0:
                    self._save_periodic()
                # under DDP ranks agree on a signal at logging steps (a collective each step would sync)
                if (self.stop_signal is not None if not self.dist.active else
                        self.step % a.log_every == 0 and self.dist.any(self.stop_signal is not None)):
                    self.stop_signal = self.stop_signal or signal.SIGTERM
                    name = signal.Signals(self.stop_signal).name
                    self._save("last.pt")
                    self.log.line(f"{name} at step {self.step}: saved last.pt; continue with: {resume_command(a.out_dir, self.dist.world)}")
                    self.log.event("signal", step=self.step, signal=name)
                    clean = True   # every rank agreed on the signal and stops here
                    raise SystemExit(128 + self.stop_signal)
            if stop:
                self.log.line(stop)
                self.log.event("stop", step=self.step, reason=stop)
            summary = self._finish(t0, step0)
            clean = True
            return summary
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            self.bar.close()
            self.log.close()
            self.train_model = None   # DDP's reducer goes while its process group still exists
            self.dist.close(clean)

    def _finish(self, t0, step0):
        a, log = self.args, self.log
        total = time.time() - t0
        rate = (self.step - step0) / max(total, 1e-9)
        price = a.gpu_price if a.gpu_price is not None else (
            prices.price_for(self.dev_name) if self.dev.type == "cuda" else 0.0)
        cuda = self.dev.type == "cuda"
        cost, usd = prices.cost_line(price, total, self.dist.world if cuda else 1,
                                     torch.cuda.device_count() if cuda else 0)   # says so when GPUs sat idle
        log.line(f"Done: {self.step - step0} steps in {_fmt_minutes(total)} ({rate:.2f} steps/s) | "
                 f"best {self.task.metric}={self.best:.4f} at step {self.best_step} | cost: {cost}")
        log.event("end", step=self.step, total_s=total, steps_per_s=rate, best=self.best,
                  best_step=self.best_step, cost_usd=usd)
        if self.dist.is_main:
            plots.loss_curve(self.out / "metrics.jsonl", self.out / "loss_curve.png", self.task.metric)
        return {"step": self.step, "best": self.best, "best_step": self.best_step, "steps_per_s": rate,
                "total_s": total, "out_dir": str(self.out)}
