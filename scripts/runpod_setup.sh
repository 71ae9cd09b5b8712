#!/usr/bin/env bash
# Run on the pod after unpacking the tarball: checksums, GPU report, install, smoke run, commands.
#
#   tar xzf runpod_package.tar.gz && bash scripts/runpod_setup.sh [--no-install] [--no-smoke]
#
# Installs requirements.txt without touching the pod's CUDA torch (the torch line is skipped
# when torch is importable), checks that torch against the floor in requirements.txt, then trains
# a 20-step smoke run on the embedded corpus. docs/runpod_specs.md: the first-pod-run checklist.
set -euo pipefail
cd "$(dirname "$0")/.."
install=1; smoke=1
for a in "$@"; do
  case "$a" in
    --no-install) install=0 ;; --no-smoke) smoke=0 ;;
    *) echo "error: unknown argument '$a' (use --no-install, --no-smoke)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python}

echo "== checksums"
if [ -f MANIFEST.sha256 ]; then
  sha256sum --quiet -c MANIFEST.sha256 || { echo "error: checksum mismatch: the tarball is damaged; send it again" >&2; exit 1; }
  echo "all $(wc -l < MANIFEST.sha256) files match MANIFEST.sha256 (commit $(cat GIT_COMMIT 2>/dev/null || echo unknown))"
else
  echo "error: MANIFEST.sha256 missing: run this from an unpacked package_runpod.sh tarball" >&2; exit 1
fi

echo "== GPU"
vram_gib=0
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=index,name,memory.total,compute_cap,driver_version --format=csv
  vram_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
  vram_gib=$((vram_mib / 1024))
  ngpu=$(nvidia-smi -L | wc -l)
else
  echo "no nvidia-smi: CPU only"; ngpu=0
fi

if [ "$install" = 1 ]; then
  echo "== install"
  if $PY -c "import torch" 2>/dev/null; then
    echo "keeping the installed torch $($PY -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)')"
    grep -v -E '^\s*torch([<>=!~ ]|$)' requirements.txt | $PY -m pip install -q -r /dev/stdin
  else
    $PY -m pip install -q -r requirements.txt
  fi
fi

echo "== torch"
# every script needs torch >= the floor of requirements.txt (seqlab.core.device.TORCH_FLOOR)
floor=$(sed -n -E 's/^torch>=([0-9][0-9.]*).*/\1/p' requirements.txt)
have=$($PY -c 'import torch; print(torch.__version__)' 2>/dev/null) || {
  echo "error: torch does not import with $PY: run this script without --no-install, or pip install 'torch>=$floor'" >&2; exit 1; }
if ! $PY -c 'import re, sys; v = lambda s: tuple(map(int, re.match(r"(\d+)\.(\d+)", s).groups())); sys.exit(v(sys.argv[1]) < v(sys.argv[2]))' "$have" "$floor"; then
  echo "error: this pod's torch $have is older than $floor (requirements.txt), which every script needs: start the pod from a PyTorch >= $floor template (>= 2.7 for --kernels auto), or pip install 'torch>=$floor' if its driver supports CUDA 12" >&2
  exit 1
fi
echo "torch $have >= $floor (requirements.txt): ok; CUDA build $($PY -c 'import torch; print(torch.version.cuda)'), GPU visible to torch: $($PY -c 'import torch; print(torch.cuda.is_available())')"

if [ "$smoke" = 1 ]; then
  echo "== smoke run (20 steps)"
  # scratch folders, so packaged data is never replaced
  $PY scripts/prepare_text.py --out-dir data/_smoke_text --overwrite
  $PY src/train_char.py --data-dir data/_smoke_text --out-dir out/smoke --overwrite --max-steps 20 --eval-every 10 \
    --n-layer 2 --n-embd 64 --context 64 --sample-tokens 20
fi

echo "== recommended commands (GPU memory ${vram_gib} GiB, ${ngpu} GPU(s))"
if   [ "$vram_gib" -ge 70 ]; then bs_mdn=1024; bs_char=128; bs_hyb=64
elif [ "$vram_gib" -ge 40 ]; then bs_mdn=512;  bs_char=64;  bs_hyb=32
elif [ "$vram_gib" -ge 20 ]; then bs_mdn=256;  bs_char=32;  bs_hyb=16
else                              bs_mdn=64;   bs_char=16;  bs_hyb=8; fi
launch="python"
[ "$ngpu" -gt 1 ] && launch="torchrun --nproc_per_node $ngpu"
cat <<CMDS
text:    python scripts/prepare_text.py [--input FILE]        # data/pydoc from the embedded corpus
char:    $launch src/train_char.py --data-dir data/pydoc --out-dir out/C1 --batch-size $bs_char --use-amp
mdn E0:  $launch src/train_mdn.py --data-dir data/continuous_2M --out-dir out/E0 --seed 7 --batch-size $bs_mdn --use-amp
postfix: $launch src/train_mdn_postfix.py --data-dir data/continuous_2M --out-dir out/E5 --seed 7 \\
           --slot-id-mode permute_per_batch --use-aux-loss --early-stop --patience 800 --batch-size $bs_mdn --use-amp
hybrid:  $launch src/train_hybrid.py --data-dir data/pydoc --out-dir out/H1 --batch-size $bs_hyb --use-amp
kernels: pip install fla-core            # fla's kernels alone (needs torch >= 2.7, triton >= 3.3)
         pip install packaging ninja wheel && pip install --no-build-isolation mamba-ssm   # builds against this torch
         python -m pytest -q tests/test_kernels.py        # on a GPU: no failure, the CUDA kernel tests pass
           # then add --kernels auto to the hybrid command; its log says which kernels run, and why not (WARNING)
(--batch-size is per GPU under torchrun; the global batch is batch x GPUs)

bring results back:
  tar czf results_\$(hostname).tar.gz out/<run>/ results/ && runpodctl send results_\$(hostname).tar.gz
CMDS
