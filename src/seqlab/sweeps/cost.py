"""Pod cost of a sweep before it runs, from the price table in seqlab/core/prices.py."""
import math

from seqlab.core import prices
from seqlab.core.errors import UserError


def n_trials(spec):
    """Trials the sweep runs at most: the grid's points, or the search's `trials`."""
    return len(spec.points()) if spec.grid else spec.trials


def estimate(spec, gpu, hours_per_trial, n_gpus):
    """Upper bound on the cost of the sweep, assuming each trial runs `hours_per_trial` hours on
    one `gpu` (a key of prices.GPU_PRICE_PER_HR) and `n_gpus` trials run at once (on one pod or
    several). usd = trials x hours x $/hr (pruning only lowers it); wall hours = ceil(trials /
    n_gpus) x hours. Returns a dict and a one-line text."""
    if gpu not in prices.GPU_PRICE_PER_HR:
        raise UserError(f"--estimate: unknown GPU {gpu!r}; one of {', '.join(prices.GPU_PRICE_PER_HR)}")
    n = n_trials(spec)
    price = prices.GPU_PRICE_PER_HR[gpu]
    usd = n * hours_per_trial * price
    wall = math.ceil(n / n_gpus) * hours_per_trial
    text = (f"{spec.name}: {n} trials x {hours_per_trial:g} h on {gpu} at ${price:.2f}/hr (prices.py, "
            f"{prices.PRICES_DATE}) = ${usd:.2f} at most; {wall:g} h wall on {n_gpus} GPU(s)")
    return {"trials": n, "gpu": gpu, "price_per_hr": price, "usd": usd, "wall_hours": wall}, text
