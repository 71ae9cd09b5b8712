"""Experiment hooks (decision log 5.1): a registry, read-only forward hooks, update hooks.

--hook NAME[:k=v,...] enables one. Two kinds:
  forward  observe activations during training forwards and report statistics at each eval
           (rows {"event": "hook", ...} in metrics.jsonl). They must not change what they see:
           a hook that returns a value or modifies a tensor in place raises HookError.
  update   transform gradients between backward and the optimizer step (after unscaling,
           before the engine's global-norm clip).
Every run records the enabled hooks (hook_list) in config.json and in its checkpoints.
"""
import torch

FORWARD, UPDATE = "forward", "update"
REGISTRY = {}  # name -> (kind, factory, doc)


class HookError(RuntimeError):
    """A hook broke its contract (a forward hook changed what it observed)."""


def register(name, kind):
    def deco(factory):
        REGISTRY[name] = (kind, factory, (factory.__doc__ or "").strip().splitlines()[0])
        return factory
    return deco


def parse_spec(spec):
    """'noise:std=1e-3,seed=1' -> ('noise', {'std': 0.001, 'seed': 1})."""
    name, _, rest = spec.partition(":")
    kwargs = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"hook option '{item}' in '{spec}' is not key=value")
        try:
            kwargs[key] = int(value)
        except ValueError:
            try:
                kwargs[key] = float(value)
            except ValueError:
                kwargs[key] = value
    return name, kwargs


def _tensors(x):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (tuple, list)):
        for v in x:
            yield from _tensors(v)


def read_only(name, fn):
    """Wrap a forward hook so that returning a value or mutating inputs/outputs raises.

    In-place changes are caught by the tensors' version counters, which every in-place op bumps.
    """
    def guarded(module, inputs, output):
        seen = list(_tensors(inputs)) + list(_tensors(output))
        versions = [t._version for t in seen]
        result = fn(module, inputs, output)
        if any(t._version != v for t, v in zip(seen, versions)):
            raise HookError(f"forward hook '{name}' modified a tensor it observes in place")
        if result is not None:
            raise HookError(f"forward hook '{name}' returned a value, which would replace the module output")
    return guarded


def observed_modules(model):
    """The modules forward hooks watch: the model's blocks (or layers) when it has them."""
    for attr in ("blocks", "layers"):
        if hasattr(model, attr):
            return [(f"{attr}.{i}", m) for i, m in enumerate(getattr(model, attr))]
    return list(model.named_children())


def _positive(hook, key, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{hook}: {key} must be a positive number, got {value!r}")


@register("act_stats", FORWARD)
class ActStats:
    """Activation statistics of every block output: mean, std, max |x|, fraction |x| > 6 std. Option every=N."""

    def __init__(self, every=10):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"act_stats: every must be a positive integer, got {every!r}")
        self.every, self.calls, self.sums, self.count = every, 0, {}, {}

    def __call__(self, name):
        def hook(module, inputs, output):
            if not module.training or self.calls % self.every:
                return
            x = output[0] if isinstance(output, tuple) else output
            x = x.detach().float()
            std = x.std()
            stats = {"mean": x.mean(), "std": std, "absmax": x.abs().max(), "outlier_frac": (x.abs() > 6 * std).float().mean()}
            acc = self.sums.setdefault(name, {k: 0.0 for k in stats})
            for k, v in stats.items():
                acc[k] += float(v)
            self.count[name] = self.count.get(name, 0) + 1
        return hook

    def step(self):
        self.calls += 1

    def report(self):
        out = {name: {k: v / self.count[name] for k, v in acc.items()} for name, acc in self.sums.items()}
        self.sums, self.count = {}, {}
        return out


@register("identity", UPDATE)
def identity():
    """Leave gradients as they are (the default update rule; proves the plumbing)."""
    return lambda model, step: None


@register("clip", UPDATE)
def clip(value=1.0):
    """Clip every gradient element to [-value, value]."""
    _positive("clip", "value", value)
    return lambda model, step: torch.nn.utils.clip_grad_value_(model.parameters(), float(value))


@register("noise", UPDATE)
def noise(std=1e-4, seed=0):
    """Add N(0, std^2) noise to every gradient; drawn from (seed, step) so resume is exact."""
    _positive("noise", "std", std)
    if not isinstance(seed, int):
        raise ValueError(f"noise: seed must be an integer, got {seed!r}")
    gens = {}   # one generator per device; the noise is drawn where the gradient lives (no host copy)

    def hook(model, step):
        for g in gens.values():
            g.manual_seed(int(seed) * 1_000_003 + step)
        for p in model.parameters():
            if p.grad is None:
                continue
            if p.grad.device not in gens:
                gens[p.grad.device] = torch.Generator(device=p.grad.device).manual_seed(int(seed) * 1_000_003 + step)
            z = torch.randn(p.grad.shape, generator=gens[p.grad.device], device=p.grad.device)
            p.grad.add_(z.to(p.grad.dtype), alpha=float(std))
    return hook


@register("project", UPDATE)
def project():
    """Project each weight matrix's gradient orthogonal to the weight (norm-preserving to first order)."""
    def hook(model, step):
        for p in model.parameters():
            if p.grad is not None and p.dim() >= 2:
                w = p.detach()
                p.grad.sub_(w * (p.grad * w).sum() / (w * w).sum().clamp_min(1e-12))
    return hook


class HookSet:
    """The hooks of one run, built from --hook specs."""

    def __init__(self, specs):
        self.specs, self.forward, self.update = [], [], []
        for spec in specs:
            name, kwargs = parse_spec(spec)
            if name not in REGISTRY:
                raise ValueError(f"unknown hook '{name}'; known: {', '.join(sorted(REGISTRY))}")
            kind, factory, _ = REGISTRY[name]
            try:
                hook = factory(**kwargs)
            except TypeError as e:
                raise ValueError(f"hook '{spec}': {e}") from None
            (self.forward if kind == FORWARD else self.update).append((name, hook))
            self.specs.append(spec)
        self._handles = []

    def attach(self, model):
        for name, hook in self.forward:
            for mname, module in observed_modules(model):
                self._handles.append(module.register_forward_hook(read_only(name, hook(mname))))

    def after_forward(self):
        for _, hook in self.forward:
            hook.step()

    def apply_update(self, model, step):
        for _, hook in self.update:
            hook(model, step)

    def report(self):
        return {name: hook.report() for name, hook in self.forward}
