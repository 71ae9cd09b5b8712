"""seqlab: the package shared by every model family of this repo.

core/ (engine, checkpoints, run folders, CLI, hooks, plots) serves three families: text/ (char
transformer), zeta/ + mdn/ (zeta-zero spacings and SpacingMDN), hybrid/ (RWKV/Mamba LM);
core/registry.py maps checkpoint family names to model classes. Entry scripts in src/ import it
directly (`python src/x.py` puts src/ on sys.path).
"""
