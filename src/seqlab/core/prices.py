"""GPU $/hr for the end-of-run cost estimate (RunPod on-demand, community cloud).

Prices as listed on 2026-01-01 in the user's notes and docs/runpod_specs.md; pass
--gpu-price to use your own. A key matches a CUDA device name when its words appear in the
name as whole words ("A40" is not the "A4000" of "NVIDIA RTX A4000"); the longest key wins.
"""
import re

PRICES_DATE = "2026-01-01"
GPU_PRICE_PER_HR = {
    "H200": 3.59,
    "H100": 2.69,
    "A100": 1.64,
    "L40S": 0.86,
    "L40": 0.99,
    "A40": 0.40,
    "RTX 6000 Ada": 0.77,
    "RTX 4090": 0.69,
    "RTX 3090": 0.43,
    "A6000": 0.49,
}


def _words(name):
    """'NVIDIA A100-SXM4-80GB' -> ['nvidia', 'a100', 'sxm4', '80gb']."""
    return re.findall(r"[a-z0-9]+", name.lower())


def match(device_name):
    """The table key whose words occur, consecutively and whole, in the device name (the longest
    such key), or None."""
    words = _words(device_name)
    best = None
    for key in GPU_PRICE_PER_HR:
        k = _words(key)
        if any(words[i:i + len(k)] == k for i in range(len(words) - len(k) + 1)):
            if best is None or len(k) > len(_words(best)):
                best = key
    return best


def price_for(device_name):
    """$/hr for a device name, or None when it is not in the table (CPU runs cost nothing here)."""
    key = match(device_name)
    return None if key is None else GPU_PRICE_PER_HR[key]


def cost_line(price, seconds, gpus_used, gpus_visible):
    """(text, usd) for the end-of-run log: usd = price ($/hr per GPU) x gpus_used x seconds / 3600,
    in US dollars, or None when the price is unknown.

    gpus_used: GPUs this run computed on (on this machine); gpus_visible: CUDA devices this machine
    shows. A pod bills every GPU it has, so when some sat idle the line says so and gives the
    whole pod's cost beside the run's.
    """
    if price is None:
        return "unknown GPU price (pass --gpu-price)", None
    usd = price * gpus_used * seconds / 3600
    text = f"${usd:.2f} at ${price:.2f}/hr" + (f" x {gpus_used} GPUs" if gpus_used > 1 else "")
    if gpus_visible > gpus_used:
        text += (f" (billed for the {gpus_used} GPU(s) used; {gpus_visible - gpus_used} of {gpus_visible} GPUs "
                 f"on this pod sat idle: the pod costs ${price * gpus_visible * seconds / 3600:.2f}; "
                 f"use torchrun --nproc_per_node {gpus_visible})")
    return text, usd
