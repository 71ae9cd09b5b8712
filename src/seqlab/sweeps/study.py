"""The Optuna study behind a sweep: opening it, and handing out trials so that no point runs twice.

Every trial carries user attributes `name` (its run folder, built from the varied values) and
`values` ({flag: value}). A grid is enqueued into the study (one WAITING trial per point) and
workers pop them with `study.ask()`, which the storage makes atomic. Two workers that enqueue the
same point at the same moment are reconciled by one rule: for a point, the lowest-numbered trial
that is not a retryable failure is the one that runs; any other is closed as a duplicate.

A trial that failed because its worker died (`stale`), was interrupted (`interrupted`, SIGTERM),
or lost the rule above (`duplicate`) is retried: the point is enqueued again and runs in the same
run folder with --resume. A trial whose run exited with an error (`rc N`) is final.
"""
import os
import random
import socket
import time

from seqlab.core.errors import UserError
from seqlab.core.sweep_link import make_pruner, open_storage
from seqlab.sweeps.spec import trial_name

RETRYABLE = {"stale", "interrupted", "duplicate", "empty"}
HOST = socket.gethostname()


def _optuna():
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def pruner_spec(spec):
    """The spec's race pruner as {"name": optuna.pruners class, "kwargs": ...} (NopPruner without a
    race). min-steps: no pruning before that step. The trial processes build the same pruner from it
    (seqlab/core/sweep_link.py): Optuna does not store a pruner in the study."""
    race = spec.race
    kind = race.get("pruner", "median") if race else "none"
    min_steps = race.get("min-steps", 0)
    if kind == "median":
        return {"name": "MedianPruner", "kwargs": {"n_startup_trials": race.get("startup-trials", 2),
                                                   "n_warmup_steps": min_steps}}
    if kind == "hyperband":
        return {"name": "HyperbandPruner", "kwargs": {"min_resource": max(min_steps, 1), "max_resource": spec.max_steps()}}
    if kind == "successive_halving":
        return {"name": "SuccessiveHalvingPruner", "kwargs": {"min_resource": max(min_steps, 1)}}
    return {"name": "NopPruner", "kwargs": {}}


def distributions(spec):
    """Optuna distributions of a search spec."""
    optuna = _optuna()
    d = optuna.distributions
    out = {}
    for key, dist in spec.search.items():
        kind, arg = next(iter(dist.items()))
        if kind == "choice":
            out[key] = d.CategoricalDistribution(arg)
        elif kind == "int":
            out[key] = d.IntDistribution(int(arg[0]), int(arg[1]))
        else:
            out[key] = d.FloatDistribution(float(arg[0]), float(arg[1]), log=kind == "log")
    return out


def open_study(spec, storage_url):
    """Create or load the study named after the sweep; refuse one made from a different spec."""
    optuna = _optuna()
    sampler = optuna.samplers.TPESampler() if spec.search else optuna.samplers.RandomSampler()
    for attempt in range(6):
        try:
            storage = open_storage(storage_url)
            study = optuna.create_study(study_name=spec.name, storage=storage, load_if_exists=True,
                                        direction="minimize", sampler=sampler, pruner=make_pruner(pruner_spec(spec)))
            break
        except Exception as e:
            # workers started together race to create the schema of a fresh SQLite file (OperationalError:
            # table exists / database is locked): the loser retries; anything else (a bad URL, no server) is final
            if type(e).__name__ not in ("OperationalError", "IntegrityError") or attempt == 5:
                raise UserError(f"--storage {storage_url}: {type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}") from None
            time.sleep(0.5 + random.random())
    digest = study.user_attrs.get("spec_digest")
    if digest is None:
        study.set_user_attr("spec_digest", spec.digest())
        study.set_user_attr("metric", spec.metric)
    elif digest != spec.digest():
        raise UserError(f"the study {spec.name} in {storage_url} was made from a different spec (script, flags, grid, "
                        "search or metric changed); rename the sweep or use another --storage")
    return study


def _fail_kind(t):
    return t.user_attrs.get("fail") if t.state.name == "FAIL" else None


def _counts(t):
    """A trial that holds its point: waiting, running, finished, or failed for good."""
    return "name" in t.user_attrs and _fail_kind(t) not in RETRYABLE


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def close(study, trial_or_number, state, fail=None, **attrs):
    """Finish a trial (COMPLETE, PRUNED, FAIL) with its attributes; `fail` says why it failed."""
    optuna = _optuna()
    number = trial_or_number if isinstance(trial_or_number, int) else trial_or_number.number
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    for key, value in {**attrs, **({"fail": fail} if fail else {})}.items():
        study._storage.set_trial_user_attr(trial_id, key, value)
    state = getattr(optuna.trial.TrialState, state)
    values = attrs.get("value")
    study.tell(number, values=values if state.name == "COMPLETE" else None, state=state, skip_if_finished=True)


def reclaim_stale(study, trials, mine):
    """RUNNING trials of dead sweep workers on this host -> FAIL `stale` (their points are retried).
    `mine` are the trial numbers this process runs. Workers on other hosts are left alone."""
    for t in trials:
        w = t.user_attrs.get("worker")
        if t.state.name == "RUNNING" and w and w["host"] == HOST and t.number not in mine and not _alive(w["pid"]):
            close(study, t.number, "FAIL", fail="stale")


def _enqueue_missing(study, spec, trials):
    """Enqueue every point (grid) or retry (search) that no counting trial holds. Returns how many."""
    held = {t.user_attrs["name"] for t in trials if _counts(t)}
    todo = []
    if spec.grid:
        todo = [(trial_name(p), p) for p in spec.points()]
    for t in trials:      # retryable failures of search trials: the same values again
        if spec.search and "name" in t.user_attrs and _fail_kind(t) in RETRYABLE:
            todo.append((t.user_attrs["name"], t.user_attrs["values"]))
    n = 0
    for name, values in todo:
        if name not in held:
            held.add(name)
            study.enqueue_trial(values if spec.search else {}, user_attrs={"name": name, "values": values})
            n += 1
    return n


def _is_duplicate(trial, trials):
    name = trial.user_attrs["name"]
    return any(t.number < trial.number and _counts(t) and t.user_attrs["name"] == name for t in trials)


def claim(study, spec, mine):
    """The next trial for this worker (an optuna Trial with user attrs name/values), or None when
    every point is held. `mine`: trial numbers this process runs now."""
    optuna = _optuna()
    dists = distributions(spec) if spec.search else None
    for _ in range(100):
        trials = study.get_trials(deepcopy=False)
        reclaim_stale(study, trials, mine)
        trials = study.get_trials(deepcopy=False)
        waiting = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
        n_held = sum(_counts(t) for t in trials)
        if not waiting:
            if _enqueue_missing(study, spec, trials):
                continue
            if not spec.search or n_held >= spec.trials:
                return None
        trial = study.ask(dists)
        attrs = study._storage.get_trial(trial._trial_id).user_attrs
        if "name" not in attrs:
            if not spec.search or waiting:   # the queue emptied under us (another worker took the last point)
                close(study, trial, "FAIL", fail="empty")
                continue
            values = dict(trial.params)
            name = f"t{trial.number:03d}_{trial_name(values)}"
            trial.set_user_attr("name", name)
            trial.set_user_attr("values", values)
        trials = study.get_trials(deepcopy=False)
        me = next(t for t in trials if t.number == trial.number)
        if _is_duplicate(me, trials):
            close(study, trial, "FAIL", fail="duplicate")
            continue
        trial.set_user_attr("worker", {"host": HOST, "pid": os.getpid()})
        return trial
    raise UserError("could not claim a trial after 100 tries; is another worker enqueueing without end?")


def finished_trials(study):
    """Trials of the study that hold a point (the report's rows), sorted by number."""
    return sorted((t for t in study.get_trials(deepcopy=False) if _counts(t)), key=lambda t: t.number)
