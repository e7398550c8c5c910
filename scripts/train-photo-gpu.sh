#!/usr/bin/env bash
# One GPU window of photo denoiser training: about 10 minutes that continue the last window's weights.
#
#   DATA=runs/data BUDGET=480 bash scripts/train-photo-gpu.sh       # from the repository root
#
# For GPU time rented in short slots (time-limited or preemptible instances): each window trains for
# BUDGET seconds from the weights the last window brought back (--init-from; every checkpoint's
# config.json records the chain of windows and their steps) and packs what it made into parts of at
# most PART_MB MiB, for copies or storage that limit file sizes.
#
# Two candidates train side by side (one small U-Net leaves an H200 mostly idle):
#   color  --preset photo-color     on COLOR_DATA ($DATA/cbsd432 and $DATA/train400), from INIT_COLOR
#   gray   --preset photo-gray      on GRAY_DATA ($DATA/train400), from INIT_GRAY
# NETS="color" (or "gray") trains one of them. COLOR_DATA and GRAY_DATA are folder lists: a set
# staged as cbsd432-a/ and cbsd432-b/ (the sorted file names cut in two) holds the same images in
# the same order as cbsd432/, so the validation split is the same.
# Before training, SPEED=1 (the default on cuda) times the shipped checkpoint on the device
# (python -m model.evaluate --speed-only, gray and RGB at SPEED_SIZE²) into $RUNS/speed/metrics.json.
# INIT_COLOR and INIT_GRAY default to the last window's results in runs/gpu-photo/home/<name>, else
# to the shipped networks: checkpoints/photo-denoiser/colour and checkpoints/photo-denoiser (a gray
# checkpoint given as INIT_COLOR starts the colour network as the gray one on luminance).
# Validation (held-out training images, sigma 15/25/50, unclipped and 8-bit) picks each
# run's best epoch; nothing here looks at a test set.
#
# Out: $OUT (the folder you copy back), else runs/gpu-photo/out: photo-window.tar split into
# photo-window.tar.part-aa, -ab, ... of at most PART_MB MiB (the checkpoints, the logs, the
# machine record, the speed record). Back on your machine:
#   cat photo-window.tar.part-* | tar x -C runs/gpu-photo/home
# which leaves runs/gpu-photo/home/{color,gray}/ for the next window's INIT_* and for evaluation
# (python -m model.evaluate ... on BSD68 and CBSD68; see docs/training.md).
#
# Data: for a GPU machine that cannot reach your data sets, they travel with the repository, in an
# ignored folder: mkdir -p runs/data && cp -r "$DATASETS"/{cbsd432,train400} runs/data/ (41 MB), carried
# with runs/gpu-photo/home.
set -u
DATA=${DATA:-runs/data}
RUNS=${RUNS:-runs/gpu-photo/window}
HOME_RUNS=${HOME_RUNS:-runs/gpu-photo/home}
BUDGET=${BUDGET:-480}
DEVICE=${DEVICE:-cuda}
PART_MB=${PART_MB:-15}
EXTRA=${EXTRA:-}          # extra flags for every run (smoke tests: --limit 40)
PY=${PYTHON:-python3}
NETS=${NETS:-color gray}
COLOR_DATA=${COLOR_DATA:-$DATA/cbsd432 $DATA/train400}
GRAY_DATA=${GRAY_DATA:-$DATA/train400}
SPEED=${SPEED:-$([ "$DEVICE" = cuda ] && echo 1 || echo 0)}
SPEED_SIZE=${SPEED_SIZE:-2048}
OUT_DIR=${OUT:-runs/gpu-photo/out}
# the last window's result, else the shipped network of that kind
last() { [ -f "$HOME_RUNS/$1/config.json" ] && echo "$HOME_RUNS/$1" || echo "$2"; }
SHIPPED_GRAY=checkpoints/photo-denoiser
SHIPPED_COLOR=$SHIPPED_GRAY/colour
[ -f "$SHIPPED_COLOR/config.json" ] || SHIPPED_COLOR=$SHIPPED_GRAY
INIT_COLOR=${INIT_COLOR:-$(last color "$SHIPPED_COLOR")}
INIT_GRAY=${INIT_GRAY:-$(last gray "$SHIPPED_GRAY")}
for name in $NETS; do
    case $name in color|gray) ;; *) echo "NETS: no network '$name' (color, gray)" >&2; exit 2 ;; esac
    # model.train would refuse it (a checkpoint it would overwrite): say so before any GPU time
    if [ -e "$RUNS/$name" ]; then
        echo "$RUNS/$name: an earlier window's run is there; move it away or set RUNS to another folder" >&2
        exit 2
    fi
done
# shellcheck source=scripts/gpu-runs.sh
source "$(dirname "$0")/gpu-runs.sh"

if [ "$SPEED" = 1 ]; then  # the shipped pair's speed on this device, before training shares it
    mkdir -p "$RUNS/speed"
    cp docs/eval/photo-denoiser/metrics.json "$RUNS/speed/"  # --speed-only merges into it
    $PY -m model.evaluate --checkpoint checkpoints/photo-denoiser --speed-only --device "$DEVICE" \
        --speed-size "$SPEED_SIZE" --out "$RUNS/speed" > "$RUNS/speed.log" 2>&1
    echo "speed exit $?" >> "$RUNS/status"
fi

COMMON=(--epochs 1000 --batch-size 128 --patches-per-epoch 64000 --save-every 1000000)
packed=(status env.txt)
for name in $NETS; do
    case $name in
        # shellcheck disable=SC2086  # the folder lists split on spaces
        color) train color --preset photo-color --data-dir $COLOR_DATA --init-from "$INIT_COLOR" \
                   "${COMMON[@]}" & ;;
        # shellcheck disable=SC2086
        gray) train gray --preset photo-gray --data-dir $GRAY_DATA --init-from "$INIT_GRAY" \
                  "${COMMON[@]}" & ;;
    esac
    packed+=("$name.log" "$name")
done
wait

mkdir -p "$OUT_DIR"
for name in $NETS; do  # the checkpoints only: a window starts from weights, not from a state
    rm -rf "$RUNS/$name/.state"
done
[ -d "$RUNS/speed" ] && packed+=(speed speed.log)
tar cf "$RUNS/photo-window.tar" -C "$RUNS" "${packed[@]}"
split -b "${PART_MB}m" "$RUNS/photo-window.tar" "$OUT_DIR/photo-window.tar.part-"
ls -l "$OUT_DIR"
cat "$RUNS/status"
