"""Family 3: the RWKV/Mamba hybrid char LM: scans, optional fused kernels, blocks, model,
state-handoff streams, engine task, training monitors and memory probes."""
