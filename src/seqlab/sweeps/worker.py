"""A sweep worker: claims trials from the study and runs each as an ordinary training run
(the spec's train script as a subprocess) in out/<sweep>/<trial name>/, --jobs at once on the
CPU or one per GPU (--gpus, via CUDA_VISIBLE_DEVICES). Several workers (processes, pods) may
share one study; each run reports its evals to its trial through SEQLAB_SWEEP_* variables
(seqlab/core/sweep_link.py), so the pruner can stop it.

SIGTERM/SIGINT: the running trials get SIGTERM (they save last.pt), are marked `interrupted`,
and the same command later resumes them.
"""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from seqlab.core import sweep_link
from seqlab.core.runfolder import read_metrics
from seqlab.sweeps import study as study_mod
from seqlab.sweeps.spec import REPO_ROOT, flag_args

INTERRUPTED_RC = {128 + signal.SIGTERM, 128 + signal.SIGINT, -signal.SIGTERM, -signal.SIGINT, -signal.SIGKILL}


@dataclass
class Running:
    trial: object
    name: str
    out: Path
    proc: subprocess.Popen
    t0: float
    slot: int


def run_metrics(out, metric):
    """What a trial's run folder says: steps reached, eval curve [(step, value)], best value and
    step (min of the metric over evals), whether the sweep pruned it."""
    rows = read_metrics(out / "metrics.jsonl") if (out / "metrics.jsonl").is_file() else []
    curve = [(r["step"], r[metric]) for r in rows if r.get("event") == "eval" and metric in r]
    steps = max((r.get("step", 0) for r in rows if r.get("event") in ("train", "eval", "end")), default=0)
    best = min(curve, key=lambda c: c[1]) if curve else (None, None)
    config = json.loads((out / "config.json").read_text() or "{}") if (out / "config.json").is_file() else {}
    return {"steps": steps, "curve": curve, "best": best[1], "best_step": best[0],
            "pruned": bool(config.get("sweep", {}).get("pruned"))}


class Worker:
    def __init__(self, spec, storage_url, out_root, jobs=1, gpus=None, echo=print):
        self.spec, self.storage_url, self.echo = spec, storage_url, echo
        self.out_root = Path(out_root)
        self.slots = list(gpus) if gpus else [None] * jobs
        self.study = study_mod.open_study(spec, storage_url)
        self.running = {}      # slot -> Running
        self.signal = None

    # ---- one trial -------------------------------------------------------------------------------
    def _start(self, trial, slot):
        name, values = trial.user_attrs["name"], trial.user_attrs["values"]
        out = self.out_root / name
        argv = [sys.executable, self.spec.script, *flag_args(self.spec.trial_flags(values)), "--out-dir", str(out)]
        if (out / "last.pt").is_file():
            argv.append("--resume")
            for step, value in run_metrics(out, self.spec.metric)["curve"]:   # the pruner sees the whole curve
                trial.report(value, step)
            trial.set_user_attr("seconds", self._previous_seconds(name))
        elif (out / "config.json").is_file():
            argv.append("--overwrite")    # killed before its first eval: nothing to resume
        env = dict(os.environ, **{sweep_link.ENV_STORAGE: self.storage_url, sweep_link.ENV_STUDY: self.spec.name,
                                  sweep_link.ENV_TRIAL: str(trial._trial_id), sweep_link.ENV_METRIC: self.spec.metric,
                                  sweep_link.ENV_PRUNER: json.dumps(study_mod.pruner_spec(self.spec))})
        if self.slots[slot] is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.slots[slot])
        logs = self.out_root / "_logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "a") as log:
            proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        where = f"GPU {self.slots[slot]}" if self.slots[slot] is not None else f"slot {slot}"
        self.echo(f"[{self.spec.name}] trial {trial.number} {name}: started on {where}"
                  + (" (resume)" if "--resume" in argv else ""))
        self.running[slot] = Running(trial, name, out, proc, time.time(), slot)

    def _previous_seconds(self, name):
        """Wall seconds already spent on this point by earlier (interrupted) trials."""
        return max((t.user_attrs.get("seconds", 0) for t in self.study.get_trials(deepcopy=False)
                    if t.user_attrs.get("name") == name), default=0)

    def _last_log_line(self, name):
        lines = (self.out_root / "_logs" / f"{name}.log").read_text(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else ""

    def _finish(self, r, rc):
        m = run_metrics(r.out, self.spec.metric)
        seconds = r.trial.user_attrs.get("seconds", 0) + (time.time() - r.t0)
        attrs = {"steps": m["steps"], "max_steps": self.spec.max_steps(), "seconds": round(seconds, 2),
                 "best": m["best"], "best_step": m["best_step"], "out_dir": str(r.out)}
        if rc == 0 and m["pruned"]:
            state, fail = "PRUNED", None
        elif rc == 0 and m["best"] is not None:
            state, fail = "COMPLETE", None
            attrs["value"] = m["best"]
        elif rc in INTERRUPTED_RC:
            state, fail = "FAIL", "interrupted"
        else:
            state, fail = "FAIL", f"rc {rc}"
            attrs["error"] = self._last_log_line(r.name)
        study_mod.close(self.study, r.trial, state, fail=fail, **attrs)
        best = f"{m['best']:.4f}" if m["best"] is not None else "-"
        if attrs.get("error"):
            self.echo(f"[{self.spec.name}] trial {r.trial.number} {r.name}: {attrs['error']}")
        self.echo(f"[{self.spec.name}] trial {r.trial.number} {r.name}: {state.lower()}{f' ({fail})' if fail else ''} "
                  f"at step {m['steps']} | best {self.spec.metric}={best} | {seconds / 60:.1f} min")

    # ---- the loop --------------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        self.signal = signum

    def run(self, poll=0.5):
        """Run trials until no point is left to claim and ours are done. Returns the number run."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        n_run, exhausted = 0, False
        try:
            while True:
                if self.signal is not None:
                    self._interrupt()
                for slot in range(len(self.slots)):
                    if slot not in self.running and not exhausted and self.signal is None:
                        mine = {r.trial.number for r in self.running.values()}
                        trial = study_mod.claim(self.study, self.spec, mine)
                        if trial is None:
                            exhausted = True
                        else:
                            self._start(trial, slot)
                            n_run += 1
                for slot, r in list(self.running.items()):
                    rc = r.proc.poll()
                    if rc is not None:
                        del self.running[slot]
                        self._finish(r, rc)
                if exhausted and not self.running:
                    return n_run
                time.sleep(poll)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _interrupt(self):
        """Forward the signal to every running trial (each saves last.pt), record them, exit."""
        for r in self.running.values():
            r.proc.send_signal(signal.SIGTERM)
        for r in self.running.values():
            try:
                rc = r.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                rc = r.proc.wait()
            self._finish(r, rc if rc in INTERRUPTED_RC else 128 + signal.SIGTERM)
        self.running.clear()
        name = signal.Signals(self.signal).name
        self.echo(f"[{self.spec.name}] {name}: running trials saved last.pt; rerun the same command to resume them")
        raise SystemExit(128 + self.signal)
