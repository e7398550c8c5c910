#!/usr/bin/env bash
# Train photo-denoiser candidates side by side on one GPU, ship the best by validation, evaluate it.
#
#   BUDGET=300 bash scripts/train-photo-gpu.sh        # from the repository root, data under DATA
#
# Three U-Net widths train at once (each small net leaves the GPU mostly idle), each with
# --time-budget, so it trains the whole epochs that fit and records the equivalent --epochs command,
# and with --sigma-weight-floor SIGMA_FLOOR (0: plain MSE). Candidate folders already in RUNS from an
# earlier run join the choice. The one with the best validation PSNR (20 held-out train400 images, sigma 15/25/50, blind) becomes
# checkpoints/photo-denoiser and is evaluated on BSD68/CBSD68 on the GPU, with BM3D on the first
# BM3D_LIMIT images in BM3D_WORKERS CPU processes. The other candidates get a model-only test run
# for the record (not for choosing). Everything lands in RESULTS.
set -u
DATA=${DATA:-../shared/datasets}
RUNS=${RUNS:-runs/gpu-photo}
BUDGET=${BUDGET:-300}
DEVICE=${DEVICE:-cuda}
BM3D_LIMIT=${BM3D_LIMIT:-20}
BM3D_WORKERS=${BM3D_WORKERS:-14}
EXTRA=${EXTRA:-}          # extra flags for every run (smoke tests: --limit 40)
EVAL_EXTRA=${EVAL_EXTRA:-}
SIGMA_FLOOR=${SIGMA_FLOOR:-0.04}
PY=${PYTHON:-python3}
RESULTS=${RESULTS:-$RUNS/results.tar.gz}
# shellcheck source=scripts/gpu-runs.sh
source "$(dirname "$0")/gpu-runs.sh"

PHOTO=(--preset photo-denoiser --data-dir "$DATA/train400" --epochs 1000 --batch-size 128
       --patches-per-epoch 64000 --sigma-weight-floor "$SIGMA_FLOOR")
train photo-16w "${PHOTO[@]}" &
train photo-24w "${PHOTO[@]}" --hidden 24 48 96 192 &
train photo-32w "${PHOTO[@]}" --hidden 32 64 128 256 &
wait

best=$(best_run "photo-*")
echo "best photo: $best" >> "$RUNS/status"
export OMP_NUM_THREADS=1
if [ -n "$best" ]; then
    rm -rf checkpoints/photo-denoiser
    mkdir -p checkpoints/photo-denoiser
    cp "$RUNS/$best/config.json" "$RUNS/$best/model.safetensors" checkpoints/photo-denoiser/
    $PY -m model.evaluate --checkpoint checkpoints/photo-denoiser --data-dir "$DATA/bsd68" \
        --color-data-dir "$DATA/cbsd68" --out docs/eval/photo-denoiser --device "$DEVICE" \
        --bm3d-limit "$BM3D_LIMIT" --bm3d-workers "$BM3D_WORKERS" --update-checkpoint $EVAL_EXTRA \
        > "$RUNS/eval-photo.log" 2>&1
    echo "eval exit $?" >> "$RUNS/status"
fi
for d in "$RUNS"/photo-*/; do
    name=$(basename "$d")
    [ "$name" = "$best" ] || [ ! -f "$d/config.json" ] && continue
    $PY -m model.evaluate --checkpoint "$d" --data-dir "$DATA/bsd68" --color-data-dir "$DATA/cbsd68" \
        --out "$RUNS/eval-$name" --device "$DEVICE" --no-bm3d --no-known-sigma $EVAL_EXTRA \
        > "$RUNS/eval-$name.log" 2>&1
    echo "eval $name exit $?" >> "$RUNS/status"
done
tar czf "$RESULTS" --exclude=.state "$RUNS"/*.log "$RUNS/status" "$RUNS/env.txt" \
    "$RUNS"/photo-*/ "$RUNS"/eval-*/ checkpoints/photo-denoiser docs/eval/photo-denoiser
cat "$RUNS/status"
