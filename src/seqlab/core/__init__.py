"""The shared core: the training engine, checkpoints, run folders, CLI flags, hooks, manifests,
devices, torchrun/DDP, plots, prices, and the causal transformer block every family reuses."""
