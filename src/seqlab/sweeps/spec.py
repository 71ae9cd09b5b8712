"""The sweep spec (a YAML file): which train script, its fixed flags, the varied ones (a grid or a
search), the metric, the reference arm, and an optional race (pruner). See docs/sweeps.md.

A bad spec is refused with one line naming the key (UserError), before anything runs.
"""
import hashlib
import itertools
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from seqlab.core.errors import UserError
from seqlab.core.paths import REPO_ROOT

KEYS = {"name", "script", "flags", "grid", "search", "trials", "race", "metric", "reference", "seed-key", "extra"}
# flags the sweep sets itself for every trial
RESERVED = {"out-dir", "resume", "overwrite"}
# eval metrics each trainer logs (one per family; tests/test_sweep.py checks the char row on a real run)
EVAL_METRICS = {
    "train_char": ("val_loss", "val_bpc", "val_ppl"),
    "train_hybrid": ("val_loss", "val_bpc", "val_ppl"),
    "train_mdn": ("val_nll", "val_nll_last", "sel_nll"),     # sel_nll: with a train-tail selection split
    "train_mdn_memory": ("val_nll", "val_nll_last", "sel_nll"),
    "train_mdn_postfix": ("val_nll", "sel_nll"),
}
PRUNERS = {"median", "hyperband", "successive_halving", "none"}
RACE_KEYS = {"pruner", "min-steps", "startup-trials"}
SEARCH_KINDS = {"log", "uniform", "int", "choice"}
_help_cache = {}


@dataclass
class Spec:
    name: str
    script: str
    metric: str
    flags: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)
    trials: int = 0
    race: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    seed_key: str = "seed"
    extra: list = field(default_factory=list)   # [{when: {flag: value}, flags: {...}}]: flags for some points

    def trial_flags(self, values):
        """Every flag of the trial with these varied values: fixed, varied, and matching `extra`."""
        flags = {**self.flags, **values}
        for rule in self.extra:
            if all(values.get(k) == v for k, v in rule["when"].items()):
                flags.update(rule["flags"])
        return flags

    @property
    def varied(self):
        return list(self.grid) + list(self.search)

    @property
    def arm_keys(self):
        """The varied flags that define an arm: all but the seed (seeds are an arm's samples)."""
        return [k for k in self.varied if k != self.seed_key]

    def points(self):
        """The grid points in spec order, each a dict {flag: value}."""
        keys = list(self.grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*(self.grid[k] for k in keys))]

    def max_steps(self):
        return self.flags.get("max-steps")

    def digest(self):
        """Hash of what the trials compute (name excluded): a study refuses a changed spec."""
        blob = json.dumps({k: getattr(self, k) for k in ("script", "metric", "flags", "grid", "search", "seed_key", "extra")},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def trial_name(values):
    """A readable folder name from the varied values: layout-RRRR_seed-1."""
    parts = []
    for key, value in values.items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{key}-{re.sub(r'[^A-Za-z0-9.+-]', '', text)}")
    return "_".join(parts) or "trial"


def arm_name(values, spec):
    return trial_name({k: values[k] for k in spec.arm_keys if k in values}) if spec.arm_keys else "all"


def flag_args(flags):
    """{flag: value} -> argv: True is `--flag`, False leaves it out, a list repeats the flag."""
    argv = []
    for key, value in flags.items():
        if value is True:
            argv.append(f"--{key}")
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            for v in value:
                argv += [f"--{key}", str(v)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def script_flags(script):
    """The long flags a script accepts, read from its --help (cached per process)."""
    if script not in _help_cache:
        out = subprocess.run([sys.executable, script, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise UserError(f"script: {script} --help failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
        _help_cache[script] = set(re.findall(r"--([a-z][a-z0-9-]*)", out.stdout))
    return _help_cache[script]


def _need(cond, message):
    if not cond:
        raise UserError(message)


def _check_search(search):
    for key, dist in search.items():
        _need(isinstance(dist, dict) and len(dist) == 1 and next(iter(dist)) in SEARCH_KINDS,
              f"search.{key}: give one of {sorted(SEARCH_KINDS)}, e.g. {{log: [1.0e-4, 3.0e-3]}}")
        kind, arg = next(iter(dist.items()))
        if kind == "choice":
            _need(isinstance(arg, list) and arg, f"search.{key}.choice: a non-empty list")
        else:
            _need(isinstance(arg, list) and len(arg) == 2 and all(isinstance(v, (int, float)) for v in arg)
                  and arg[0] < arg[1], f"search.{key}.{kind}: give [low, high] with low < high")
            _need(kind != "log" or arg[0] > 0, f"search.{key}.log: the bounds must be positive")


def parse(raw, check_script=True):
    """Validate a loaded spec dict and return a Spec; UserError names the first bad key."""
    _need(isinstance(raw, dict), "spec: expected a mapping of keys (name, script, flags, grid, metric, ...)")
    unknown = sorted(set(raw) - KEYS)
    _need(not unknown, f"{unknown[0] if unknown else ''}: unknown key (known: {', '.join(sorted(KEYS))})")
    for key in ("name", "script", "metric"):
        _need(isinstance(raw.get(key), str) and raw[key], f"{key}: required (a string)")
    _need(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", raw["name"]), f"name: {raw['name']!r} must be a plain folder name")
    for key in ("flags", "grid", "search", "race", "reference"):
        _need(isinstance(raw.get(key, {}), dict), f"{key}: expected a mapping")
    spec = Spec(name=raw["name"], script=raw["script"], metric=raw["metric"], flags=dict(raw.get("flags") or {}),
                grid=dict(raw.get("grid") or {}), search=dict(raw.get("search") or {}), trials=raw.get("trials", 0),
                race=dict(raw.get("race") or {}), reference=dict(raw.get("reference") or {}),
                seed_key=raw.get("seed-key", "seed"), extra=raw.get("extra") or [])
    _need(isinstance(spec.extra, list) and all(isinstance(r, dict) and set(r) == {"when", "flags"}
                                                and isinstance(r["when"], dict) and isinstance(r["flags"], dict)
                                                for r in spec.extra),
          "extra: a list of {when: {flag: value}, flags: {flag: value}}")
    for rule in spec.extra:
        for key in rule["when"]:
            _need(key in spec.varied, f"extra.when.{key}: not a varied flag")
    _need(bool(spec.grid) != bool(spec.search), "grid: give a grid (an ablation matrix) or a search, exactly one"
          if not (spec.grid and spec.search) else "search: a spec has a grid or a search, not both")
    for key, values in spec.grid.items():
        _need(isinstance(values, list) and values, f"grid.{key}: an empty grid; give a non-empty list of values")
        _need(len(set(map(str, values))) == len(values), f"grid.{key}: repeated values")
    if spec.search:
        _check_search(spec.search)
        _need(isinstance(spec.trials, int) and spec.trials > 0, "trials: a search needs a positive number of trials")
    elif "trials" in raw:
        raise UserError("trials: only for a search (a grid runs every point)")
    both = sorted(set(spec.flags) & set(spec.varied))
    _need(not both, f"flags.{both[0] if both else ''}: also varied; give it in one place")
    for key in list(spec.flags) + spec.varied:
        _need(key not in RESERVED, f"{key}: set by the sweep for each trial; remove it")
    _need(isinstance(spec.flags.get("max-steps"), int), "flags.max-steps: required (an integer): the pruner and the "
          "compute accounting need each trial's length")
    stem = Path(spec.script).stem
    _need(stem in EVAL_METRICS, f"script: {spec.script} is not a train script ({', '.join(f'src/{s}.py' for s in EVAL_METRICS)})")
    _need(spec.metric in EVAL_METRICS[stem], f"metric: {spec.metric} is not logged by {spec.script} "
          f"(its eval metrics: {', '.join(EVAL_METRICS[stem])})")
    for key, value in spec.reference.items():
        _need(key in spec.arm_keys, f"reference.{key}: not a varied flag of the arm ({', '.join(spec.arm_keys) or 'none'})")
        _need(key not in spec.grid or value in spec.grid[key], f"reference.{key}: {value!r} is not in grid.{key}")
    if spec.race:
        bad = sorted(set(spec.race) - RACE_KEYS)
        _need(not bad, f"race.{bad[0] if bad else ''}: unknown key (known: {', '.join(sorted(RACE_KEYS))})")
        _need(spec.race.get("pruner", "median") in PRUNERS, f"race.pruner: one of {', '.join(sorted(PRUNERS))}")
        for key in ("min-steps", "startup-trials"):
            _need(isinstance(spec.race.get(key, 0), int) and spec.race.get(key, 0) >= 0, f"race.{key}: an integer >= 0")
    if check_script:
        _need((REPO_ROOT / spec.script).is_file(), f"script: {spec.script} not found (paths are from the repo root)")
        known = script_flags(spec.script)
        extra = {k: None for r in spec.extra for k in r["flags"]}
        for where, keys in (("flags", spec.flags), ("grid", spec.grid), ("search", spec.search), ("extra.flags", extra)):
            for key in keys:
                _need(key in known, f"{where}.{key}: {spec.script} has no flag --{key}")
    return spec


def load(path, check_script=True):
    """Read and validate a spec file."""
    import yaml
    p = Path(path)
    _need(p.is_file(), f"spec {path}: no such file")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"spec {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return parse(raw, check_script)
