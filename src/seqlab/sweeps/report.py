"""The sweep report in results/sweep_<name>/: summary.json, summary.md, curves.png, arms.png.

An arm is a setting of the varied flags other than the seed; its samples are the best metric
(min over evals) of its completed trials. Each arm is tested against the reference arm (Welch
t-test and a permutation test, Holm-corrected over the arms). Everything is read from the study,
so a report can be written from any machine that reaches the storage.
"""
import json
from pathlib import Path

from seqlab.core import paths, prices
from seqlab.sweeps import stats
from seqlab.sweeps.spec import arm_name
from seqlab.sweeps.study import finished_trials


def trial_rows(study, spec):
    """One dict per trial that holds a point: name, arm, state, value, steps, seconds, curve."""
    rows = []
    for t in finished_trials(study):
        a = t.user_attrs
        rows.append({"number": t.number, "name": a["name"], "arm": arm_name(a["values"], spec), "values": a["values"],
                     "state": t.state.name, "fail": a.get("fail"), "value": a.get("best"), "best_step": a.get("best_step"),
                     "steps": a.get("steps"), "max_steps": a.get("max_steps") or spec.max_steps(),
                     "seconds": a.get("seconds"), "out_dir": a.get("out_dir") and paths.shown(a["out_dir"]),
                     "curve": sorted((int(s), float(v)) for s, v in t.intermediate_values.items())})
    return rows


def compute_saved(rows):
    """Compute the pruner saved. steps: 1 - (steps trained) / (steps a full run of every trial
    would take). seconds: 1 - spent / estimate, where a pruned trial's full wall time is the mean
    of its arm's completed trials (same config: includes the start-up cost), or, when its arm has
    none, its own seconds x max_steps / steps."""
    done = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED") and r["steps"]]
    full_s = {}
    for r in done:
        if r["state"] == "COMPLETE" and r["seconds"]:
            full_s.setdefault(r["arm"], []).append(r["seconds"])

    def full(r):
        if r["state"] != "PRUNED":
            return r["seconds"] or 0
        same = full_s.get(r["arm"])
        return sum(same) / len(same) if same else (r["seconds"] or 0) * r["max_steps"] / r["steps"]
    steps = sum(r["steps"] for r in done)
    steps_full = sum(r["max_steps"] for r in done)
    spent = sum(r["seconds"] or 0 for r in done)
    est = sum(full(r) for r in done)
    return {"n_pruned": sum(r["state"] == "PRUNED" for r in done), "steps_trained": steps, "steps_full": steps_full,
            "steps_saved_share": 1 - steps / steps_full if steps_full else 0.0, "seconds_spent": round(spent, 1),
            "seconds_full_estimate": round(est, 1), "seconds_saved_share": 1 - spent / est if est else 0.0}


def analyse(rows, spec):
    """Per-arm summaries (completed trials) and the tests of each arm against the reference arm."""
    arms = {}
    for r in rows:
        arms.setdefault(r["arm"], []).append(r)
    ref_name = arm_name(spec.reference, spec) if spec.reference else None
    summary = []
    for name, rs in arms.items():
        vals = [r["value"] for r in rs if r["state"] == "COMPLETE" and r["value"] is not None]
        summary.append({"arm": name, **stats.summarize(vals), "n_pruned": sum(r["state"] == "PRUNED" for r in rs),
                        "n_failed": sum(r["state"] == "FAIL" for r in rs), "values": vals,
                        "reference": name == ref_name})
    tests = []
    ref = next((s for s in summary if s["reference"]), None)
    if ref is not None:
        for s in summary:
            if s is ref:
                continue
            w = stats.welch(s["values"], ref["values"])
            tests.append({"arm": s["arm"], "vs": ref["arm"],
                          "diff": (s["mean"] - ref["mean"]) if s["n"] and ref["n"] else None,
                          "welch_t": w[0] if w else None, "welch_df": w[1] if w else None, "welch_p": w[2] if w else None,
                          "perm_p": stats.permutation(s["values"], ref["values"])})
        for key in ("welch_p", "perm_p"):
            for t, p in zip(tests, stats.holm([t[key] for t in tests])):
                t[key + "_holm"] = p
    return summary, tests


def _f(x, fmt=".4f"):
    return "-" if x is None else format(x, fmt)


def markdown(spec, summary, tests, compute, rows):
    m = spec.metric
    lines = [f"# Sweep {spec.name}: {spec.script}, metric {m} (best over evals, lower is better)", "",
             f"{len(rows)} trials: " + ", ".join(f"{sum(r['state'] == s for r in rows)} {s.lower()}"
                                                 for s in ("COMPLETE", "PRUNED", "FAIL")), "",
             "| arm | n | mean | std | bootstrap 95% CI | pruned | values |", "|---|---|---|---|---|---|---|"]
    for s in sorted(summary, key=lambda s: (s["mean"] is None, s["mean"])):
        ci = f"[{_f(s['ci95'][0])}, {_f(s['ci95'][1])}]"
        ref = " (reference)" if s["reference"] else ""
        lines.append(f"| {s['arm']}{ref} | {s['n']} | {_f(s['mean'])} | {_f(s['std'])} | {ci} | {s['n_pruned']} | "
                     + ", ".join(_f(v) for v in s["values"]) + " |")
    if tests:
        lines += ["", f"Tests against the reference arm {tests[0]['vs']} (two-sided; Holm over {len(tests)} arms):", "",
                  "| arm | mean diff | Welch t | df | p | p (Holm) | permutation p | p (Holm) |",
                  "|---|---|---|---|---|---|---|---|"]
        for t in tests:
            lines.append(f"| {t['arm']} | {_f(t['diff'], '+.4f')} | {_f(t['welch_t'], '.2f')} | {_f(t['welch_df'], '.1f')} | "
                         f"{_f(t['welch_p'], '.3g')} | {_f(t['welch_p_holm'], '.3g')} | {_f(t['perm_p'], '.3g')} | "
                         f"{_f(t['perm_p_holm'], '.3g')} |")
        n_small = min((s["n"] for s in summary), default=0)
        if n_small and n_small <= 3:
            lines.append(f"\nWith {n_small} seeds per arm the exact permutation test cannot go below "
                         f"{2 / __import__('math').comb(2 * n_small, n_small):.2f}; the Welch test leans on normality.")
    lines += ["", f"Pruning: {compute['n_pruned']} trials stopped early; {compute['steps_saved_share']:.1%} of the steps "
              f"and an estimated {compute['seconds_saved_share']:.1%} of the wall time "
              f"({compute['seconds_spent'] / 60:.1f} of {compute['seconds_full_estimate'] / 60:.1f} min) saved.", "",
              "| trial | arm | state | best | at step | steps | minutes |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        state = r["state"].lower() + (f" ({r['fail']})" if r["fail"] else "")
        lines.append(f"| {r['name']} | {r['arm']} | {state} | {_f(r['value'])} | {r['best_step'] or '-'} | "
                     f"{r['steps'] or '-'}/{r['max_steps']} | {_f((r['seconds'] or 0) / 60, '.1f')} |")
    lines += ["", "Figures: curves.png (every trial's eval curve, by arm; pruned ones dashed), arms.png (per-arm values, "
              "mean and bootstrap 95% CI).", f"Prices for pod estimates: seqlab/core/prices.py ({prices.PRICES_DATE})."]
    return "\n".join(lines) + "\n"


def plots(rows, summary, metric, out):
    from seqlab.core import plots as _  # noqa: F401  (selects the Agg backend)
    import matplotlib.pyplot as plt
    arms = sorted({r["arm"] for r in rows})
    colours = {a: plt.get_cmap("tab10")(i % 10) for i, a in enumerate(arms)}
    by_trial = len(arms) == 1          # a race of one config: a colour per trial instead
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for i, r in enumerate(rows):
        if r["curve"]:
            s, v = zip(*r["curve"])
            ax.plot(s, v, color=plt.get_cmap("tab10")(i % 10) if by_trial else colours[r["arm"]], lw=1.2,
                    ls="--" if r["state"] == "PRUNED" else "-", marker="x" if r["state"] == "PRUNED" else None,
                    markevery=[len(s) - 1], alpha=0.85, label=r["name"] if by_trial else None)
    for a in ([] if by_trial else arms):
        ax.plot([], [], color=colours[a], label=a)
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.set_title("eval curves (dashed, x: pruned)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curves.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(summary) + 2), 4.2), dpi=120)
    for i, s in enumerate(sorted(summary, key=lambda s: s["arm"])):
        ax.scatter([i] * len(s["values"]), s["values"], color=colours[s["arm"]], alpha=0.7, zorder=3)
        if s["n"]:
            lo, hi = s["ci95"]
            ax.errorbar([i + 0.15], [s["mean"]], yerr=[[s["mean"] - lo], [hi - s["mean"]]], fmt="o", color="black",
                        capsize=4, zorder=4)
    ax.set_xticks(range(len(summary)))
    ax.set_xticklabels([s["arm"] + (" (ref)" if s["reference"] else "") for s in sorted(summary, key=lambda s: s["arm"])],
                       rotation=20, fontsize=8)
    ax.set_ylabel(f"best {metric}")
    ax.set_title("per arm: trials (dots), mean and bootstrap 95% CI (black)")
    fig.tight_layout()
    fig.savefig(out / "arms.png")
    plt.close(fig)


def write(study, spec, output_dir):
    """Write the four report files; returns the summary dict."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study, spec)
    summary, tests = analyse(rows, spec)
    compute = compute_saved(rows)
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    best = min(done, key=lambda r: r["value"]) if done else None
    data = {"name": spec.name, "script": spec.script, "metric": spec.metric, "flags": spec.flags, "grid": spec.grid,
            "search": spec.search, "race": spec.race, "reference": spec.reference, "arms": summary, "tests": tests,
            "compute": compute, "best_trial": best and {k: best[k] for k in ("name", "value", "out_dir")},
            "trials": [{k: v for k, v in r.items()} for r in rows]}
    (out / "summary.json").write_text(json.dumps(data, indent=2, default=str))
    (out / "summary.md").write_text(markdown(spec, summary, tests, compute, rows))
    if rows:
        plots(rows, summary, spec.metric, out)
    return data
