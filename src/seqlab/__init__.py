"""seqlab: the package shared by every model family of this repo.

tokenizer, data, models, engine (training loop, checkpoints, run folders), hooks,
metrics and plots. Entry scripts in src/ import it directly (`python src/x.py` puts
src/ on sys.path).
"""
