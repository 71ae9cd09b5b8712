"""The house rules of the package layout (docs/layout.md): no import cycles, short modules,
families that depend only on the core (and mdn on zeta), and a core that imports no family."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "seqlab"
MAX_LINES = 500


def module_name(path):
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path, modules):
    """seqlab modules that `path` imports anywhere (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from seqlab.x import y` imports seqlab.x, and seqlab.x.y when y is a module
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found.update(n for n in names if n in modules)
    return found


def graph():
    files = {module_name(p): p for p in PKG.rglob("*.py")}
    return {m: imports_of(p, files) - {m} for m, p in files.items()}


def test_no_import_cycles():
    g = graph()
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(g[m]):
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_layers():
    """core imports no family; a family imports the core, itself, and (mdn only) zeta."""
    allowed = {"core": {"core"}, "text": {"core", "text"}, "zeta": {"core", "zeta"},
               "mdn": {"core", "zeta", "mdn"}, "hybrid": {"core", "text", "hybrid"}}
    bad = []
    for m, deps in graph().items():
        parts = m.split(".")
        if len(parts) < 3 or parts[1] not in allowed:
            continue
        for d in deps:
            dp = d.split(".")
            if len(dp) >= 2 and dp[1] not in allowed[parts[1]] and d != "seqlab":
                bad.append(f"{m} -> {d}")
    assert not bad, bad


def test_modules_are_short():
    long = {str(p.relative_to(ROOT)): n for p in list(PKG.rglob("*.py")) + list((ROOT / "src").glob("*.py"))
            + list((ROOT / "scripts").glob("*.py")) if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_walker_sees_a_cycle(tmp_path):
    """The cycle test can fail: two modules that import each other are found."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from seqlab.core import errors\nimport seqlab.b\n")
    b.write_text("def f():\n    from seqlab.a import x\n")
    mods = {"seqlab.a", "seqlab.b", "seqlab.core.errors", "seqlab.core"}
    assert imports_of(a, mods) == {"seqlab.core", "seqlab.core.errors", "seqlab.b"}
    assert imports_of(b, mods) == {"seqlab.a"}


def test_committed_checkpoints_still_load():
    """Checkpoints promoted before the package moved into subpackages open with the one loader
    (they store family names and config dicts, never class paths); promoted files hold no
    resume-only state (optimizer, scaler, data position, RNG)."""
    import torch
    from seqlab.core import checkpoint
    paths = sorted((ROOT / "checkpoints").glob("*_best.pt"))
    assert paths, "no committed checkpoints"
    def has_uint32(x):  # torch < 2.6 cannot load uint32 tensors: the floor (2.5) must open every promoted file
        if isinstance(x, torch.Tensor):
            return x.dtype == getattr(torch, "uint32", None)
        if isinstance(x, dict):
            return any(has_uint32(v) for v in x.values())
        return isinstance(x, (list, tuple)) and any(has_uint32(v) for v in x)

    for p in paths:
        raw = torch.load(p, map_location="cpu", weights_only=True)
        assert not {"optimizer", "scaler", "data", "rng"} & set(raw) and not has_uint32(raw), p.name
        model, ck = checkpoint.load_model(p)
        assert sum(t.numel() for t in model.state_dict().values()) > 0
        assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point()), p.name
