"""GPU $/hr for the end-of-run cost estimate (RunPod on-demand, community cloud).

Prices as listed on 2026-01-01 in the user's notes and docs/runpod_specs.md; pass
--gpu-price to use your own. Keys are matched as substrings of the CUDA device name.
"""
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


def price_for(device_name):
    """$/hr for a device name, or None when it is not in the table (CPU runs cost nothing here)."""
    for key in sorted(GPU_PRICE_PER_HR, key=len, reverse=True):
        if key.lower() in device_name.lower():
            return GPU_PRICE_PER_HR[key]
    return None
