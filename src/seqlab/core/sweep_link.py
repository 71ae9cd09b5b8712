"""What a training run does for the outside world beyond its run folder: report each eval's metric
to the Optuna trial it belongs to (scripts/sweep.py, seqlab/sweeps/), and mirror the logged
scalars to TensorBoard (--tensorboard).

The engine makes two calls: `tensorboard_log(log, args, out)` at start and `report_to_trial(step,
metrics, out)` at each eval. A run started by hand sets no SEQLAB_SWEEP_* variable, so the second
is a no-op; optuna and tensorboard are imported only when used (both are optional here).
"""
import json
import os
from pathlib import Path

from seqlab.core.errors import UserError

# Set by the sweep for each trial subprocess (seqlab/sweeps/worker.py).
ENV_STORAGE, ENV_STUDY, ENV_TRIAL, ENV_METRIC, ENV_PRUNER = (
    "SEQLAB_SWEEP_STORAGE", "SEQLAB_SWEEP_STUDY", "SEQLAB_SWEEP_TRIAL_ID", "SEQLAB_SWEEP_METRIC", "SEQLAB_SWEEP_PRUNER")
_trial = None   # the optuna Trial of this process, opened at its first eval


def open_storage(url):
    """An Optuna storage from a URL: `journal:PATH` is a journal file (works on a shared disk
    without a database server), anything else an RDB URL (sqlite:///f.db, postgresql://...)."""
    import optuna
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
        path = url[len("journal:"):]
        return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    # a long SQLite timeout: several workers write to the one file
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def make_pruner(spec):
    """An optuna pruner from {"name": class in optuna.pruners, "kwargs": {...}}."""
    import optuna
    return getattr(optuna.pruners, spec["name"])(**spec["kwargs"])


def _open_trial():
    global _trial
    if _trial is None:
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=os.environ[ENV_STUDY], storage=open_storage(os.environ[ENV_STORAGE]),
                                  pruner=make_pruner(json.loads(os.environ[ENV_PRUNER])))
        _trial = optuna.trial.Trial(study, int(os.environ[ENV_TRIAL]))
    return _trial


def mark_config(out, **fields):
    """Merge `fields` into <out>/config.json under "sweep" (written atomically)."""
    path = Path(out) / "config.json"
    config = json.loads(path.read_text())
    config.setdefault("sweep", {}).update(fields)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config, indent=2, default=str))
    os.replace(tmp, path)


def report_to_trial(step, metrics, out):
    """Report this eval's sweep metric to the run's trial; return a stop reason when the pruner
    says stop (the engine then ends the run cleanly at this eval, last.pt written), else None."""
    if ENV_TRIAL not in os.environ:
        return None
    name = os.environ[ENV_METRIC]
    if name not in metrics:
        raise UserError(f"the sweep metric {name} is not among this run's eval metrics {sorted(metrics)}")
    trial = _open_trial()
    trial.report(float(metrics[name]), step)
    if not trial.should_prune():
        return None
    mark_config(out, pruned=True, pruned_at_step=step, trial_number=trial.number)
    return f"pruned by the sweep at step {step}: {name}={metrics[name]:.4f} is worse than the pruner allows"


class TensorBoardLog:
    """The run log, plus every numeric field of train/eval/monitor/hook/plateau events written as
    a TensorBoard scalar `<event>/<field>` at the event's step, in <out>/tb/."""

    EVENTS = {"train", "eval", "monitor", "hook", "plateau"}

    def __init__(self, log, out):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
        self._log, self.writer = log, SummaryWriter(str(Path(out) / "tb"))

    def __getattr__(self, name):       # everything else is the run log's
        return getattr(self._log, name)

    def line(self, text):
        self._log.line(text)

    def event(self, event, **fields):
        self._log.event(event, **fields)
        if event in self.EVENTS and "step" in fields:
            for key, value in _scalars(fields):
                self.writer.add_scalar(f"{event}/{key}", value, fields["step"])

    def close(self):
        self.writer.close()
        self._log.close()


def _scalars(fields, prefix=""):
    """(name, number) for the numeric fields, nested dicts flattened as a/b; step and time left out."""
    for key, value in fields.items():
        if key in ("step", "time") and not prefix:
            continue
        if isinstance(value, dict):
            yield from _scalars(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{key}", value


def tensorboard_log(log, args, out):
    """`log` itself, or a TensorBoardLog around it under --tensorboard (main process only)."""
    if not getattr(args, "tensorboard", False) or not log.enabled:
        return log
    return TensorBoardLog(log, out)
