#!/usr/bin/env bash
# Train the shipped checkpoints on one GPU within a fixed time, then evaluate the VAE there.
#
#   DATA=/path/to/datasets BUDGET=330 bash scripts/train-gpu.sh   # from the repository root
#
# Several recipes train side by side on the one GPU (each small net leaves it mostly idle); each run
# gets --time-budget, so it trains the whole epochs that fit and records the equivalent --epochs
# command. The VAE with the best validation -ELBO becomes checkpoints/mnist-vae and is evaluated on
# the whole test split. Everything lands in RESULTS (default runs/gpu/results.tar.gz).
set -u
DATA=${DATA:?set DATA to the data folder (docs/data.md)}
RUNS=${RUNS:-runs/gpu}
BUDGET=${BUDGET:-330}
DEVICE=${DEVICE:-cuda}
EXTRA=${EXTRA:-}          # extra flags for every run (smoke tests: --limit 2000)
EVAL_EXTRA=${EVAL_EXTRA:-}
PY=${PYTHON:-python3}
RESULTS=${RESULTS:-$RUNS/results.tar.gz}
# shellcheck source=scripts/gpu-runs.sh
source "$(dirname "$0")/gpu-runs.sh"

MNIST=(--data-dir "$DATA/mnist" --epochs 1000)
PHOTO=(--data-dir "$DATA/train400" --epochs 1000 --batch-size 64)
# the recipes of docs/training.md's table, spelled out whole: the preset has since become vae-c's
train vae-a --preset mnist-vae "${MNIST[@]}" --hidden 32 64 --extra-convs 0 --latent-dim 32 &
train vae-b --preset mnist-vae "${MNIST[@]}" --hidden 64 128 --extra-convs 1 --latent-dim 32 &
train vae-c --preset mnist-vae "${MNIST[@]}" --hidden 64 128 --extra-convs 2 --latent-dim 64 &
train photo-a --preset photo-denoiser "${PHOTO[@]}" &
train photo-b --preset photo-denoiser "${PHOTO[@]}" --hidden 32 64 128 256 &
wait

best=$(best_run "vae-*")
echo "best vae: $best" >> "$RUNS/status"
if [ -n "$best" ]; then
    rm -rf checkpoints/mnist-vae
    mkdir -p checkpoints/mnist-vae
    cp "$RUNS/$best/config.json" "$RUNS/$best/model.safetensors" checkpoints/mnist-vae/
    $PY -m model.evaluate --checkpoint checkpoints/mnist-vae --data-dir "$DATA/mnist" \
        --out docs/eval/mnist-vae --device "$DEVICE" --k 1000 --k-big 5000 --k-big-images 1000 \
        --update-checkpoint $EVAL_EXTRA > "$RUNS/eval-vae.log" 2>&1
    echo "eval exit $?" >> "$RUNS/status"
fi
tar czf "$RESULTS" --exclude=.state "$RUNS"/*.log "$RUNS/status" "$RUNS/env.txt" \
    "$RUNS"/vae-*/ "$RUNS"/photo-*/ checkpoints/mnist-vae docs/eval/mnist-vae
cat "$RUNS/status"
