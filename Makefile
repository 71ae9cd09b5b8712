# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first, on its own, only when the environment has none: a GPU pod's CUDA
# torch (seen through --system-site-packages) is never replaced.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo demo-mdn test test-slow bench

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -r requirements.txt
	touch $@

install: $(VENV)/.installed

# Embedded corpus -> ~2.5 min of CPU training (2 cores) -> eval + sample + loss curve in results/demo/.
demo: install
	$(PY) scripts/prepare_text.py --out-dir data/pydoc --overwrite
	$(PY) src/train_char.py --data-dir data/pydoc --out-dir out/demo --overwrite \
		--n-layer 4 --n-head 4 --n-embd 128 --context 128 --batch-size 16 --dropout 0.0 \
		--lr 1e-3 --schedule cosine --warmup 100 --min-lr 1e-4 --max-steps 1000 --eval-every 200
	$(PY) src/eval_char.py --ckpt out/demo/best.pt --output-dir results/demo --max-new-tokens 400
	@echo "demo done: run folder out/demo/ (config.json, metrics.jsonl, train.log, best.pt, last.pt);"
	@echo "           results/demo/ (eval.json, sample.txt, loss_curve.png)"

# one thread per process: the tests use tiny models, where thread hand-offs cost more than they give
# Family 2 in miniature: 200k zeta zeros computed here -> a small SpacingMDN -> eval with baselines.
demo-mdn: install
	$(PY) scripts/prepare_continuous_2M.py --n-zeros 200000 --out-dir data/demo_zeta --overwrite --no-report
	OMP_NUM_THREADS=1 $(PY) src/train_mdn.py --data-dir data/demo_zeta --out-dir out/demo_mdn --overwrite --preset cpu \
		--input-features spacing+count --count-window 32 --max-steps 400 --eval-every 100 --warmup 50
	$(PY) src/eval_mdn.py --ckpt out/demo_mdn/best.pt --output-dir results/demo_mdn --rollout-windows 8

test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests

# the slower checks left out of `make test`: --compile with the default backend (inductor) in every
# family, minutes per family on a CPU (the suite runs the same tests with the eager backend)
test-slow: install
	SEQLAB_SLOW_TESTS=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q tests/test_pod_paths.py -k inductor

# figures to out/bench/ (scratch); `make bench SAVE=--save` rewrites the committed results/bench/
bench: install
	for b in scripts/bench_*.py; do $(PY) $$b $(SAVE) || exit 1; done
