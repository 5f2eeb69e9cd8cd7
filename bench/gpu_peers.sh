#!/usr/bin/env bash
# hetacumn and cryoDRGN side by side on a lent GPU machine (the workplace's `device` tool), in one call:
#   1. installs the wheels carried in .whl (cryoDRGN 4.3.1 and what the machine's image lacks: the list and the
#      download command are bench/gpu_wheels.txt) beside the image's own torch; bench/.peers-venv points at them;
#   2. checks hetacumn's CUDA path on a tiny set (simulate, train, infer, volume) and stops there if it fails;
#   3. bench/peers.py on the two-state set (one budget: the lease is 15 minutes of device time in all);
#   4. bench/inference_scaling.py with the models it trained, while time is left.
# Everything that comes back is written under $OUT (the tool's folder; bench/out/gpu elsewhere).
# Scale by environment: N_IMAGES, BUDGET_MIN, INFER_SIZES, TOTAL_S (the whole script's limit), DEVICE.
set -uo pipefail
OUT=${OUT:-bench/out/gpu}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
N_IMAGES=${N_IMAGES:-20000}
BUDGET_MIN=${BUDGET_MIN:-4}
INFER_SIZES=${INFER_SIZES:-20000,100000}
TOTAL_S=${TOTAL_S:-560}
TAG=${TAG:-gpu}
METHODS=${METHODS:-hetacumn,cryodrgn-abinit-het,cryodrgn-train_vae}
SKIP_CHECK=${SKIP_CHECK:-0}  # 1: no CUDA path check (a rerun on a lease already checked)
WORK=bench/out/gpu_work
mkdir -p "$OUT" "$WORK"
exec > >(tee "$OUT/log.txt") 2>&1
left() { echo $((TOTAL_S - SECONDS)); }
step() { echo "=== $(date -u +%T) (${SECONDS} s) $*"; }

collect() {
    step "collecting"
    cp BENCHMARKS.md "$OUT/BENCHMARKS.md"
    cp "$WORK"/peers/results_"$TAG".json "$OUT/" 2>/dev/null
    tar czf "$OUT/logs.tgz" --exclude='*.mrcs' --exclude='*.mrc' --exclude='*.pt' --exclude='*.pkl' \
        --exclude='*.npy' "$WORK" 2>/dev/null
}
trap collect EXIT

if [ -d .whl ]; then
    step "installing the carried wheels"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/site
    mkdir -p bench/.peers-venv/bin
    printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v "$PY")" > bench/.peers-venv/bin/python
    printf '#!/bin/sh\nexec %s /tmp/site/bin/cryodrgn "$@"\n' "$(command -v "$PY")" > bench/.peers-venv/bin/cryodrgn
    chmod +x bench/.peers-venv/bin/python bench/.peers-venv/bin/cryodrgn
fi
export PYTHONPATH=$PWD/src:$PWD/bench${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
case $METHODS in *cryodrgn*) bench/.peers-venv/bin/cryodrgn --version 2>&1 | tail -n 3 \
    && bench/.peers-venv/bin/cryodrgn --version >/dev/null 2>&1 || { echo "cryoDRGN does not start"; exit 1; } ;; esac

check=$WORK/check
hc() { timeout "$(left)" "$PY" -m hetacumn.cli.main "$@"; }
[ "$SKIP_CHECK" = 1 ] || { step "hetacumn's $DEVICE path on 600 images"
hc simulate -o "$check/data" --n-images 600 --box 32 --apix 5 --snr 1 --seed 0 --device "$DEVICE" --overwrite \
    --proportions 0.5,0.5 > "$check.simulate.log" 2>&1 \
  && hc train "$check/data/particles.star" -o "$check/run" --max-minutes 0.3 --device "$DEVICE" --overwrite \
    > "$check.train.log" 2>&1 \
  && hc infer "$check/run/checkpoint.pt" "$check/data/particles.star" -o "$check/infer" --device "$DEVICE" \
    --overwrite > "$check.infer.log" 2>&1 \
  && hc evaluate --poses "$check/infer/poses.pkl" --true-poses "$check/data/truth/poses.pkl" --box 32 \
    -o "$check/metrics.json" --overwrite > "$check.evaluate.log" 2>&1 \
  || { tail -n 25 "$check".*.log; echo "hetacumn's $DEVICE path failed"; exit 1; }
grep -h "images/s\|final poses\|stopped after" "$check/run/run.log" | tail -n 4
"$PY" -c "import json; m = json.load(open('$check/metrics.json')); print('check: median rotation error',
           round(m['poses']['rotation']['median_angle_deg'], 1), 'deg after 0.3 min')"; }

step "bench/peers.py: $N_IMAGES images, budget $BUDGET_MIN min (limit $(left) s)"
timeout "$(left)" "$PY" bench/peers.py --datasets two --n-images "$N_IMAGES" \
    --methods "$METHODS" --budgets "$BUDGET_MIN" --amortization-methods '' \
    --max-scored 3 --threads 4 --jobs 3 --device "$DEVICE" --tag "$TAG" --workdir "$WORK/peers"
echo "peers.py exited with $?"

runs=$WORK/peers/runs/two_n${N_IMAGES}_box64_snr0.1_seed0
step "bench/inference_scaling.py: $INFER_SIZES images (limit $(left) s)"
[ -f "${runs}_hetacumn/checkpoint.pt" ] && [ "$(left)" -gt 30 ] && \
timeout "$(left)" "$PY" bench/inference_scaling.py --hetacumn-checkpoint "${runs}_hetacumn/checkpoint.pt" \
    --train-vae-run "${runs}_cryodrgn-train_vae" --abinit-run "${runs}_cryodrgn-abinit-het" \
    --abinit-stopped-after "$BUDGET_MIN" --sizes "$INFER_SIZES" --search-images 1000 --threads 4 \
    --device "$DEVICE" --tag "$TAG" --workdir "$WORK/peers"
echo "inference_scaling.py exited with $?"
